//! Workload clients: each runs one operation at a time, retries on redirect or timeout
//! with the same session sequence number (so a retried write applies at most once),
//! and records invocations and completions for the linearizability checker.

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
        let r = match rng.range(0, 10) {
            0..=3 => ClientRequest::Read(key),
            4..=7 => ClientRequest::Write(Command {
                client: self.id,
                seq: 0,
                op: KvOp::Put { key, value: 0 },
            }),
            _ => {
                let expected = self.seen.get(&key).copied().flatten();
                ClientRequest::Write(Command {
                    client: self.id,
                    seq: 0,
                    op: KvOp::Cas {
                        key,
                        expected,
                        new: 0,
                    },
                })
            }
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
            KvOp::Nop => KvOp::Nop,
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
            // A no-op write is modelled as a read of a key nobody writes.
            KvOp::Nop => KvInput::Get { key: "nop".into() },
        },
    }
}
