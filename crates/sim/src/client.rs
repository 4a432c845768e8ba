//! Workload clients, shaped like etcd's: each runs one operation at a time (put, get,
//! compare-and-set through a txn, delete, compaction) and retries it on a redirect, an
//! unknown outcome or a timeout with the same session sequence number (so a retried
//! write applies at most once: see `kv::SimStore`). Invocations and completions go to
//! the linearizability checker.

use crate::host::{ClientOutcome, ClientRequest};
use crate::kv::{Command, KvOp, KvResult};
use check::{KvInput, KvModel, KvOutput, OpId, Recorder};
use seedrng::Rng;
use std::collections::{BTreeMap, VecDeque};

/// The operation a client is working on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InFlight {
    pub(crate) op: OpId,
    pub(crate) request: ClientRequest,
    pub(crate) attempt: u64,
}

#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: u64,
    seq: u64,
    pub(crate) target: usize,
    pub(crate) current: Option<InFlight>,
    /// Operations to run before (or instead of) random ones: final reads.
    pub(crate) queue: VecDeque<ClientRequest>,
    /// Whether to keep generating random operations.
    pub(crate) active: bool,
    /// Last value this client saw per key (for plausible CAS expectations).
    seen: BTreeMap<u8, Option<u64>>,
    next_attempt: u64,
}

pub(crate) fn key_name(key: u8) -> String {
    format!("k{key}")
}

impl Client {
    pub(crate) fn new(id: u64, target: usize) -> Client {
        Client {
            id,
            seq: 0,
            target,
            current: None,
            queue: VecDeque::new(),
            active: true,
            seen: BTreeMap::new(),
            next_attempt: 0,
        }
    }

    /// Picks the next operation, or `None` when the client is done.
    pub(crate) fn next_request(&mut self, rng: &mut Rng, keys: u8) -> Option<ClientRequest> {
        if let Some(r) = self.queue.pop_front() {
            return Some(self.stamp(r));
        }
        if !self.active {
            return None;
        }
        let key = rng.range(0, u64::from(keys)) as u8;
        let write = |op| {
            ClientRequest::Write(Command {
                client: self.id,
                seq: 0,
                op,
            })
        };
        let r = match rng.range(0, 20) {
            0..=7 => ClientRequest::Read(key),
            8..=13 => write(KvOp::Put { key, value: 0 }),
            14..=16 => write(KvOp::Cas {
                key,
                expected: self.seen.get(&key).copied().flatten(),
                new: 0,
            }),
            17..=18 => write(KvOp::Delete { key }),
            _ => write(KvOp::Compact {
                behind: rng.range(0, 8) as u8,
            }),
        };
        Some(self.stamp(r))
    }

    /// Gives a write a fresh session sequence number and a unique value.
    fn stamp(&mut self, r: ClientRequest) -> ClientRequest {
        let ClientRequest::Write(mut cmd) = r else {
            return r;
        };
        self.seq += 1;
        cmd.seq = self.seq;
        let unique = self.id * 1_000_000 + self.seq;
        cmd.op = match cmd.op {
            KvOp::Put { key, .. } => KvOp::Put { key, value: unique },
            KvOp::Cas { key, expected, .. } => KvOp::Cas {
                key,
                expected,
                new: unique,
            },
            op => op,
        };
        ClientRequest::Write(cmd)
    }

    pub(crate) fn begin(
        &mut self,
        request: ClientRequest,
        history: &mut Recorder<KvModel>,
        now_us: u64,
    ) -> u64 {
        let op = history.invoke(self.id, to_input(&request), now_us);
        self.next_attempt += 1;
        self.current = Some(InFlight {
            op,
            request,
            attempt: self.next_attempt,
        });
        self.next_attempt
    }

    /// Moves to a new attempt (after a redirect or timeout); returns its number.
    pub(crate) fn retry(&mut self) -> Option<u64> {
        self.next_attempt += 1;
        let cur = self.current.as_mut()?;
        cur.attempt = self.next_attempt;
        Some(cur.attempt)
    }

    /// Completes the current operation with `outcome`; returns false for stale replies.
    pub(crate) fn complete(
        &mut self,
        attempt: u64,
        outcome: ClientOutcome,
        history: &mut Recorder<KvModel>,
        now_us: u64,
    ) -> bool {
        let Some(cur) = self.current else {
            return false;
        };
        if cur.attempt != attempt {
            return false;
        }
        let output = match (cur.request, outcome) {
            (ClientRequest::Read(key), ClientOutcome::Read(v)) => {
                self.seen.insert(key, v);
                KvOutput::Get(v)
            }
            (ClientRequest::Write(cmd), ClientOutcome::Written(r)) => match (cmd.op, r) {
                (KvOp::Cas { .. }, KvResult::Cas(ok)) => KvOutput::Cas { ok },
                (KvOp::Delete { key }, KvResult::Deleted(deleted)) => {
                    self.seen.insert(key, None);
                    KvOutput::Delete { deleted }
                }
                (KvOp::Compact { .. }, _) => KvOutput::Get(None),
                _ => KvOutput::Put,
            },
            _ => return false,
        };
        history.complete(cur.op, output, now_us);
        self.current = None;
        true
    }
}

fn to_input(r: &ClientRequest) -> KvInput {
    match r {
        ClientRequest::Read(k) => KvInput::Get { key: key_name(*k) },
        ClientRequest::Write(cmd) => match cmd.op {
            KvOp::Put { key, value } => KvInput::Put {
                key: key_name(key),
                value,
            },
            KvOp::Cas { key, expected, new } => KvInput::Cas {
                key: key_name(key),
                expected,
                new,
            },
            KvOp::Delete { key } => KvInput::Delete { key: key_name(key) },
            // A compaction changes no key: modelled as a read of a key nobody writes.
            // The lease holders' and lock clients' requests never come through here.
            KvOp::Compact { .. }
            | KvOp::PutLeased { .. }
            | KvOp::LeaseGrant { .. }
            | KvOp::LeaseRenew { .. }
            | KvOp::LeaseRevoke { .. }
            | KvOp::LockEnter { .. }
            | KvOp::LockOwner { .. }
            | KvOp::LockWrite { .. }
            | KvOp::LockRelease { .. } => KvInput::Get { key: "nop".into() },
        },
    }
}
