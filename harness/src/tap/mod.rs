//! Recording relays in front of server ports. Actors connect to a tap; the tap connects to the
//! server, forwards every byte unchanged, and records frames into the [`Recorder`]. An XMPP tap
//! that holds the run's PKI terminates STARTTLS on both sides, and a TLS tap (SIP over TLS)
//! terminates TLS from the first byte (see [`tls`]).

pub mod cut;
pub mod loss;
mod tls;

use crate::trace::frame::{Direction, FrameKind, Origin, Proto, Recorder, Transport};
use cut::StreamCutter;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// What a tap relays and to where.
#[derive(Debug, Clone)]
pub struct TapSpec {
    pub server: String,
    pub proto: Proto,
    pub transport: Transport,
    pub upstream: SocketAddr,
    /// The run's PKI: an XMPP tap with it terminates STARTTLS, a TLS tap needs it; both record
    /// the plaintext.
    pub tls: Option<Arc<crate::tls::Pki>>,
}

/// A fault a UDP tap injects: drop the first `copies` client datagrams whose first line starts
/// with `prefix` (e.g. `MESSAGE `), as a lossy network would. They are still recorded: the
/// client did send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRule {
    pub prefix: String,
    pub copies: usize,
}

/// The rules a tap applies now, shared with whoever sets them per scenario.
pub type Faults = Arc<std::sync::Mutex<Vec<DropRule>>>;

/// The receive buffer a UDP tap asks for: a burst waits here while the tap records.
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// How often a UDP tap reads the kernel's drop counter of its socket.
const LOSS_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// A running tap; dropping it stops every relay task.
pub struct Tap {
    pub spec: TapSpec,
    pub listen: SocketAddr,
    /// Loss to inject (UDP only).
    pub faults: Faults,
    /// Bumped to make a UDP tap forget its clients (see [`Tap::forget_clients`]).
    generation: Arc<std::sync::atomic::AtomicU64>,
    tasks: JoinSet<()>,
}

/// A tap's listening socket, bound before the server behind it starts: the server's config
/// must name the tap's address (Via, Record-Route) so that standards-following clients route
/// every request and response through it.
pub enum BoundTap {
    Stream(TcpListener),
    Datagram(UdpSocket),
}

impl BoundTap {
    /// Bind a free loopback port for this transport (`port` 0), or the given one.
    pub async fn bind(transport: Transport, port: u16) -> std::io::Result<BoundTap> {
        Ok(match transport {
            Transport::Tcp | Transport::Tls => BoundTap::Stream(TcpListener::bind(("127.0.0.1", port)).await?),
            Transport::Udp => {
                let s = UdpSocket::bind(("127.0.0.1", port)).await?;
                loss::set_receive_buffer(&s, UDP_RECEIVE_BUFFER);
                BoundTap::Datagram(s)
            }
        })
    }

    /// The address clients reach the tap at.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            BoundTap::Stream(l) => l.local_addr(),
            BoundTap::Datagram(s) => s.local_addr(),
        }
    }
}

impl Tap {
    /// Bind on a free loopback port and start relaying.
    pub async fn start(spec: TapSpec, recorder: Arc<Recorder>) -> std::io::Result<Tap> {
        let bound = BoundTap::bind(spec.transport, 0).await?;
        Tap::start_on(bound, spec, recorder)
    }

    /// Start relaying on a socket bound earlier.
    pub fn start_on(bound: BoundTap, spec: TapSpec, recorder: Arc<Recorder>) -> std::io::Result<Tap> {
        let mut tasks = JoinSet::new();
        let faults: Faults = Default::default();
        let generation: Arc<std::sync::atomic::AtomicU64> = Default::default();
        let listen = bound.local_addr()?;
        match (bound, spec.transport) {
            (BoundTap::Stream(l), Transport::Tcp | Transport::Tls) => {
                tasks.spawn(accept_loop(l, spec.clone(), recorder));
            }
            (BoundTap::Datagram(s), Transport::Udp) => {
                // The drop count so far, read now: what the kernel drops from here on is the tap's.
                let dropped = loss::udp_drops(listen.port()).unwrap_or(0);
                tasks.spawn(udp_relay(Arc::new(s), spec.clone(), recorder, faults.clone(), generation.clone(), dropped));
            }
            _ => return Err(std::io::Error::other(format!("a {} tap needs a socket of that transport", spec.transport.name()))),
        }
        Ok(Tap { spec, listen, faults, generation, tasks })
    }

