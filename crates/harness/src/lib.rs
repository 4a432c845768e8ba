//! One process harness for Synod clusters: the launcher that `synod dev`, the chaos lab,
//! the benchmark and the end-to-end tests share.
//!
//! A [`Cluster`] is a set of real `synod node` processes on loopback. The harness picks
//! free ports ([`ports`]), builds each member's command line with etcd's flag names,
//! sends the members' output to log files or to our stdout with a `[name]` prefix,
//! waits for a leader by reading `/status`, reads metrics, tails logs, and stops the
//! members: SIGTERM with a grace period, SIGKILL on drop. Members get a parent-death
//! signal, so none outlives a harness that was killed.
//!
//! ```no_run
//! use harness::{Cluster, Output, Spec};
//! use std::time::Duration;
//!
//! let spec = Spec::new("target/release/synod".into(), "/tmp/demo".into(), Output::Files);
//! let mut cluster = Cluster::with_free_ports(spec, 3).unwrap();
//! cluster.spawn_all().unwrap();
//! let leader = cluster.wait_leader(Duration::from_secs(20));
//! println!("leader: {}", cluster.members[leader].name);
//! ```

mod cluster;
mod etcdctl;
pub mod http;
pub mod ports;
pub mod signals;

pub use cluster::{Cluster, Member, MemberPorts, Output, Spec};
pub use etcdctl::{apt_install, ensure_etcdctl, etcdctl_command};
