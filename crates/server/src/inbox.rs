//! The driver's inbox: one place where the Raft thread waits for its inputs.
//!
//! Two kinds of input arrive. Proposals, read barriers and reports from helper threads
//! come through a channel ([`InboxSender`]). Messages from peers come straight from
//! their sockets: once the peer runtime has checked a connection's handshake it hands
//! the socket over ([`Input::PeerStream`]), and from then on the Raft thread reads and
//! decodes its frames itself. A peer's append thus wakes the thread that steps it,
//! rather than a peer thread that would then wake the Raft thread; on this 2-core VM
//! every cross-thread wake-up is an IPI, which is a VM exit.
//!
//! The thread sleeps in `epoll_wait` (through mio) on the peer sockets and an eventfd.
//! A sender writes the eventfd only when the Raft thread is asleep, so a busy driver
//! takes channel inputs without any system call on either side.

use crate::driver::Input;
use crate::raft_engine::MemberEngine;
use crate::wire;
use engine::NodeId;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SendError, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

/// The eventfd's token; peer sockets get 1, 2, ...
const WAKER: Token = Token(0);
/// Channel inputs taken per wait (as before the inbox: a bound on one round's work).
const MAX_INPUTS: usize = 4096;
/// Bytes read from one socket per wait before other sockets get their turn.
const READ_BUDGET: usize = 4 << 20;
/// Initial read buffer per peer socket (grows for a larger frame).
const READ_BUF: usize = 256 << 10;

/// Every sender wakes the Raft thread through this when it sleeps.
struct Wake {
    sleeping: AtomicBool,
    waker: Waker,
}

/// Hands inputs to the driver (cloned by every thread that talks to it).
#[derive(Clone)]
pub struct InboxSender {
    tx: mpsc::Sender<Input>,
    wake: Arc<Wake>,
}

impl InboxSender {
    /// Queues `input`, waking the Raft thread if it sleeps. Fails once the driver has
    /// stopped.
    pub fn send(&self, input: Input) -> Result<(), SendError<Input>> {
        self.tx.send(input)?;
        if self.wake.sleeping.swap(false, Ordering::SeqCst) {
            // Fails only if the eventfd is gone, i.e. the driver has stopped.
            let _ = self.wake.waker.wake();
        }
        Ok(())
    }
}

/// Why [`Inbox::wait`] returned no inputs.
#[derive(Debug, PartialEq, Eq)]
pub enum InboxError {
    /// Every sender is gone (the driver is no longer needed).
    Disconnected,
    /// Waiting failed: the member must stop.
    Failed(engine::Fatal),
}

/// A peer socket the Raft thread reads, with the bytes of a frame not yet complete.
struct PeerReader {
    from: NodeId,
    stream: TcpStream,
    /// Bytes read from the socket (`etcd_network_peer_received_bytes_total`).
    received: prometheus::IntCounter,
    /// `buf[lo..hi]` holds bytes read and not yet decoded.
    buf: Vec<u8>,
    lo: usize,
    hi: usize,
}

/// What reading a socket found, besides the frames.
enum ReadEnd {
    /// Nothing more for now (the socket would block).
    Drained,
    /// The budget ran out with more to read.
    More,
    /// The peer closed the connection, or it broke (the reason), or sent garbage.
    Closed(Option<String>),
}

