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

/// One recorded unit of traffic: exact bytes, when, where, which way.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub at: Duration,
    pub server: String,
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
    pub server: String,
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
    frames: Mutex<Vec<Frame>>,
    next_conn: AtomicU64,
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
            frames: Mutex::new(Vec::new()),
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
        tracing::trace!(server = %origin.server, conn = origin.conn, ?dir, ?kind, len = bytes.len(), fault = ?fault, "recorded");
        let mut frames = self.frames.lock().expect("recorder lock");
        let seq = frames.len() as u64 + 1;
        frames.push(Frame {
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
            kind,
            bytes,
            fault,
        });
    }

    /// Frames whose client address is one of `clients`.
    pub fn frames_for(&self, clients: &[SocketAddr]) -> Vec<Frame> {
        self.frames.lock().expect("recorder lock").iter().filter(|f| clients.contains(&f.client)).cloned().collect()
    }

    /// Every frame from the `first`-th on.
    pub fn frames_from(&self, first: usize) -> Vec<Frame> {
        self.frames.lock().expect("recorder lock").iter().skip(first).cloned().collect()
    }

    /// Every frame so far.
    pub fn frames_for_all(&self) -> Vec<Frame> {
        self.frames.lock().expect("recorder lock").clone()
    }

    /// Number of frames so far.
    pub fn len(&self) -> usize {
        self.frames.lock().expect("recorder lock").len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
