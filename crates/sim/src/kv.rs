//! A small replicated key-value state machine with client sessions (exactly-once apply).

use std::collections::BTreeMap;
use std::fmt;

/// A client operation carried in a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Set `key` to `value`.
    Put {
        /// Key number.
        key: u8,
        /// New value.
        value: u64,
    },
    /// Set `key` to `new` if it currently holds `expected`.
    Cas {
        /// Key number.
        key: u8,
        /// Required current value (`None`: absent).
        expected: Option<u64>,
        /// New value.
        new: u64,
    },
    /// A write that changes nothing, used to probe liveness.
    Nop,
}

/// A command: an operation tagged with its client session for de-duplication.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// Client id.
    pub client: u64,
    /// Client's sequence number; retries reuse it.
    pub seq: u64,
    /// The operation.
    pub op: KvOp,
}

/// Result of applying a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvResult {
    /// Put or Nop done.
    Done,
    /// CAS outcome.
    Cas(bool),
}

/// A command or snapshot that failed to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeError;

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed key-value command or snapshot")
    }
}

impl Command {
    /// Binary encoding: client, seq, tag, key, value, expected-flag, expected.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(35);
        out.extend_from_slice(&self.client.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        let (tag, key, value, expected) = match self.op {
            KvOp::Put { key, value } => (1u8, key, value, None),
            KvOp::Cas { key, expected, new } => (2, key, new, Some(expected)),
            KvOp::Nop => (3, 0, 0, None),
        };
        out.push(tag);
        out.push(key);
        out.extend_from_slice(&value.to_le_bytes());
        let (flag, exp) = match expected {
            Some(Some(v)) => (2u8, v),
            Some(None) => (1, 0),
            None => (0, 0),
        };
        out.push(flag);
        out.extend_from_slice(&exp.to_le_bytes());
        out
    }

    /// Inverse of [`Command::encode`].
    pub fn decode(b: &[u8]) -> Result<Command, DecodeError> {
        if b.len() != 35 {
            return Err(DecodeError);
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
        let (client, seq, tag, key, value, flag, exp) =
            (u(0), u(8), b[16], b[17], u(18), b[26], u(27));
        let op = match (tag, flag) {
            (1, 0) => KvOp::Put { key, value },
            (2, 1) => KvOp::Cas {
                key,
                expected: None,
                new: value,
            },
            (2, 2) => KvOp::Cas {
                key,
                expected: Some(exp),
                new: value,
            },
            (3, 0) => KvOp::Nop,
            _ => return Err(DecodeError),
        };
        Ok(Command { client, seq, op })
    }
}

/// The replicated state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvMachine {
    data: BTreeMap<u8, u64>,
    /// Per client: last applied seq and its result.
    sessions: BTreeMap<u64, (u64, KvResult)>,
}

impl KvMachine {
    /// Applies a command once per (client, seq); a retry gets the first result.
    pub fn apply(&mut self, cmd: &Command) -> KvResult {
        if let Some((seq, result)) = self.sessions.get(&cmd.client) {
            if cmd.seq <= *seq {
                return *result;
            }
        }
        let result = match cmd.op {
            KvOp::Put { key, value } => {
                self.data.insert(key, value);
                KvResult::Done
            }
            KvOp::Cas { key, expected, new } => {
                let ok = self.data.get(&key).copied() == expected;
                if ok {
                    self.data.insert(key, new);
                }
                KvResult::Cas(ok)
            }
            KvOp::Nop => KvResult::Done,
        };
        self.sessions.insert(cmd.client, (cmd.seq, result));
        result
    }

    /// The value of `key`.
    pub fn get(&self, key: u8) -> Option<u64> {
        self.data.get(&key).copied()
    }

