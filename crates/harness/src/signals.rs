//! Stopping on SIGINT and SIGTERM through signal-hook: the handler only stores to an
//! atomic flag, which the caller's loop reads.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// SIGINT and SIGTERM set `flag`.
pub fn stop_on(flag: &Arc<AtomicBool>) {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
            eprintln!("warn: cannot handle signal {sig}: {e}");
        }
    }
}
