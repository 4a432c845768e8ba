//! The WAL record format, little endian:
//! `crc u32 | len u32 | type u8 | header_crc u16 | payload[len] | 0xA5`.
//! `crc` is CRC32C over `len`, `type` and the payload; `header_crc` is the low 16 bits
//! of CRC32C over `len` and `type`. The header checksum is what lets recovery tell a
//! torn write (header incomplete, or payload cut short) from a damaged length field,
//! which would otherwise look like a record running past the end of the file and get
//! a synced suffix of the log silently cut off.
//!
//! The log knows no engine: a record is a type byte and a payload that the engine's
//! storage adapter encodes (type 0 is the log's own segment header).

/// Header size in bytes.
pub const HEADER_BYTES: usize = 11;
/// Every record ends with this byte. A complete record therefore never ends in a zero,
/// so a record that runs into the zeros at the end of a file is a torn write, while a
/// complete record with a bad checksum is damage (see [`decode`]).
pub const TRAILER: u8 = 0xA5;
/// Largest payload accepted (a larger length field is corruption, not a huge record).
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;
/// The record type the log itself uses for a segment's header; engines use 1..=255.
pub const KIND_SEGMENT_HEADER: u8 = 0;

/// Appends one record of type `kind` to `out`; `payload` writes the payload bytes in
/// place (so a large entry is copied once, into the log's buffer).
pub fn encode(kind: u8, out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    payload(out);
    let len = (out.len() - start - HEADER_BYTES) as u32;
    out[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
    out[start + 8] = kind;
    let head_crc = crc32c::crc32c(&out[start + 4..start + 9]);
    out[start + 9..start + 11].copy_from_slice(&(head_crc as u16).to_le_bytes());
    let crc = crc32c::crc32c_append(head_crc, &out[start + HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    out.push(TRAILER);
}

/// What lies at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record.
    Record {
        /// Its type.
        kind: u8,
        /// Its payload.
        payload: &'a [u8],
        /// Its encoded size.
        size: usize,
    },
    /// Nothing more: end of file, or an incomplete or zeroed tail (a torn write).
    TornTail,
    /// A complete record that fails its checksum or cannot be parsed.
    Corrupt(&'static str),
}

/// Decodes the record at the start of `b`.
pub fn decode(b: &[u8]) -> Decoded<'_> {
    // Where the trailing run of zeros starts: a write that was cut short (torn) leaves
    // zeros (preallocated space) or the end of the file right after what it wrote.
    let zeros_from = || b.iter().rposition(|x| *x != 0).map_or(0, |p| p + 1);
    let torn_or = |end: usize, reason| {
        if zeros_from() < end {
            Decoded::TornTail
        } else {
            Decoded::Corrupt(reason)
        }
    };
    if b.len() < HEADER_BYTES {
        return Decoded::TornTail;
    }
    let crc = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let head_crc = crc32c::crc32c(&b[4..9]);
    if head_crc as u16 != u16::from_le_bytes([b[9], b[10]]) {
        return torn_or(HEADER_BYTES, "record header checksum mismatch");
    }
    let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Decoded::Corrupt("record length out of range");
    }
    let end = HEADER_BYTES + len + 1;
    let Some(payload) = b.get(HEADER_BYTES..end - 1) else {
        // A valid header whose payload was cut short by the end of the file.
        return Decoded::TornTail;
    };
    if b.get(end - 1) != Some(&TRAILER) || crc32c::crc32c_append(head_crc, payload) != crc {
        return torn_or(end, "checksum mismatch");
    }
    Decoded::Record {
        kind: b[8],
        payload,
        size: end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (kind, payload) in [
            (1u8, vec![1u8, 2, 3]),
            (1, vec![0; 17]),
            (2, (0..24).collect()),
            (3, vec![]),
            (KIND_SEGMENT_HEADER, b"raft".to_vec()),
        ] {
            let mut b = Vec::new();
            encode(kind, &mut b, |o| o.extend_from_slice(&payload));
            assert_eq!(
                decode(&b),
                Decoded::Record {
                    kind,
                    payload: &payload,
                    size: b.len()
                }
            );
            out.push(b);
        }
        out
    }

    #[test]
    fn records_round_trip() {
        assert_eq!(samples().len(), 5);
    }

    #[test]
    fn every_truncation_is_a_torn_tail_and_every_bit_flip_is_caught() {
        for b in samples() {
            for cut in 0..b.len() {
                assert_eq!(decode(&b[..cut]), Decoded::TornTail, "cut at {cut}");
            }
            for byte in 0..b.len() {
                for bit in 0..8 {
                    let mut c = b.clone();
                    c[byte] ^= 1 << bit;
                    assert!(
                        matches!(decode(&c), Decoded::Corrupt(_)),
                        "flip {byte}:{bit} not reported as corruption"
                    );
                }
            }
        }
        assert_eq!(decode(&[0u8; 64]), Decoded::TornTail);
        // Torn inside preallocated (zero-filled) space: a prefix, then zeros.
        for b in samples() {
            for cut in 0..b.len() {
                let mut t = b[..cut].to_vec();
                t.resize(b.len() + 100, 0);
                assert_eq!(decode(&t), Decoded::TornTail, "zero-filled cut at {cut}");
            }
            // A bit flip in a complete record followed by zeros is damage, not a tear.
            let mut c = b.clone();
            c[b.len() / 2] ^= 0x04;
            c.resize(b.len() + 100, 0);
            assert!(matches!(decode(&c), Decoded::Corrupt(_)));
        }
        let mut z = vec![0u8; 32];
        z.push(1);
        assert!(matches!(decode(&z), Decoded::Corrupt(_)));
    }
}
