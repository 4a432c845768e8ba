//! The lease checker, on the lease clients' records (times in µs since the run
//! started, one clock: the members run on this machine).
//!
//! - Safety: a read of a lease's key that returned at `g` with the key absent,
//!   invoked after the put under the lease was acknowledged and not after the holder
//!   sent a revoke, is a premature expiry when `g < s + TTL - SAFETY_BOUND`, where `s`
//!   is the send time of the latest keep-alive (or the grant) acknowledged before the
//!   read was invoked. The deletion happened before `g`, and the lease was renewed no
//!   earlier than `s`. A keep-alive answered "gone" (TTL 0) before that time counts
//!   the same.
//! - Revoke: once a revoke is acknowledged, a read invoked after it must not see the
//!   key.
//! - Liveness, a figure only: for a lease left to expire, the lateness is the return
//!   of the first read that found the key gone, minus (the last acknowledgement +
//!   TTL). The run fails on liveness only when lease keys are left after healing
//!   (checked by the run itself).

use super::lease::Track;

/// How much earlier than `s + TTL` a key may go. The leader's lease clock counts
/// ticks (half a heartbeat interval: 50 ms by default) and a keep-alive restarts the
/// TTL from the current tick, so an expiry may come up to one tick early; two ticks
/// (100 ms) are allowed. A leader change never shortens a lease (the server's stated
/// bound: it may lengthen one by the checkpoint interval plus an election timeout).
pub const SAFETY_BOUND_US: u64 = 100_000;

/// The checker's findings.
#[derive(Debug, Default)]
pub struct LeaseFigures {
    pub leases: usize,
    /// Keep-alives acknowledged (grants not counted).
    pub keepalives: usize,
    pub reads: usize,
    pub premature: usize,
    /// Revokes acknowledged.
    pub revokes: usize,
    /// Keys still present after an acknowledged revoke.
    pub survived_revoke: usize,
    /// Per lease left to expire: ms from the last ack + TTL to the key seen gone.
    pub lateness_ms: Vec<i64>,
    pub lines: Vec<String>,
}

impl LeaseFigures {
    /// Safety violations.
    pub fn violations(&self) -> usize {
        self.premature + self.survived_revoke
    }

    /// The worst lateness, in ms.
    pub fn worst_lateness_ms(&self) -> Option<i64> {
        self.lateness_ms.iter().copied().max()
    }
}

/// Until when (µs) the lease must live, as of a moment `at_us`: the latest ack
/// received by then, by send time, plus its TTL, less the bound.
fn safe_until(t: &Track, at_us: u64) -> Option<(u64, &super::lease::Ack)> {
    let a = t
        .acks
        .iter()
        .filter(|a| a.acked_us <= at_us)
        .max_by_key(|a| a.sent_us)?;
    let until = (a.sent_us + a.ttl_s.max(0) as u64 * 1_000_000).saturating_sub(SAFETY_BOUND_US);
    Some((until, a))
}

fn safety(t: &Track, f: &mut LeaseFigures) {
    let Some(put) = t.put_acked_us else {
        return;
    };
    for r in &t.reads {
        let revoking = t.revoke_sent_us.is_some_and(|v| r.ret_us >= v);
        if r.present || r.call_us < put || revoking {
            continue;
        }
        if let Some((until, a)) = safe_until(t, r.call_us) {
            if r.ret_us < until {
                f.premature += 1;
                f.lines.push(format!(
                    "lease {:x}: premature expiry: {} read absent at {}µs (invoked {}µs), but a keep-alive sent at {}µs was acknowledged at {}µs with TTL {} s: it must live until {until}µs",
                    t.id, t.key, r.ret_us, r.call_us, a.sent_us, a.acked_us, a.ttl_s
                ));
            }
        }
    }
    if let Some(gone) = t.gone_reported_us {
        if let Some((until, a)) = safe_until(t, gone) {
            if gone < until {
                f.premature += 1;
                f.lines.push(format!(
                    "lease {:x}: premature expiry: a keep-alive was answered TTL 0 at {gone}µs, but one sent at {}µs was acknowledged with TTL {} s: it must live until {until}µs",
                    t.id, a.sent_us, a.ttl_s
                ));
            }
        }
    }
}

fn revoke(t: &Track, f: &mut LeaseFigures) {
    let Some(v) = t.revoke_acked_us else {
        return;
    };
    f.revokes += 1;
    if let Some(r) = t.reads.iter().find(|r| r.call_us >= v && r.present) {
        f.survived_revoke += 1;
        f.lines.push(format!(
            "lease {:x}: {} still present in a read invoked at {}µs, after its revoke was acknowledged at {v}µs",
            t.id, t.key, r.call_us
        ));
    }
}