    /// Drop every UDP client's upstream socket before the next datagram. Between scenarios:
    /// a new client may get a port an earlier one had, and must not inherit its upstream
    /// socket, where a server may still retransmit requests of the earlier scenario.
    pub fn forget_clients(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stop relaying.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn accept_loop(listener: TcpListener, spec: TapSpec, rec: Arc<Recorder>) {
    let mut conns = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    let mut reported: Option<std::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                conns.spawn(tcp_relay(client, peer, spec.clone(), rec.clone()));
                // Finished relays are reaped, so their tasks do not pile up.
                while conns.try_join_next().is_some() {}
            }
            // Out of file descriptors, say: the tap must outlive it, not end for good.
            Err(e) => {
                // Said once, and again at most every 10 s while it lasts.
                if reported.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(10)) {
                    reported = Some(std::time::Instant::now());
                    eprintln!("sixpac: {} tap {}: accept failed ({e}); retrying", spec.server, listener.local_addr().map(|a| a.to_string()).unwrap_or_default());
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

const ACCEPT_BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// How many clients a UDP tap keeps an upstream socket for; past it, the least recently
/// active one's socket is closed (it gets a new one if it comes back).
pub const MAX_UDP_CLIENTS: usize = 4096;
/// How long a UDP client's upstream socket lives without traffic either way.
pub const UDP_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

/// One UDP client of a tap: the socket that speaks for it upstream, the task relaying the
/// server's answers back, and when traffic last went either way (ms since the tap started).
struct UdpClient {
    up: Arc<UdpSocket>,
    origin: Origin,
    task: tokio::task::AbortHandle,
    last: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for UdpClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A new client of a tap: its connection's number, and which upstream socket speaks for it.
fn register_client(
    spec: &TapSpec,
    rec: &Recorder,
    tap: SocketAddr,
    client: SocketAddr,
    upstream: Option<SocketAddr>,
) -> Origin {
    Origin { server: spec.server.clone(), proto: spec.proto, transport: spec.transport, conn: rec.new_conn(), client, tap, upstream }
}

async fn tcp_relay(client: TcpStream, peer: SocketAddr, spec: TapSpec, rec: Arc<Recorder>) {
    let Ok(server) = TcpStream::connect(spec.upstream).await else {
        return; // dropping the client socket tells the actor the server is unreachable
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let Ok(listen) = client.local_addr() else { return };
    let origin = register_client(&spec, &rec, listen, peer, server.local_addr().ok());
    match (spec.transport, spec.proto, spec.tls.clone()) {
        (Transport::Tls, _, Some(pki)) => return tls::relay_secured(client, server, origin, rec, pki).await,
        (Transport::Tls, _, None) => return, // no certificate to present: nothing can be relayed
        (_, Proto::Xmpp, Some(pki)) => return tls::relay_starttls(client, server, origin, rec, pki).await,
        _ => {}
    }
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, origin.clone(), Direction::ToServer, rec.clone(), None);
    let down = pump(sr, cw, origin, Direction::ToClient, rec, None);
    tokio::join!(up, down);
}

/// How much a tap keeps recording from a side whose peer has gone (it can forward nothing more).
pub const MAX_AFTER_CLOSE: usize = 16 << 20;

/// Relay one direction until EOF, or until it forwarded a frame starting with `switch_at`;
/// then hand both ends back (the stream is about to change, e.g. into TLS). When the other
/// side can take no more, what this side still sends is recorded all the same (up to
/// [`MAX_AFTER_CLOSE`]); how this side ended is recorded as a `Closed` frame.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    origin: Origin,
    dir: Direction,
    rec: Arc<Recorder>,
    switch_at: Option<&[u8]>,
) -> Option<(R, W)>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut cutter = StreamCutter::new(origin.proto);
    let mut buf = vec![0u8; 16384];
    let mut peer_gone = false;
    let mut after_close = 0usize;
    let side = match dir {
        Direction::ToServer => "client",
        Direction::ToClient => "server",
    };
    let how = loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break format!("{side} closed"),
            Err(e) => break format!("{side} reset ({e})"),
            Ok(n) => n,
        };
        // Record before forwarding so a frame is in the trace before anyone can react to it.
        let mut switch = false;
        for (kind, bytes) in cutter.push(&buf[..n]) {
            switch |= switch_at.is_some_and(|p| starts_element(&bytes, p));
            rec.record(&origin, dir, kind, bytes);
        }
        if peer_gone {
            after_close += n;
            if after_close > MAX_AFTER_CLOSE {
                break format!("{side} still sending after its peer had gone; stopped recording after {MAX_AFTER_CLOSE} bytes");
            }
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            peer_gone = true;
            continue;
        }
        if switch {
            return Some((from, to));
        }
    };
    if let Some((kind, bytes)) = cutter.finish() {
        rec.record(&origin, dir, kind, bytes);
    }
    rec.record(&origin, dir, FrameKind::Closed(how), Vec::new());
    let _ = to.shutdown().await;
    None
}

