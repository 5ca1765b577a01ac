//! Frames and the recorder every tap writes into.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which protocol a tap relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Sip,
    Xmpp,
}

impl Proto {
    /// Lower-case name, as traces print it.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Sip => "sip",
            Proto::Xmpp => "xmpp",
        }
    }
}

/// Which transport a tap relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP from the first byte (SIP over TLS, RFC 3261 §26.2).
    Tls,
}

impl Transport {
    /// Lower-case name, as traces print it.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// Whether it delivers in order without loss (no SIP retransmissions, RFC 3261 §17).
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
}

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
    frames: Mutex<Vec<Frame>>,
    next_conn: AtomicU64,
    /// Tap-side upstream socket -> the client it relays for (servers see these addresses).
    aliases: Mutex<HashMap<SocketAddr, SocketAddr>>,
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
            frames: Mutex::new(Vec::new()),
            next_conn: AtomicU64::new(1),
            aliases: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh connection number.
    pub fn new_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Note that the server will see `upstream` for traffic of `client`.
    pub fn alias(&self, upstream: SocketAddr, client: SocketAddr) {
        self.aliases.lock().expect("recorder lock").insert(upstream, client);
    }

    /// The client an upstream socket relays for.
    pub fn client_of(&self, upstream: SocketAddr) -> Option<SocketAddr> {
        self.aliases.lock().expect("recorder lock").get(&upstream).copied()
    }

    /// Every (upstream, client) pair the taps have opened.
    pub fn aliases(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.aliases.lock().expect("recorder lock").iter().map(|(u, c)| (*u, *c)).collect()
    }

    /// Store a frame.
    pub fn record(&self, origin: &Origin, dir: Direction, kind: FrameKind, bytes: Vec<u8>) {
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
        });
    }

    /// Frames whose client address is one of `clients`.
    pub fn frames_for(&self, clients: &[SocketAddr]) -> Vec<Frame> {
        self.frames_since(0, clients)
    }

    /// Frames from the `first`-th on whose client address is one of `clients`: one scenario's,
    /// even when a client of an earlier scenario had the same address.
    pub fn frames_since(&self, first: usize, clients: &[SocketAddr]) -> Vec<Frame> {
        let frames = self.frames.lock().expect("recorder lock");
        frames.iter().skip(first).filter(|f| clients.contains(&f.client)).cloned().collect()
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
