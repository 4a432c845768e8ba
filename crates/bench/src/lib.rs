//! `synod bench`: the load generator for any etcd v3 endpoint, the side-by-side run
//! against etcd 3.4 (`--compare-etcd`), the memory cases, a null server that measures
//! the client alone, and the write-ahead log's group-commit benchmark.
//!
//! - [`cmd`]: the flags and the entry point;
//! - [`load`]: workloads, connections and the measuring loop; [`h2`]: the hand-driven
//!   HTTP/2 gRPC client; [`report`]: progress and summaries;
//! - [`compare`]: both clusters, the same cases, one table; [`cluster`]: starting them;
//! - [`coord`]: lease keep-alives, lease cycles and watch fan-out;
//! - [`mem`]: resident memory per million keys; [`null`]: the null server;
//! - [`wal`]: the WAL on a real file next to the raw fsync rate.

pub mod cluster;
pub mod cmd;
pub mod compare;
pub mod coord;
pub mod fanout;
pub mod h2;
pub mod load;
pub mod mem;
pub mod null;
pub mod report;
pub mod wal;
pub mod watch_scan;

pub use cmd::{run, BenchArgs};