/// Whether a frame's first tag (after any whitespace) starts with `prefix`.
fn starts_element(frame: &[u8], prefix: &[u8]) -> bool {
    frame.iter().position(|b| !b.is_ascii_whitespace()).is_some_and(|p| frame[p..].starts_with(prefix))
}

/// Whether the fault rules swallow this client datagram (and count it if so).
fn swallowed(faults: &Faults, bytes: &[u8]) -> bool {
    let mut rules = faults.lock().expect("faults lock");
    for r in rules.iter_mut() {
        if r.copies > 0 && bytes.starts_with(r.prefix.as_bytes()) {
            r.copies -= 1;
            return true;
        }
    }
    false
}

async fn udp_relay(
    socket: Arc<UdpSocket>,
    spec: TapSpec,
    rec: Arc<Recorder>,
    faults: Faults,
    generation: Arc<std::sync::atomic::AtomicU64>,
    mut dropped: u64,
) {
    let mut upstreams: HashMap<SocketAddr, UdpClient> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65536];
    let mut seen_generation = 0;
    let Ok(listen) = socket.local_addr() else { return };
    let started = std::time::Instant::now();
    let now_ms = move || started.elapsed().as_millis() as u64;
    // Datagrams the kernel dropped at this socket (its buffer full) are counted, and every
    // increase is recorded as a frame of its own: no loss goes unseen in the raw trace.
    let loss_origin = Origin {
        server: spec.server.clone(), proto: spec.proto, transport: Transport::Udp, conn: rec.new_conn(),
        client: SocketAddr::from(([0, 0, 0, 0], 0)), tap: listen, upstream: None,
    };
    let mut check = tokio::time::interval(LOSS_CHECK);
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = check.tick() => {
                loss::record_new_drops(&rec, &loss_origin, &mut dropped);
                let idle = UDP_IDLE.as_millis() as u64;
                let now = now_ms();
                upstreams.retain(|_, c| now.saturating_sub(c.last.load(std::sync::atomic::Ordering::Relaxed)) < idle);
                while tasks.try_join_next().is_some() {}
                continue;
            }
        };
        let (n, peer) = match received {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF_FIRST).await;
                continue;
            }
        };
        let bytes = buf[..n].to_vec();
        let now_generation = generation.load(std::sync::atomic::Ordering::SeqCst);
        if now_generation != seen_generation {
            seen_generation = now_generation;
            upstreams.clear();
            tasks.abort_all();
        }
        if !upstreams.contains_key(&peer) {
            if upstreams.len() >= MAX_UDP_CLIENTS {
                evict_least_recent(&mut upstreams);
            }
            let mut up = UdpSocket::bind("127.0.0.1:0").await;
            if up.is_err() && !upstreams.is_empty() {
                // Out of descriptors: make room by closing the least recently active client's.
                evict_least_recent(&mut upstreams);
                up = UdpSocket::bind("127.0.0.1:0").await;
            }
            let connected = match up {
                Ok(up) => up.connect(spec.upstream).await.map(|()| up),
                Err(e) => Err(e),
            };
            let up = match connected {
                Ok(up) => Arc::new(up),
                Err(_) => {
                    // Recorded all the same, and marked: the tap could not forward it.
                    let origin = register_client(&spec, &rec, listen, peer, None);
                    rec.record_with(&origin, Direction::ToServer, cut::datagram(&bytes), bytes, Some(crate::trace::frame::Fault::NoUpstream));
                    continue;
                }
            };
            let origin = register_client(&spec, &rec, listen, peer, up.local_addr().ok());
            let last = Arc::new(std::sync::atomic::AtomicU64::new(now_ms()));
            let task = tasks.spawn(udp_return(up.clone(), socket.clone(), peer, origin.clone(), rec.clone(), last.clone(), started));
            upstreams.insert(peer, UdpClient { up, origin, task, last });
        }
        let client = &upstreams[&peer];
        client.last.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        // Recorded either way (the client did send it), and marked when it goes no further.
        let dropped = swallowed(&faults, &bytes);
        rec.record_with(&client.origin, Direction::ToServer, cut::datagram(&bytes), bytes.clone(), dropped.then_some(crate::trace::frame::Fault::Dropped));
        if dropped {
            continue;
        }
        let _ = client.up.send(&bytes).await;
    }
}