impl PeerReader {
    /// Reads up to [`READ_BUDGET`] bytes and appends every complete frame's message
    /// to `out`.
    fn read(&mut self, out: &mut Vec<Input>) -> ReadEnd {
        let mut budget = READ_BUDGET;
        loop {
            if let Err(e) = self.decode(out) {
                return ReadEnd::Closed(Some(e));
            }
            if budget == 0 {
                return ReadEnd::More;
            }
            self.make_room();
            let end = self.buf.len().min(self.hi + budget);
            match self.stream.read(&mut self.buf[self.hi..end]) {
                Ok(0) => return ReadEnd::Closed(None),
                Ok(n) => {
                    self.hi += n;
                    budget -= n;
                    self.received.inc_by(n as u64);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return ReadEnd::Drained,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return ReadEnd::Closed(Some(e.to_string())),
            }
        }
    }

    /// Decodes the complete frames in the buffer.
    fn decode(&mut self, out: &mut Vec<Input>) -> Result<(), String> {
        while self.hi - self.lo >= 8 {
            let header: &[u8; 8] = self.buf[self.lo..self.lo + 8].try_into().unwrap();
            let (len, crc) = wire::frame_len(header).map_err(|e| e.to_string())?;
            if self.hi - self.lo < 8 + len {
                break;
            }
            let body = &self.buf[self.lo + 8..self.lo + 8 + len];
            match wire::decode_frame::<MemberEngine>(body, crc).map_err(|e| e.to_string())? {
                wire::Frame::Message(msg) => out.push(Input::Peer(self.from, msg)),
                wire::Frame::Ping(token) => out.push(Input::Ping(self.from, token)),
                wire::Frame::Pong(token) => out.push(Input::Pong(self.from, token)),
            }
            self.lo += 8 + len;
        }
        if self.lo == self.hi {
            (self.lo, self.hi) = (0, 0);
            if self.buf.len() > 4 * READ_BUF {
                self.buf = vec![0; READ_BUF]; // after a large frame (a snapshot chunk)
            }
        }
        Ok(())
    }

    /// Makes space after `hi`: moves a partial frame to the front, and grows the
    /// buffer when the frame it holds is larger than the buffer.
    fn make_room(&mut self) {
        if self.hi < self.buf.len() {
            return;
        }
        self.buf.copy_within(self.lo..self.hi, 0);
        (self.lo, self.hi) = (0, self.hi - self.lo);
        let need = if self.hi >= 8 {
            let header: &[u8; 8] = self.buf[..8].try_into().unwrap();
            wire::frame_len(header).map_or(0, |(len, _)| 8 + len)
        } else {
            0
        };
        if self.hi == self.buf.len() || need > self.buf.len() {
            let grown = need.max(self.buf.len() + READ_BUF);
            self.buf.resize(grown, 0);
        }
    }
}

/// The receiving end, owned by the Raft thread.
pub struct Inbox {
    rx: mpsc::Receiver<Input>,
    wake: Arc<Wake>,
    poll: Poll,
    events: Events,
    peers: HashMap<Token, PeerReader>,
    /// Sockets with bytes left to read from an earlier wait.
    ready: Vec<Token>,
    next_token: usize,
}

/// A new inbox and its first sender.
pub fn channel() -> std::io::Result<(InboxSender, Inbox)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKER)?;
    let wake = Arc::new(Wake {
        sleeping: AtomicBool::new(false),
        waker,
    });
    let (tx, rx) = mpsc::channel();
    let sender = InboxSender {
        tx,
        wake: wake.clone(),
    };
    let inbox = Inbox {
        rx,
        wake,
        poll,
        events: Events::with_capacity(64),
        peers: HashMap::new(),
        ready: Vec::new(),
        next_token: 1,
    };
    Ok((sender, inbox))
}

impl Inbox {
    /// Appends the inputs available now to `out`, or, when there are none, waits up
    /// to `timeout` for some. Returns [`InboxError::Disconnected`] once every sender is gone.
    /// Waiting itself failing (the poller refused) is fatal for the member.
    pub fn wait(&mut self, timeout: Duration, out: &mut Vec<Input>) -> Result<(), InboxError> {
        let before = out.len();
        self.drain_channel(out)?;
        self.read_ready(out);
        let mut sleep = Duration::ZERO;
        if out.len() == before && self.ready.is_empty() {
            // Announce the sleep, then look once more: a sender that queued before
            // the announcement is seen here, one that queued after it wakes us.
            self.wake.sleeping.store(true, Ordering::SeqCst);
            self.drain_channel(out)?;
            if out.len() == before {
                sleep = timeout;
            }
        }
        // Even with inputs in hand, poll (without waiting) so that sockets that
        // became readable are not starved by a busy channel.
        let polled = self.poll.poll(&mut self.events, Some(sleep));
        self.wake.sleeping.store(false, Ordering::SeqCst);
        if let Err(e) = polled {
            if e.kind() != ErrorKind::Interrupted {
                let fatal = engine::Fatal::new("waiting for inputs", e);
                return Err(InboxError::Failed(fatal));
            }
        }
        for ev in self.events.iter() {
            let t = ev.token();
            if t != WAKER && !self.ready.contains(&t) {
                self.ready.push(t);
            }
        }
        self.drain_channel(out)?;
        self.read_ready(out);
        Ok(())
    }

    /// Takes up to [`MAX_INPUTS`] queued inputs; adopts handed-over peer sockets.
    fn drain_channel(&mut self, out: &mut Vec<Input>) -> Result<(), InboxError> {
        let mut taken = 0;
        while taken < MAX_INPUTS {
            match self.rx.try_recv() {
                Ok(Input::PeerStream {
                    from,
                    stream,
                    buffered,
                    received,
                }) => self.adopt(from, stream, buffered, received),
                Ok(input) => {
                    out.push(input);
                    taken += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(InboxError::Disconnected),
            }
        }
        Ok(())
    }

    /// Closes every connection from `peer` (a member removed from the cluster: when
    /// it dials again, it is told so).
    pub fn drop_peer(&mut self, peer: NodeId) {
        let tokens: Vec<Token> = (self.peers.iter())
            .filter(|(_, r)| r.from == peer)
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            if let Some(mut r) = self.peers.remove(&t) {
                let _ = self.poll.registry().deregister(&mut r.stream);
            }
        }
        self.ready.retain(|t| self.peers.contains_key(t));
    }

