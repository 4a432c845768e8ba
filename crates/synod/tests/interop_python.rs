//! The Python `etcd3` library (python-etcd3 0.12.0) against a real 3-member `synod node`
//! cluster: KV, watch, lease and lock, through the leader and through a follower.
//!
//! The checks are in `tests/python/interop_etcd3.py`; this test installs what it needs
//! once (a venv under the target directory with the exact pins of
//! `tests/python/requirements.txt`, from PyPI), starts the cluster, runs the script and
//! fails with its output and the members' logs when it does not exit 0. python-etcd3
//! has no election API, so elections are not covered here.

mod common;

use common::Cluster;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const PY_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
/// Far beyond what the script takes (about 15 s); its own watchdog fires first.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The venv's python, the venv made and filled once: reused while the requirements it
/// was made from are the current ones, made anew (beside, then moved in place) when
/// they are not.
fn python_env() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let requirements = Path::new(PY_DIR).join("requirements.txt");
        let wanted = std::fs::read_to_string(&requirements).expect("requirements.txt");
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-etcd3-venv");
        let stamp = |dir: &Path| dir.join("synod-requirements.txt");
        let python = |dir: &Path| dir.join("bin").join("python");
        if std::fs::read_to_string(stamp(&venv)).is_ok_and(|s| s == wanted)
            && python(&venv).exists()
        {
            return python(&venv);
        }
        eprintln!("making the python-etcd3 venv at {}", venv.display());
        let partial = venv.with_extension(format!("partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        make_venv(&partial);
        let pip = Command::new(python(&partial))
            .args(["-m", "pip", "install", "--no-input"])
            .arg("--disable-pip-version-check")
            // Wheels only, but for etcd3 (an sdist); its isolated build takes the
            // setuptools and wheel pinned in the same file through PIP_CONSTRAINT.
            .args(["--only-binary=:all:", "--no-binary=etcd3", "-r"])
            .arg(&requirements)
            .env("PIP_CONSTRAINT", &requirements)
            .output()
            .expect("the venv's pip runs");
        assert!(
            pip.status.success(),
            "pip install -r {} failed:\n{}\n{}",
            requirements.display(),
            String::from_utf8_lossy(&pip.stdout),
            String::from_utf8_lossy(&pip.stderr)
        );
        std::fs::write(stamp(&partial), &wanted).expect("the venv's stamp");
        let _ = std::fs::remove_dir_all(&venv);
        std::fs::rename(&partial, &venv).expect("the venv moves in place");
        python(&venv)
    })
}

/// `python3 -m venv DIR`, installing Debian's python3-venv first where the machine's
/// python3 lacks ensurepip (Debian's own python3 does without that package).
fn make_venv(dir: &Path) {
    let venv = || {
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir)
            .output()
            .expect("python3 runs")
    };
    let out = venv();
    if out.status.success() {
        return;
    }
    eprintln!(
        "python3 -m venv failed ({}): installing Debian's python3-venv",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let _ = std::fs::remove_dir_all(dir);
    harness::apt_install("python3-venv");
    let out = venv();
    assert!(
        out.status.success(),
        "python3 -m venv {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `127.0.0.1:<client port>` of member `i`.
fn ep(c: &Cluster, i: usize) -> String {
    format!("127.0.0.1:{}", c.members[i].client)
}

/// Runs the script against `leader` and `follower`; (exit code, stdout, stderr), the
/// script killed after [`SCRIPT_TIMEOUT`].
fn run_script(python: &Path, leader: &str, follower: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(python)
        .arg(Path::new(PY_DIR).join("interop_etcd3.py"))
        .args(["--leader", leader, "--follower", follower])
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // Loopback only: gRPC would send it to a proxy named in the environment.
        .env_remove("grpc_proxy")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the venv's python starts");
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for the script") {
            break st.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

#[test]
fn python_etcd3_kv_watch_lease_lock() {
    let python = python_env();
    let c = common::start(3, 10_000);
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = (0..c.members.len())
        .find(|&i| i != leader)
        .expect("a follower");
    let started = Instant::now();
    let (code, stdout, stderr) = run_script(python, &ep(&c, leader), &ep(&c, follower));
    let roles: Vec<String> = (0..c.members.len())
        .map(|i| {
            let status = c.status_json(i);
            let role = status
                .as_ref()
                .and_then(|s| s["role"].as_str())
                .unwrap_or("?");
            format!("{}={role}", c.members[i].name)
        })
        .collect();
    assert!(
        code == Some(0),
        "python-etcd3 checks failed (exit {code:?} after {:?}; --leader {} --follower {}; \
         roles now {roles:?})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
        started.elapsed(),
        c.members[leader].name,
        c.members[follower].name,
        c.logs()
    );
    print!("{stdout}");
}