/// Close the upstream socket of the client with the oldest traffic.
fn evict_least_recent(upstreams: &mut HashMap<SocketAddr, UdpClient>) {
    let oldest = upstreams.iter().min_by_key(|(_, c)| c.last.load(std::sync::atomic::Ordering::Relaxed)).map(|(a, _)| *a);
    if let Some(a) = oldest {
        upstreams.remove(&a);
    }
}

async fn udp_return(
    up: Arc<UdpSocket>,
    tap: Arc<UdpSocket>,
    client: SocketAddr,
    origin: Origin,
    rec: Arc<Recorder>,
    last: Arc<std::sync::atomic::AtomicU64>,
    started: std::time::Instant,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match up.recv(&mut buf).await {
            Ok(n) => {
                last.store(started.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
                let bytes = buf[..n].to_vec();
                rec.record(&origin, Direction::ToClient, cut::datagram(&bytes), bytes.clone());
                let _ = tap.send_to(&bytes, client).await;
            }
            // ICMP unreachable from a not-yet-listening server: keep the relay alive.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_datagram_of_a_burst_is_recorded_or_counted_as_lost() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let rec = Arc::new(Recorder::new());
        let spec = TapSpec { server: "s".into(), proto: Proto::Sip, transport: Transport::Udp, upstream: server.local_addr().unwrap(), tls: None };
        let bound = BoundTap::bind(Transport::Udp, 0).await.unwrap();
        // A tiny buffer, so that the burst overflows it and the kernel drops some.
        if let BoundTap::Datagram(s) = &bound {
            loss::set_receive_buffer(s, 2048);
        }
        let tap = Tap::start_on(bound, spec, rec.clone()).unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        const SENT: u64 = 10_000;
        for i in 0..SENT {
            let _ = client.send_to(format!("OPTIONS sip:x SIP/2.0\r\nCSeq: {i} OPTIONS\r\nContent-Length: 0\r\n\r\n").as_bytes(), tap.listen);
        }
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let frames = rec.frames_for_all();
        let recorded = frames.iter().filter(|f| f.dir == Direction::ToServer && matches!(f.kind, FrameKind::Sip)).count() as u64;
        let lost: u64 = frames.iter().map(|f| if let FrameKind::Lost { datagrams, .. } = f.kind { datagrams } else { 0 }).sum();
        assert_eq!(recorded + lost, SENT, "{recorded} recorded, {lost} counted as lost");
        assert!(lost > 0, "the burst should have overflowed a 2 KB buffer");
    }

    #[tokio::test]
    async fn what_a_client_sends_after_the_server_closed_is_still_recorded() {
        // A server that closes at once, reading nothing.
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = server.accept().await {
                drop(s);
            }
        });
        let rec = Arc::new(Recorder::new());
        let spec = TapSpec { server: "s".into(), proto: Proto::Sip, transport: Transport::Tcp, upstream, tls: None };
        let tap = Tap::start(spec, rec.clone()).await.unwrap();
        let mut client = TcpStream::connect(tap.listen).await.unwrap();
        // One SIP message whose header alone is 100 KB.
        let big = format!("OPTIONS sip:x SIP/2.0\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n", "a".repeat(100_000));
        for chunk in big.as_bytes().chunks(4096) {
            if client.write_all(chunk).await.is_err() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(client);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let frames = rec.frames_for_all();
        let sent: usize = frames.iter().filter(|f| f.dir == Direction::ToServer && !matches!(f.kind, FrameKind::Closed(_))).map(|f| f.bytes.len()).sum();
        assert_eq!(sent, big.len(), "every byte the client sent is recorded");
        let closes: Vec<&FrameKind> = frames.iter().map(|f| &f.kind).filter(|k| matches!(k, FrameKind::Closed(_))).collect();
        assert!(closes.iter().any(|k| matches!(k, FrameKind::Closed(h) if h == "server closed")), "{closes:?}");
        assert!(closes.iter().any(|k| matches!(k, FrameKind::Closed(h) if h.starts_with("client"))), "{closes:?}");
    }

    #[test]
    fn a_drop_rule_swallows_only_its_first_copies() {
        let f: Faults = Arc::new(std::sync::Mutex::new(vec![DropRule { prefix: "MESSAGE ".into(), copies: 2 }]));
        assert!(!swallowed(&f, b"REGISTER sip:x SIP/2.0"));
        assert!(swallowed(&f, b"MESSAGE sip:x SIP/2.0"));
        assert!(swallowed(&f, b"MESSAGE sip:x SIP/2.0"));
        assert!(!swallowed(&f, b"MESSAGE sip:x SIP/2.0"));
    }
}