    /// Starts reading a peer's connection; `buffered` was read past its handshake (and
    /// counted in `received` already).
    fn adopt(
        &mut self,
        from: NodeId,
        stream: std::net::TcpStream,
        buffered: Vec<u8>,
        received: prometheus::IntCounter,
    ) {
        if let Err(e) = stream.set_nonblocking(true) {
            tracing::warn!(event = "peer_lost", peer = %format_args!("{:x}", from.0), error = %e, "peer connection dropped");
            return;
        }
        let mut stream = TcpStream::from_std(stream);
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            tracing::warn!(event = "peer_lost", peer = %format_args!("{:x}", from.0), error = %e, "peer connection dropped");
            return;
        }
        let mut buf = vec![0; READ_BUF.max(buffered.len())];
        buf[..buffered.len()].copy_from_slice(&buffered);
        let reader = PeerReader {
            from,
            stream,
            received,
            buf,
            lo: 0,
            hi: buffered.len(),
        };
        self.peers.insert(token, reader);
        // Bytes may have arrived before the registration.
        self.ready.push(token);
    }

    /// Reads every socket known to have bytes waiting.
    fn read_ready(&mut self, out: &mut Vec<Input>) {
        for t in std::mem::take(&mut self.ready) {
            let Some(p) = self.peers.get_mut(&t) else {
                continue;
            };
            match p.read(out) {
                ReadEnd::Drained => {}
                ReadEnd::More => self.ready.push(t),
                ReadEnd::Closed(why) => {
                    let mut p = self.peers.remove(&t).expect("present");
                    let _ = self.poll.registry().deregister(&mut p.stream);
                    if let Some(e) = why {
                        tracing::info!(event = "peer_lost", peer = %format_args!("{:x}", p.from.0), error = %e, "peer connection closed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::PeerMessage as Message;
    use raft::{Entry, EntryKind, LogIndex, Term};
    use std::io::Write;
    use std::net::{TcpListener, TcpStream as StdStream};

    fn append(payload: usize, commit: u64) -> Message {
        Message::Append {
            term: Term(2),
            prev_index: LogIndex(0),
            prev_term: Term(0),
            entries: vec![Entry {
                term: Term(2),
                index: LogIndex(1),
                kind: EntryKind::Command(vec![7u8; payload].into()),
            }],
            leader_commit: LogIndex(commit),
            read_seq: 1,
        }
    }

    fn frames(msgs: &[Message]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            wire::encode_frame::<MemberEngine>(m, &mut out);
        }
        out
    }

    /// A connected pair: (the writing end, the end handed to the inbox).
    fn pair() -> (StdStream, StdStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = StdStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    /// Hands `stream` to the inbox as the peer connection of `from`; returns the counter
    /// of the bytes the inbox reads from it.
    fn hand_over(
        tx: &InboxSender,
        from: NodeId,
        stream: StdStream,
        buffered: Vec<u8>,
    ) -> prometheus::IntCounter {
        let received = prometheus::IntCounter::new("received", "bytes").unwrap();
        let input = Input::PeerStream {
            from,
            stream,
            buffered,
            received: received.clone(),
        };
        tx.send(input).unwrap();
        received
    }

    /// Waits until `n` peer messages arrived (bounded: a missed wake-up fails).
    fn collect(inbox: &mut Inbox, n: usize) -> Vec<(NodeId, Message)> {
        let mut got = Vec::new();
        let mut inputs = Vec::new();
        for _ in 0..50 {
            inbox.wait(Duration::from_millis(200), &mut inputs).unwrap();
            for i in inputs.drain(..) {
                if let Input::Peer(from, m) = i {
                    got.push((from, m));
                }
            }
            if got.len() >= n {
                return got;
            }
        }
        panic!("only {} of {n} messages arrived", got.len());
    }

    #[test]
    fn frames_split_anywhere_and_bytes_read_past_the_handshake_decode_in_order() {
        let (tx, mut inbox) = channel().unwrap();
        let (mut w, r) = pair();
        let msgs: Vec<Message> = (0..40).map(|i| append(100 + i * 37, i as u64)).collect();
        let bytes = frames(&msgs);
        // The first 13 bytes were read with the handshake.
        let from = NodeId(9);
        let received = hand_over(&tx, from, r, bytes[..13].to_vec());
        for chunk in bytes[13..].chunks(311) {
            w.write_all(chunk).unwrap();
            w.flush().unwrap();
        }
        let got = collect(&mut inbox, msgs.len());
        assert_eq!(got.len(), msgs.len());
        // Bytes read past the handshake were counted by whoever read them.
        assert_eq!(received.get(), (bytes.len() - 13) as u64);
        for ((f, m), want) in got.iter().zip(&msgs) {
            assert_eq!(*f, from);
            assert_eq!(m, want);
        }
    }

    #[test]
    fn a_frame_larger_than_the_read_buffer_arrives_whole() {
        let (tx, mut inbox) = channel().unwrap();
        let (mut w, r) = pair();
        let msgs = vec![append(10, 1), append(3 * READ_BUF + 5, 2), append(10, 3)];
        hand_over(&tx, NodeId(2), r, Vec::new());
        let bytes = frames(&msgs);
        let writer = std::thread::spawn(move || w.write_all(&bytes).unwrap());
        let got = collect(&mut inbox, 3);
        writer.join().unwrap();
        let got: Vec<Message> = got.into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, msgs);
    }

    #[test]
    fn a_corrupt_frame_closes_only_that_connection() {
        let (tx, mut inbox) = channel().unwrap();
        let (mut bad_w, bad_r) = pair();
        let (mut good_w, good_r) = pair();
        hand_over(&tx, NodeId(1), bad_r, Vec::new());
        hand_over(&tx, NodeId(2), good_r, Vec::new());
        let mut bytes = frames(&[append(50, 1)]);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff; // the checksum no longer matches
        bad_w.write_all(&bytes).unwrap();
        good_w.write_all(&frames(&[append(50, 2)])).unwrap();
        let got = collect(&mut inbox, 1);
        assert_eq!(got, vec![(NodeId(2), append(50, 2))]);
        // The bad connection is dropped (its socket closed); the good one still reads.
        for _ in 0..50 {
            if inbox.peers.len() == 1 {
                break;
            }
            inbox
                .wait(Duration::from_millis(200), &mut Vec::new())
                .unwrap();
        }
        assert_eq!(inbox.peers.len(), 1);
        assert!(inbox.peers.values().all(|p| p.from == NodeId(2)));
        good_w.write_all(&frames(&[append(1, 3)])).unwrap();
        assert_eq!(collect(&mut inbox, 1), vec![(NodeId(2), append(1, 3))]);
    }

    #[test]
    fn a_closed_connection_is_forgotten() {
        let (tx, mut inbox) = channel().unwrap();
        let (mut w, r) = pair();
        hand_over(&tx, NodeId(4), r, Vec::new());
        w.write_all(&frames(&[append(5, 1)])).unwrap();
        drop(w);
        assert_eq!(collect(&mut inbox, 1).len(), 1);
        for _ in 0..50 {
            if inbox.peers.is_empty() {
                break;
            }
            inbox
                .wait(Duration::from_millis(200), &mut Vec::new())
                .unwrap();
        }
        assert!(inbox.peers.is_empty());
    }

    #[test]
    fn a_send_wakes_the_thread_only_while_it_sleeps() {
        let (tx, mut inbox) = channel().unwrap();
        let woken = |inbox: &mut Inbox| {
            inbox
                .poll
                .poll(&mut inbox.events, Some(Duration::ZERO))
                .unwrap();
            inbox.events.iter().any(|e| e.token() == WAKER)
        };
        // Awake: the input is queued, no eventfd write.
        tx.send(Input::Shutdown).unwrap();
        assert!(!woken(&mut inbox));
        // Asleep: the send writes the eventfd, once, and clears the flag.
        inbox.wake.sleeping.store(true, Ordering::SeqCst);
        tx.send(Input::Shutdown).unwrap();
        assert!(!inbox.wake.sleeping.load(Ordering::SeqCst));
        assert!(woken(&mut inbox));
        let mut out = Vec::new();
        inbox.wait(Duration::ZERO, &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_wait_with_nothing_to_do_times_out_and_a_dropped_sender_disconnects() {
        let (tx, mut inbox) = channel().unwrap();
        let mut out = Vec::new();
        inbox.wait(Duration::from_millis(1), &mut out).unwrap();
        assert!(out.is_empty());
        drop(tx);
        assert_eq!(
            inbox.wait(Duration::ZERO, &mut out),
            Err(InboxError::Disconnected)
        );
    }
}
