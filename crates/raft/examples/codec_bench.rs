//! The hand-written peer codec against the prost-derived one: encode and decode time,
//! bytes and allocations per message, for the messages a loaded leader sends most.
//!
//! `cargo run --release -p raft --example codec_bench --features prost-codec`
//!
//! The two codecs alternate within each round (the order flips every round) so that
//! drift in the machine's speed falls on both; the figures are medians over the rounds.
//! The allocator is mimalloc, as in the `synod` binary.

use raft::codecs::{hand_decode, hand_encode, prost_decode, prost_encode};
use raft::{AppendOutcome, Entry, EntryKind, LogIndex, Message, Payload, Term};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;
/// Each timed loop runs about this long.
const TARGET: Duration = Duration::from_millis(40);

/// mimalloc, counting allocations while [`COUNTING`] is set (never while timing).
struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

type Encode = fn(&Message, &mut Vec<u8>);
type Decode = fn(&[u8]) -> Result<Message, engine::DecodeError>;

struct Codec {
    name: &'static str,
    encode: Encode,
    decode: Decode,
}

const CODECS: [Codec; 2] = [
    Codec {
        name: "hand",
        encode: hand_encode,
        decode: hand_decode,
    },
    Codec {
        name: "prost",
        encode: prost_encode,
        decode: prost_decode,
    },
];

/// A kv put as the leader logs it: about 110 bytes, not all zero.
fn command(i: u64) -> Payload {
    (0..110u64)
        .map(|b| (b.wrapping_mul(31) ^ i) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn append(n: u64) -> Message {
    let first = 1_234_567;
    Message::Append {
        term: Term(7),
        prev_index: LogIndex(first - 1),
        prev_term: Term(7),
        entries: (first..first + n)
            .map(|i| Entry {
                term: Term(7),
                index: LogIndex(i),
                kind: EntryKind::Command(command(i)),
            })
            .collect(),
        leader_commit: LogIndex(first - 40),
        read_seq: 98_765,
    }
}

fn cases() -> Vec<(&'static str, Message)> {
    vec![
        ("Append 64 x 110 B", append(64)),
        ("Append 1 x 110 B", append(1)),
        (
            "AppendResponse",
            Message::AppendResponse {
                term: Term(7),
                outcome: AppendOutcome::Accepted {
                    match_index: LogIndex(1_234_630),
                },
                read_seq: 98_765,
            },
        ),
        (
            "VoteRequest",
            Message::VoteRequest {
                term: Term(8),
                last_index: LogIndex(1_234_630),
                last_term: Term(7),
                pre_vote: true,
            },
        ),
    ]
}

/// Nanoseconds per call of `f`, over `iters` calls.
fn time(iters: u64, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

/// One measurement: (encode ns, decode ns) per message.
fn measure(codec: &Codec, msg: &Message, iters: u64) -> (f64, f64) {
    let mut buf = Vec::with_capacity(16 << 10);
    let enc = time(iters, || {
        buf.clear();
        (codec.encode)(black_box(msg), &mut buf);
        black_box(&buf);
    });
    let bytes = buf.clone();
    let dec = time(iters, || {
        black_box((codec.decode)(black_box(&bytes)).unwrap());
    });
    (enc, dec)
}

/// Bytes and allocations (encode, decode) per message, with a check that it round-trips.
fn shape(codec: &Codec, msg: &Message) -> (usize, u64, u64) {
    let mut buf = Vec::with_capacity(16 << 10);
    let count = |f: &mut dyn FnMut()| {
        ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.store(true, Ordering::Relaxed);
        f();
        COUNTING.store(false, Ordering::Relaxed);
        ALLOCS.load(Ordering::Relaxed)
    };
    let enc = count(&mut || (codec.encode)(msg, &mut buf));
    let mut back = None;
    let dec = count(&mut || back = Some((codec.decode)(&buf)));
    assert_eq!(back.unwrap().as_ref(), Ok(msg), "{} round trip", codec.name);
    (buf.len(), enc, dec)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    println!("{ROUNDS} rounds, codecs alternating, medians; allocs = encode + decode");
    println!(
        "{:<18} {:<6} {:>9} {:>9} {:>9} {:>8} {:>7}",
        "message", "codec", "enc ns", "dec ns", "total ns", "bytes", "allocs"
    );
    for (name, msg) in cases() {
        // Iterations for ~TARGET per loop, from a short warm-up of the slower codec.
        let per = CODECS
            .iter()
            .map(|c| {
                let (e, d) = measure(c, &msg, 200);
                e.max(d)
            })
            .fold(0.0, f64::max);
        let iters = (TARGET.as_nanos() as f64 / per).max(100.0) as u64;
        let mut samples = [[Vec::new(), Vec::new(), Vec::new()], Default::default()];
        for round in 0..ROUNDS {
            for k in 0..2 {
                let c = if round % 2 == 0 { k } else { 1 - k };
                let (e, d) = measure(&CODECS[c], &msg, iters);
                samples[c][0].push(e);
                samples[c][1].push(d);
                samples[c][2].push(e + d);
            }
        }
        for (c, s) in CODECS.iter().zip(&mut samples) {
            let (bytes, ea, da) = shape(c, &msg);
            println!(
                "{name:<18} {:<6} {:>9.0} {:>9.0} {:>9.0} {bytes:>8} {:>7}",
                c.name,
                median(&mut s[0]),
                median(&mut s[1]),
                median(&mut s[2]),
                format!("{ea}+{da}"),
            );
        }
    }
}
