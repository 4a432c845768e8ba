//! Raft's WAL records: the payloads it hands the engine-neutral log, and the replay that
//! folds them back into Raft's recovered state. Little endian throughout:
//! entry = `index u64 | term u64 | kind u8 (0 no-op, 1 command, 2 membership change) |
//! command bytes, or the change entry's binary form (`raft::ConfigEntry`)`;
//! hard state = `term u64 | vote u64 (0 = none) | commit u64`; truncate = `from u64`.

use raft::{Entry, EntryKind, HardState, LogIndex, NodeId, Term};

/// A log entry; replay drops any entry at or after its index first.
pub(crate) const KIND_ENTRY: u8 = 1;
/// The hard state; the last one replayed wins. It is the log's anchor record.
pub(crate) const KIND_HARD_STATE: u8 = 2;
/// Drop every entry at or after this index.
pub(crate) const KIND_TRUNCATE: u8 = 3;

/// Writes the payload of entry `e`.
pub(crate) fn entry_payload(e: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(&e.index.0.to_le_bytes());
    out.extend_from_slice(&e.term.0.to_le_bytes());
    match &e.kind {
        EntryKind::Noop => out.push(0),
        EntryKind::Command(p) => {
            out.push(1);
            out.extend_from_slice(p);
        }
        EntryKind::Config(c) => {
            out.push(2);
            c.encode(out);
        }
    }
}

/// The payload of hard state `h`.
pub(crate) fn hard_state_payload(h: HardState) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&h.term.0.to_le_bytes());
    out[8..16].copy_from_slice(&h.vote.map_or(0, |v| v.0).to_le_bytes());
    out[16..].copy_from_slice(&h.commit.0.to_le_bytes());
    out
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

fn decode_entry(p: &[u8]) -> Option<Entry> {
    let index = u64_at(p, 0)?;
    let term = u64_at(p, 8)?;
    let kind = match *p.get(16)? {
        0 if p.len() == 17 => EntryKind::Noop,
        1 => EntryKind::Command(p[17..].into()),
        2 => EntryKind::Config(raft::ConfigEntry::decode(&p[17..]).ok()?),
        _ => return None,
    };
    Some(Entry {
        term: Term(term),
        index: LogIndex(index),
        kind,
    })
}

fn decode_hard_state(p: &[u8]) -> Option<HardState> {
    if p.len() != 24 {
        return None;
    }
    let vote = u64_at(p, 8)?;
    Some(HardState {
        term: Term(u64_at(p, 0)?),
        vote: (vote != 0).then_some(NodeId(vote)),
        commit: LogIndex(u64_at(p, 16)?),
    })
}

/// What replay found, after the snapshot at `snapshot_index`.
#[derive(Debug, Default)]
pub(crate) struct Replayed {
    pub(crate) snapshot_index: LogIndex,
    pub(crate) hard_state: HardState,
    pub(crate) entries: Vec<Entry>,
}

impl Replayed {
    /// Folds in one record; `Err` names what is corrupt about it.
    pub(crate) fn apply(&mut self, kind: u8, payload: &[u8]) -> Result<(), &'static str> {
        const MALFORMED: &str = "malformed record payload";
        match kind {
            KIND_HARD_STATE => self.hard_state = decode_hard_state(payload).ok_or(MALFORMED)?,
            KIND_TRUNCATE if payload.len() == 8 => {
                let from = LogIndex(u64_at(payload, 0).ok_or(MALFORMED)?);
                self.entries.retain(|e| e.index < from);
            }
            KIND_ENTRY => self.entry(decode_entry(payload).ok_or(MALFORMED)?)?,
            _ => return Err(MALFORMED),
        }
        Ok(())
    }

    fn entry(&mut self, e: Entry) -> Result<(), &'static str> {
        // Writing index i replaces the log from i on, even when i is covered by the
        // snapshot (then only the truncation matters: the entry itself is not kept).
        self.entries.retain(|x| x.index < e.index);
        if e.index <= self.snapshot_index {
            return Ok(());
        }
        let expected = self
            .entries
            .last()
            .map_or(self.snapshot_index.next(), |x| x.index.next());
        if e.index != expected {
            return Err("entry index leaves a gap in the log");
        }
        self.entries.push(e);
        Ok(())
    }

    /// The highest index held: the last entry, or the snapshot's.
    pub(crate) fn last_index(&self) -> LogIndex {
        self.entries.last().map_or(self.snapshot_index, |e| e.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let entries = [
            Entry {
                term: Term(3),
                index: LogIndex(1),
                kind: EntryKind::Command(vec![1, 2, 3].into()),
            },
            Entry {
                term: Term(4),
                index: LogIndex(2),
                kind: EntryKind::Noop,
            },
        ];
        let mut r = Replayed::default();
        for e in &entries {
            let mut b = Vec::new();
            entry_payload(e, &mut b);
            r.apply(KIND_ENTRY, &b).unwrap();
        }
        assert_eq!(r.entries, entries);
        let h = HardState {
            term: Term(4),
            vote: Some(NodeId(2)),
            commit: LogIndex(6),
        };
        r.apply(KIND_HARD_STATE, &hard_state_payload(h)).unwrap();
        assert_eq!(r.hard_state, h);
        r.apply(KIND_TRUNCATE, &2u64.to_le_bytes()).unwrap();
        assert_eq!(r.entries, entries[..1]);
    }

    #[test]
    fn malformed_payloads_and_gaps_are_corruption() {
        let mut r = Replayed::default();
        assert!(r.apply(KIND_HARD_STATE, &[0; 23]).is_err());
        assert!(r.apply(KIND_TRUNCATE, &[0; 7]).is_err());
        assert!(r.apply(KIND_ENTRY, &[0; 16]).is_err());
        assert!(r.apply(9, &[]).is_err());
        let mut b = Vec::new();
        entry_payload(
            &Entry {
                term: Term(1),
                index: LogIndex(3),
                kind: EntryKind::Noop,
            },
            &mut b,
        );
        assert_eq!(
            r.apply(KIND_ENTRY, &b),
            Err("entry index leaves a gap in the log")
        );
    }
}