fn lateness(t: &Track) -> Option<i64> {
    let stopped = t.stopped_us?;
    if t.revoke_sent_us.is_some() || t.put_acked_us.is_none() {
        return None;
    }
    let gone = t
        .reads
        .iter()
        .find(|r| r.call_us >= stopped && !r.present)?;
    let last = t.acks.iter().max_by_key(|a| a.acked_us)?;
    let due = last.acked_us as i64 + last.ttl_s * 1_000_000;
    Some((gone.ret_us as i64 - due) / 1000)
}

/// Checks every lease's records.
pub fn check(tracks: &[Track]) -> LeaseFigures {
    let mut f = LeaseFigures {
        leases: tracks.len(),
        ..Default::default()
    };
    for t in tracks {
        f.keepalives += t.acks.len().saturating_sub(1);
        f.reads += t.reads.len();
        safety(t, &mut f);
        revoke(t, &mut f);
        f.lateness_ms.extend(lateness(t));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::super::lease::{Ack, Read};
    use super::*;

    const S: u64 = 1_000_000;

    /// Granted at 0 (TTL 3 s), put at 0.1 s, kept alive at 1 s and 2 s, stopped at
    /// 2.5 s; reads at 1.5 s (present) and 5.2 s (gone).
    fn track() -> Track {
        let ack = |sent_us, acked_us| Ack {
            sent_us,
            acked_us,
            ttl_s: 3,
        };
        let read = |call_us: u64, present| Read {
            call_us,
            ret_us: call_us + 10_000,
            present,
        };
        Track {
            client: 1,
            id: 0x42,
            key: "lease/c1-1".into(),
            acks: vec![ack(0, 5_000), ack(S, S + 5_000), ack(2 * S, 2 * S + 5_000)],
            put_acked_us: Some(S / 10),
            reads: vec![read(3 * S / 2, true), read(5 * S + S / 5, false)],
            stopped_us: Some(5 * S / 2),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_that_expires_after_its_ttl_passes_and_its_lateness_is_measured() {
        let f = check(&[track()]);
        assert_eq!(f.violations(), 0, "{:?}", f.lines);
        assert_eq!((f.leases, f.keepalives, f.reads), (1, 2, 2));
        // Gone at 5.21 s; due at 2.005 s + 3 s.
        assert_eq!(f.lateness_ms, vec![205]);
        // A read that saw the key gone while no acknowledged keep-alive covered it.
        let mut t = track();
        t.reads.push(Read {
            call_us: 4_950_000,
            ret_us: 4_960_000,
            present: false,
        });
        assert_eq!(check(&[t]).violations(), 0);
    }

    #[test]
    fn a_premature_expiry_is_caught() {
        // Absent at 4.2 s: the keep-alive sent at 2 s holds it until 4.9 s.
        let mut t = track();
        t.reads.push(Read {
            call_us: 4_200_000,
            ret_us: 4_210_000,
            present: false,
        });
        let f = check(&[t]);
        assert_eq!(f.premature, 1, "{:?}", f.lines);
        assert!(f.lines[0].contains("premature expiry"), "{:?}", f.lines);
        // A keep-alive answered "gone" too early counts the same.
        let mut t = track();
        t.gone_reported_us = Some(3 * S);
        assert_eq!(check(&[t]).premature, 1);
        // A read invoked before the keep-alive's acknowledgement is judged by the
        // one before (sent at 1 s, so good until 3.9 s): absent at 4.2 s is fine.
        let mut t = track();
        t.reads.push(Read {
            call_us: 2 * S,
            ret_us: 4_200_000,
            present: false,
        });
        assert_eq!(check(&[t]).violations(), 0);
    }

    #[test]
    fn a_key_that_survives_its_revoke_is_caught() {
        let mut t = track();
        t.revoke_sent_us = Some(5 * S / 2);
        t.revoke_acked_us = Some(5 * S / 2 + 5_000);
        t.reads = vec![Read {
            call_us: 2_600_000,
            ret_us: 2_610_000,
            present: false,
        }];
        let f = check(&[t.clone()]);
        assert_eq!((f.violations(), f.revokes), (0, 1), "{:?}", f.lines);
        assert!(
            f.lateness_ms.is_empty(),
            "a revoked lease has no expiry lateness"
        );
        t.reads[0].present = true;
        let f = check(&[t]);
        assert_eq!(f.survived_revoke, 1, "{:?}", f.lines);
    }
}