    /// Serialized state.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        for (k, v) in &self.data {
            out.push(*k);
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.sessions.len() as u32).to_le_bytes());
        for (c, (seq, r)) in &self.sessions {
            out.extend_from_slice(&c.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            out.push(match r {
                KvResult::Done => 0,
                KvResult::Cas(false) => 1,
                KvResult::Cas(true) => 2,
            });
        }
        out
    }

    /// Inverse of [`KvMachine::snapshot`]; refuses malformed input.
    pub fn restore(b: &[u8]) -> Result<KvMachine, DecodeError> {
        let mut r = Reader { b, at: 0 };
        let mut m = KvMachine::default();
        for _ in 0..r.u32()? {
            let k = r.u8()?;
            m.data.insert(k, r.u64()?);
        }
        for _ in 0..r.u32()? {
            let c = r.u64()?;
            let seq = r.u64()?;
            let res = match r.u8()? {
                0 => KvResult::Done,
                1 => KvResult::Cas(false),
                2 => KvResult::Cas(true),
                _ => return Err(DecodeError),
            };
            m.sessions.insert(c, (seq, res));
        }
        if r.at != b.len() {
            return Err(DecodeError);
        }
        Ok(m)
    }

    /// A digest of the whole state, for cross-node comparison.
    pub fn digest(&self) -> u64 {
        crate::hash::fnv(&self.snapshot())
    }
}

/// [`KvMachine`] as a replica applies it: commands are [`Command::encode`] bytes.
#[derive(Clone, Debug, Default)]
pub struct SimMachine {
    /// The replicated state.
    pub kv: KvMachine,
    applied: u64,
}

impl engine::StateMachine for SimMachine {
    type Response = KvResult;
    type Error = DecodeError;

    fn validate(&self, command: &[u8]) -> Result<(), DecodeError> {
        Command::decode(command).map(drop)
    }

    fn apply(&mut self, index: engine::Index, command: &[u8]) -> Option<Result<KvResult, DecodeError>> {
        if index.0 <= self.applied {
            return None;
        }
        self.applied = index.0;
        Some(Command::decode(command).map(|c| self.kv.apply(&c)))
    }

    fn apply_noop(&mut self, index: engine::Index) {
        self.applied = self.applied.max(index.0);
    }

    fn applied_index(&self) -> engine::Index {
        engine::Index(self.applied)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.kv.snapshot()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        self.kv = KvMachine::restore(data)?;
        // The replica names the index; anything after it applies.
        self.applied = 0;
        Ok(())
    }

    fn digest(&self) -> u64 {
        self.kv.digest()
    }

    fn preview(&self, command: &[u8]) -> Option<Result<KvResult, DecodeError>> {
        let mut scratch = self.kv.clone();
        Some(Command::decode(command).map(|c| scratch.apply(&c)))
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let s = self.b.get(self.at..self.at + n).ok_or(DecodeError)?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| DecodeError)?,
        ))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| DecodeError)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_reject_garbage() {
        for op in [
            KvOp::Put { key: 1, value: 9 },
            KvOp::Cas {
                key: 2,
                expected: None,
                new: 3,
            },
            KvOp::Cas {
                key: 2,
                expected: Some(7),
                new: 3,
            },
            KvOp::Nop,
        ] {
            let c = Command {
                client: 4,
                seq: 5,
                op,
            };
            assert_eq!(Command::decode(&c.encode()), Ok(c));
        }
        assert_eq!(Command::decode(&[1, 2, 3]), Err(DecodeError));
    }

    #[test]
    fn retries_apply_once_and_snapshots_round_trip() {
        let mut m = KvMachine::default();
        let put = Command {
            client: 1,
            seq: 1,
            op: KvOp::Put { key: 0, value: 10 },
        };
        let cas = Command {
            client: 2,
            seq: 1,
            op: KvOp::Cas {
                key: 0,
                expected: Some(10),
                new: 11,
            },
        };
        assert_eq!(m.apply(&put), KvResult::Done);
        assert_eq!(m.apply(&cas), KvResult::Cas(true));
        assert_eq!(m.apply(&put), KvResult::Done);
        assert_eq!(m.get(0), Some(11));
        assert_eq!(m.apply(&cas), KvResult::Cas(true));
        let r = KvMachine::restore(&m.snapshot()).unwrap();
        assert_eq!(r, m);
        let mut bad = m.snapshot();
        bad.push(0);
        assert_eq!(KvMachine::restore(&bad), Err(DecodeError));
        assert_eq!(KvMachine::restore(&bad[..3]), Err(DecodeError));
    }
}
