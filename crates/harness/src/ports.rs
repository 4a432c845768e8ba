//! Loopback ports for the members a harness starts.
//!
//! A port the kernel hands out for `bind(0)` comes from its ephemeral range. Released
//! there and bound by a member process a moment later, it may meanwhile have become the
//! local port of some outgoing connection (or a peer's self-connect while dialling a
//! member that is not listening yet), and the member fails with "Address already in
//! use". Two CI runs lost a member that way. Ports here are taken below the ephemeral
//! range, which the kernel never picks for outgoing connections.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// Lowest port handed out.
const LOW: u32 = 10_000;

/// Where the next scan starts, as an offset from `LOW`; `u32::MAX` until first use.
static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);

/// The low end of the kernel's ephemeral port range (32768 if unreadable).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Claims `n` consecutive scan offsets; the first claim in a process starts at a place
/// derived from its id, so concurrent processes start apart.
fn claim(n: u32, span: u32) -> u32 {
    let seed = std::process::id().wrapping_mul(7919) % span;
    let _ = CURSOR.compare_exchange(u32::MAX, seed, Ordering::SeqCst, Ordering::SeqCst);
    CURSOR.fetch_add(n, Ordering::SeqCst) % span
}

/// `n` distinct loopback ports that were free a moment ago, below the ephemeral range.
/// Concurrent callers in one process never get the same port. Falls back to ports the
/// kernel picks when there is no room below the ephemeral range.
pub fn free_loopback_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let span = ephemeral_low().saturating_sub(LOW);
    if span < 1_000 {
        let ls = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        return ls.iter().map(|l| Ok(l.local_addr()?.port())).collect();
    }
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // Claim a block at a time so that a busy port costs one more claim, not a
        // collision with a concurrent caller.
        let want = (n - out.len()) as u32;
        let start = claim(want, span);
        for k in 0..want {
            let port = (LOW + (start + k) % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                out.push(port);
            }
        }
        if CURSOR.load(Ordering::SeqCst) > span.saturating_mul(4) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "no free ports below the ephemeral range",
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_below_the_ephemeral_range() {
        let a = free_loopback_ports(6).unwrap();
        let b = free_loopback_ports(6).unwrap();
        let mut all: Vec<u16> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 12, "{a:?} {b:?}");
        let low = ephemeral_low();
        if low >= LOW + 1_000 {
            assert!(all
                .iter()
                .all(|&p| u32::from(p) >= LOW && u32::from(p) < low));
        }
        for p in all {
            TcpListener::bind(("127.0.0.1", p)).expect("still free");
        }
    }

    #[test]
    fn a_taken_port_is_skipped() {
        let first = free_loopback_ports(1).unwrap()[0];
        // Hold the next port in scan order; the next claim must step over it.
        let held = TcpListener::bind(("127.0.0.1", first + 1));
        let next = free_loopback_ports(1).unwrap()[0];
        if held.is_ok() {
            assert_ne!(next, first + 1);
        }
        assert_ne!(next, first);
    }
}
