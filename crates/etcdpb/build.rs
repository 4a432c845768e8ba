//! Compiles Synod's own etcd v3 `.proto` files with `protox` (a pure-Rust
//! protobuf compiler, so no system `protoc` is needed) and generates prost
//! messages plus tonic clients and servers from the descriptor set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    let files = [
        "mvccpb/kv.proto",
        "etcdserverpb/rpc.proto",
        "v3lockpb/v3lock.proto",
        "v3electionpb/v3election.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }

    let fds = protox::compile(files, ["proto"])?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;

    Ok(())
}
