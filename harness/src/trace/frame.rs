//! Frames and the recorder every tap writes into.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::wire::{Proto, Transport};

/// Which way a frame travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Direction {
    ToServer,
    ToClient,
}

/// What a frame's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    Sip,
    XmppHeader,
    XmppElement,
    XmppClose,
    Whitespace,
    Opaque,
    /// A tap's account of a TLS handshake it terminated (see `tap::starttls`): text, not bytes
    /// from the wire.
    TlsHandshake,
    Unparsed(String),
    /// A tap's account of one side ending its half of a TCP connection: who, and how (EOF,
    /// reset), as text; no bytes of the wire. Kept in the raw trace only, since which of two
    /// closes crossing each other the tap sees first is chance.
    Closed(String),
    /// A UDP tap's account of datagrams the kernel dropped at its socket: how many, and why.
    /// No bytes; no client to name (they were never read).
    Lost { datagrams: u64, why: String },
    /// A tap's account of a fault it injected into a connection (a reset, a stall): what, as
    /// text; no bytes of the wire.
    Fault(String),
}

impl FrameKind {
    /// What one SIP message's bytes (a datagram, or a message cut from a stream) are: SIP,
    /// keepalive whitespace, or garbage with the parser's reason.
    pub fn of_sip(bytes: &[u8]) -> FrameKind {
        if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return FrameKind::Whitespace;
        }
        match crate::sip::message::SipMessage::parse(bytes) {
            Ok(_) => FrameKind::Sip,
            Err(e) => FrameKind::Unparsed(e.to_string()),
        }
    }
}

/// One recorded unit of traffic: exact bytes, when, where, which way.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub at: Duration,
    pub server: std::sync::Arc<str>,
    pub proto: Proto,
    pub transport: Transport,
    pub conn: u64,
    pub client: SocketAddr,
    /// The tap's listening address the client reached.
    pub tap: SocketAddr,
    /// The tap's socket towards the server for this client (what the server sees), if it has one.
    pub upstream: Option<SocketAddr>,
    pub dir: Direction,
    pub kind: FrameKind,
    pub bytes: Vec<u8>,
    /// What the tap did to it instead of forwarding it (fault injection), if anything.
    pub fault: Option<Fault>,
}

#[cfg(test)]
impl Frame {
    /// A frame for unit tests: the XMPP or SIP element `text` on connection `conn` (its client
    /// at 127.0.0.1:40000+conn), at time zero.
    pub fn for_test(seq: u64, conn: u64, proto: Proto, dir: Direction, text: &str) -> Frame {
        Frame {
            seq,
            at: Duration::ZERO,
            server: "s".into(),
            proto,
            transport: Transport::Tcp,
            conn,
            client: SocketAddr::from(([127, 0, 0, 1], 40000 + conn as u16)),
            tap: SocketAddr::from(([127, 0, 0, 1], 5222)),
            upstream: None,
            dir,
            kind: if proto == Proto::Sip { FrameKind::Sip } else { FrameKind::XmppElement },
            bytes: text.as_bytes().to_vec(),
            fault: None,
        }
    }
}

/// What a tap did to a frame instead of forwarding it as it came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not forwarded: a lossy network, as the scenario's `faults` asked.
    Dropped,
    /// Not forwarded: the tap could not open a socket towards the server (out of descriptors).
    NoUpstream,
    /// Forwarded this much later than it came.
    Delayed(Duration),
    /// Forwarded twice.
    Duplicated,
    /// Forwarded after the client's next datagram.
    Reordered,
    /// The tap reset the connection (a `Fault` frame of its own).
    Reset,
    /// The tap forwarded nothing on the connection for this long (a `Fault` frame of its own).
    Stalled(Duration),
}

impl Fault {
    /// The word traces print.
    pub fn name(self) -> String {
        match self {
            Fault::Dropped => "dropped".into(),
            Fault::NoUpstream => "not-forwarded".into(),
            Fault::Delayed(d) => format!("delayed-{}ms", d.as_millis()),
            Fault::Duplicated => "duplicated".into(),
            Fault::Reordered => "reordered".into(),
            Fault::Reset => "reset".into(),
            Fault::Stalled(d) => format!("stalled-{}ms", d.as_millis()),
        }
    }
}

/// Where a tap's frames came from: fixed per connection.
#[derive(Debug, Clone)]
pub struct Origin {
    pub server: std::sync::Arc<str>,
    pub proto: Proto,
    pub transport: Transport,
    pub conn: u64,
    pub client: SocketAddr,
    /// The tap's listening address the client reached.
    pub tap: SocketAddr,
    /// The tap's socket towards the server for this client, if it has one.
    pub upstream: Option<SocketAddr>,
}

/// Collects frames from all taps of a server set, in arrival order.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    /// The wall clock at `start`, to place frames in outside captures (pcapng).
    started_wall: std::time::SystemTime,
    frames: Mutex<Frames>,
    next_conn: AtomicU64,
}

/// The recorded frames, and which of them are datagrams still to be told SIP or garbage.
#[derive(Debug, Default)]
struct Frames {
    list: Vec<Frame>,
    /// Indexes into `list`: a UDP tap records a datagram as it relays it and leaves the parse
    /// that classifies it to whoever reads the frames first, off the relay's path (it was about
    /// an eighth of the relay's time under SIPp, `bench/sipp-tap`).
    unclassified: Vec<usize>,
}

impl Frames {
    /// The frames, every datagram classified.
    fn classified(&mut self) -> &[Frame] {
        for i in self.unclassified.drain(..) {
            let f = &mut self.list[i];
            f.kind = FrameKind::of_sip(&f.bytes);
        }
        &self.list
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            started_wall: std::time::SystemTime::now(),
            frames: Mutex::new(Frames::default()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Time on the frames' clock (`Frame::at`) now.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Microseconds since the Unix epoch at the frames' time zero.
    pub fn epoch_unix_us(&self) -> u64 {
        self.started_wall.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
    }

    /// A fresh connection number.
    pub fn new_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Store a frame.
    pub fn record(&self, origin: &Origin, dir: Direction, kind: FrameKind, bytes: Vec<u8>) {
        self.record_with(origin, dir, kind, bytes, None);
    }

    /// Store a frame the tap did something to (`fault`) instead of forwarding it.
    pub fn record_with(&self, origin: &Origin, dir: Direction, kind: FrameKind, bytes: Vec<u8>, fault: Option<Fault>) {
        self.push(origin, dir, Some(kind), bytes, fault);
    }

    /// Store a datagram as it was relayed (`fault` as in [`Recorder::record_with`]); whether it
    /// is SIP or garbage is decided when the frames are first read.
    pub fn record_datagram(&self, origin: &Origin, dir: Direction, bytes: Vec<u8>, fault: Option<Fault>) {
        self.push(origin, dir, None, bytes, fault);
    }

    fn push(&self, origin: &Origin, dir: Direction, kind: Option<FrameKind>, bytes: Vec<u8>, fault: Option<Fault>) {
        tracing::trace!(server = %origin.server, conn = origin.conn, ?dir, ?kind, len = bytes.len(), fault = ?fault, "recorded");
        let mut frames = self.frames.lock().expect("recorder lock");
        let index = frames.list.len();
        let seq = index as u64 + 1;
        if kind.is_none() {
            frames.unclassified.push(index);
        }
        frames.list.push(Frame {
            seq,
            at: self.start.elapsed(),
            server: origin.server.clone(),
            proto: origin.proto,
            transport: origin.transport,
            conn: origin.conn,
            client: origin.client,
            tap: origin.tap,
            upstream: origin.upstream,
            dir,
            // Replaced by its class before anyone can read it.
            kind: kind.unwrap_or(FrameKind::Opaque),
            bytes,
            fault,
        });
    }

    /// Frames whose client address is one of `clients`.
    pub fn frames_for(&self, clients: &[SocketAddr]) -> Vec<Frame> {
        self.frames.lock().expect("recorder lock").classified().iter().filter(|f| clients.contains(&f.client)).cloned().collect()
    }

    /// Every frame from the `first`-th on.
    pub fn frames_from(&self, first: usize) -> Vec<Frame> {
        self.frames.lock().expect("recorder lock").classified().iter().skip(first).cloned().collect()
    }

    /// Every frame so far.
    pub fn frames_for_all(&self) -> Vec<Frame> {
        self.frames.lock().expect("recorder lock").classified().to_vec()
    }

    /// Number of frames so far.
    pub fn len(&self) -> usize {
        self.frames.lock().expect("recorder lock").list.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_datagram_is_classified_when_first_read_and_stays_in_its_place() {
        let rec = Recorder::new();
        let o = Origin {
            server: "kamailio".into(), proto: Proto::Sip, transport: Transport::Udp, conn: 1,
            client: "127.0.0.1:40001".parse().unwrap(), tap: "127.0.0.1:5060".parse().unwrap(), upstream: None,
        };
        rec.record_datagram(&o, Direction::ToServer, b"OPTIONS sip:d SIP/2.0\r\nContent-Length: 0\r\n\r\n".to_vec(), None);
        rec.record(&o, Direction::ToClient, FrameKind::Fault("stalled".into()), Vec::new());
        rec.record_datagram(&o, Direction::ToClient, vec![0, 255, b'\n'], Some(Fault::Duplicated));
        let kinds = |frames: Vec<Frame>| frames.into_iter().map(|f| (f.seq, f.kind, f.fault)).collect::<Vec<_>>();
        let first = kinds(rec.frames_from(0));
        assert_eq!(first[0], (1, FrameKind::Sip, None));
        assert_eq!(first[1], (2, FrameKind::Fault("stalled".into()), None));
        assert!(matches!(first[2], (3, FrameKind::Unparsed(_), Some(Fault::Duplicated))), "{:?}", first[2]);
        // Read again, through another getter: the same classes.
        assert_eq!(kinds(rec.frames_for_all()), first);
    }
}
