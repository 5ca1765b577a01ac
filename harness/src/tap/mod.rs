//! Recording relays in front of server ports. Actors connect to a tap; the tap connects to the
//! server, forwards every byte unchanged, and records frames into the [`Recorder`]. An XMPP tap
//! that holds the run's PKI terminates STARTTLS on both sides, and a TLS tap (SIP over TLS)
//! terminates TLS from the first byte (see [`tls`]).

pub mod cut;
pub mod fault;
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

use fault::DatagramFault;
pub use fault::{FaultRule, Faults};

/// The receive buffer a UDP tap asks for: a burst waits here while the tap records.
pub const UDP_RECEIVE_BUFFER: usize = 4 << 20;
/// The receive buffer of each client's upstream socket (one client's answers).
const UDP_UPSTREAM_RECEIVE_BUFFER: usize = 1 << 20;

/// How often a UDP tap reads the kernel's drop counter of its socket.
const LOSS_CHECK: std::time::Duration = std::time::Duration::from_millis(100);
/// How often a UDP tap expires idle clients and releases held datagrams.
const HOUSEKEEPING: std::time::Duration = std::time::Duration::from_millis(100);

/// UDP clients to forget, shared between a tap and its relay task.
type Forget = Arc<std::sync::Mutex<Vec<SocketAddr>>>;

/// A running tap; dropping it stops every relay task.
pub struct Tap {
    pub spec: TapSpec,
    pub listen: SocketAddr,
    /// Faults to inject.
    pub faults: Faults,
    /// Clients a UDP tap is to forget before its next datagram (see [`Tap::forget_clients`]).
    forget: Forget,
    tasks: JoinSet<()>,
    /// A UDP tap's relay thread, which ends when this is dropped (see [`UdpRelayThread`]).
    relay: Option<UdpRelayThread>,
}

/// A UDP tap relays on a thread of its own, with a single-threaded runtime: under load a
/// datagram and its answer are then relayed without waking a second worker thread, which cost
/// about as much as the relaying itself (`bench/sipp-tap`). Dropping this ends the relay: the
/// thread's runtime drops every task, and with them the tap's and the clients' sockets.
struct UdpRelayThread {
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl UdpRelayThread {
    fn spawn(socket: UdpSocket, spec: TapSpec, rec: Arc<Recorder>, faults: Faults, forget: Forget, watched: loss::WatchList) -> std::io::Result<UdpRelayThread> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        // Moved between runtimes as a plain socket: a tokio socket belongs to the runtime
        // whose reactor registered it. Registered here, so that a failure is the caller's error.
        let socket = {
            let _in_relay_runtime = runtime.enter();
            UdpSocket::from_std(socket.into_std()?)?
        };
        std::thread::Builder::new().name(format!("tap {}", spec.server)).spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = udp_relay(Arc::new(socket), spec, rec, faults, forget, watched) => {}
                    _ = stopped => {}
                }
            });
        })?;
        Ok(UdpRelayThread { _stop: stop })
    }
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
        let mut relay = None;
        let faults: Faults = Default::default();
        let forget: Forget = Default::default();
        let listen = bound.local_addr()?;
        match (bound, spec.transport) {
            (BoundTap::Stream(l), Transport::Tcp | Transport::Tls) => {
                tasks.spawn(accept_loop(l, spec.clone(), recorder, faults.clone()));
            }
            (BoundTap::Datagram(s), Transport::Udp) => {
                // The drop count so far, read now: what the kernel drops from here on is the tap's.
                let dropped = loss::udp_drops(listen.port()).unwrap_or(0);
                // Datagrams the kernel dropped at this socket or a client's upstream socket (its
                // buffer full) are counted, and every increase is recorded as a frame of its
                // own: no loss goes unseen.
                let loss_origin = Origin {
                    server: spec.server.as_str().into(), proto: spec.proto, transport: Transport::Udp, conn: recorder.new_conn(),
                    client: SocketAddr::from(([0, 0, 0, 0], 0)), tap: listen, upstream: None,
                };
                let watched: loss::WatchList = Arc::new(std::sync::Mutex::new(vec![loss::Watched {
                    port: listen.port(), origin: loss_origin, dir: Direction::ToServer, seen: dropped,
                }]));
                tasks.spawn(loss::watch(recorder.clone(), watched.clone(), LOSS_CHECK));
                relay = Some(UdpRelayThread::spawn(s, spec.clone(), recorder, faults.clone(), forget.clone(), watched)?);
            }
            _ => return Err(std::io::Error::other(format!("a {} tap needs a socket of that transport", spec.transport.name()))),
        }
        Ok(Tap { spec, listen, faults, forget, tasks, relay })
    }

    /// Drop these UDP clients' upstream sockets before the next datagram. After a scenario,
    /// for its clients: a later client may get a port one of them had, and must not inherit
    /// its upstream socket, where a server may still retransmit the earlier scenario's
    /// requests. Only the scenario's own: others may be running beside it.
    pub fn forget_clients(&self, clients: &[SocketAddr]) {
        self.forget.lock().expect("forget lock").extend_from_slice(clients);
    }

    /// Stop relaying.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
        self.relay = None;
    }
}

async fn accept_loop(listener: TcpListener, spec: TapSpec, rec: Arc<Recorder>, faults: Faults) {
    let mut conns = JoinSet::new();
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    let mut reported: Option<std::time::Instant> = None;
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                conns.spawn(tcp_relay(client, peer, spec.clone(), rec.clone(), faults.clone()));
                // Finished relays are reaped, so their tasks do not pile up.
                while conns.try_join_next().is_some() {}
            }
            // Out of file descriptors, say: the tap must outlive it, not end for good.
            Err(e) => {
                // Said once, and again at most every 10 s while it lasts.
                if reported.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(10)) {
                    reported = Some(std::time::Instant::now());
                    let tap = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    tracing::warn!(server = %spec.server, %tap, "accept failed ({e}); retrying");
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
    /// A datagram held back for reordering, and until when at most.
    held: Option<(Vec<u8>, tokio::time::Instant)>,
    /// The loss watcher's list, which holds the upstream socket while it is open.
    watched: loss::WatchList,
}

impl Drop for UdpClient {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(port) = self.origin.upstream.map(|a| a.port()) {
            self.watched.lock().expect("watch list lock").retain(|w| w.dir != Direction::ToClient || w.port != port);
        }
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
    Origin { server: spec.server.as_str().into(), proto: spec.proto, transport: spec.transport, conn: rec.new_conn(), client, tap, upstream }
}

async fn tcp_relay(client: TcpStream, peer: SocketAddr, spec: TapSpec, rec: Arc<Recorder>, faults: Faults) {
    use std::os::fd::AsRawFd;
    let Ok(server) = TcpStream::connect(spec.upstream).await else {
        return; // dropping the client socket tells the actor the server is unreachable
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let Ok(listen) = client.local_addr() else { return };
    let origin = register_client(&spec, &rec, listen, peer, server.local_addr().ok());
    tracing::debug!(server = %spec.server, tap = %listen, client = %peer, upstream = ?origin.upstream, conn = origin.conn, "{}/{} connection", spec.proto.name(), spec.transport.name());
    let conn = fault::ConnFaults::new(faults, spec.proto, [client.as_raw_fd(), server.as_raw_fd()]);
    match (spec.transport, spec.proto, spec.tls.clone()) {
        (Transport::Tls, _, Some(pki)) => return tls::relay_secured(client, server, origin, rec, pki, conn).await,
        (Transport::Tls, _, None) => return, // no certificate to present: nothing can be relayed
        (_, Proto::Xmpp, Some(pki)) => return tls::relay_starttls(client, server, origin, rec, pki, conn).await,
        _ => {}
    }
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, origin.clone(), Direction::ToServer, rec.clone(), None, &conn);
    let down = pump(sr, cw, origin, Direction::ToClient, rec, None, &conn);
    tokio::join!(up, down);
}

/// A relay direction's first read buffer, and the size it grows to once a read fills it.
const PUMP_BUFFER_FIRST: usize = 2048;
const PUMP_BUFFER_MAX: usize = 16384;

/// How much a tap keeps recording from a side whose peer has gone (it can forward nothing more).
pub const MAX_AFTER_CLOSE: usize = 16 << 20;

/// Relay one direction until EOF, or until it forwarded a frame starting with `switch_at`;
/// then hand both ends back (the stream is about to change, e.g. into TLS). When the other
/// side can take no more, what this side still sends is recorded all the same (up to
/// [`MAX_AFTER_CLOSE`]); how this side ended is recorded as a `Closed` frame. Stream faults
/// (a stall, a reset) strike here, counted on the client's bytes.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    origin: Origin,
    dir: Direction,
    rec: Arc<Recorder>,
    switch_at: Option<&[u8]>,
    conn: &fault::ConnFaults,
) -> Option<(R, W)>
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut cutter = StreamCutter::new(origin.proto);
    // Small until a read fills it: thousands of idle connections must not cost 16 KiB each.
    let mut buf = vec![0u8; PUMP_BUFFER_FIRST];
    let mut peer_gone = false;
    let mut after_close = 0usize;
    let side = match dir {
        Direction::ToServer => "client",
        Direction::ToClient => "server",
    };
    let mut reset = conn.on_reset();
    let (mut frames, mut bytes_read) = (0usize, 0usize);
    let how = loop {
        let read = tokio::select! {
            r = from.read(&mut buf) => r,
            _ = reset.wait_for(|r| *r) => break "reset by the tap".to_string(),
        };
        let n = match read {
            Ok(0) => break format!("{side} closed"),
            Err(e) => break format!("{side} reset ({e})"),
            Ok(n) => n,
        };
        let grow = n == buf.len() && buf.len() < PUMP_BUFFER_MAX;
        // Record before forwarding so a frame is in the trace before anyone can react to it.
        let mut switch = false;
        bytes_read += n;
        for (kind, bytes) in cutter.push(&buf[..n]) {
            switch |= switch_at.is_some_and(|p| starts_element(&bytes, p));
            frames += 1;
            rec.record(&origin, dir, kind, bytes);
        }
        if dir == Direction::ToServer {
            conn.client_sent(n, &origin, &rec);
        }
        conn.stall().await;
        if *reset.borrow() {
            break "reset by the tap".to_string();
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
        if grow {
            buf.resize(PUMP_BUFFER_MAX, 0);
        }
    };
    if let Some((kind, bytes)) = cutter.finish() {
        rec.record(&origin, dir, kind, bytes);
    }
    tracing::debug!(server = %origin.server, conn = origin.conn, ?dir, frames, bytes = bytes_read, "{how}");
    rec.record(&origin, dir, FrameKind::Closed(how), Vec::new());
    let _ = to.shutdown().await;
    None
}

/// Whether a frame's first tag (after any whitespace) starts with `prefix`.
fn starts_element(frame: &[u8], prefix: &[u8]) -> bool {
    frame.iter().position(|b| !b.is_ascii_whitespace()).is_some_and(|p| frame[p..].starts_with(prefix))
}

async fn udp_relay(
    socket: Arc<UdpSocket>,
    spec: TapSpec,
    rec: Arc<Recorder>,
    faults: Faults,
    forget: Forget,
    watched: loss::WatchList,
) {
    let mut upstreams: HashMap<SocketAddr, UdpClient> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; crate::wire::MAX_DATAGRAM];
    let Ok(listen) = socket.local_addr() else { return };
    let started = std::time::Instant::now();
    let now_ms = move || started.elapsed().as_millis() as u64;
    let mut check = tokio::time::interval(HOUSEKEEPING);
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = check.tick() => {
                let idle = UDP_IDLE.as_millis() as u64;
                let now = now_ms();
                // A held datagram nothing overtook in time goes on alone.
                for c in upstreams.values_mut() {
                    if c.held.as_ref().is_some_and(|(_, until)| *until <= tokio::time::Instant::now()) {
                        if let Some((bytes, _)) = c.held.take() {
                            let _ = c.up.send(&bytes).await;
                        }
                    }
                }
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
        let datagram = &buf[..n];
        for gone in std::mem::take(&mut *forget.lock().expect("forget lock")) {
            // Dropping the client aborts the task relaying its answers.
            upstreams.remove(&gone);
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
                Ok(up) => {
                    // The server's answers wait here while the tap records: a burst of them
                    // overflowed the default buffer under SIPp (each loss a retransmission).
                    loss::set_receive_buffer(&up, UDP_UPSTREAM_RECEIVE_BUFFER);
                    up.connect(spec.upstream).await.map(|()| up)
                }
                Err(e) => Err(e),
            };
            let up = match connected {
                Ok(up) => Arc::new(up),
                Err(_) => {
                    // Recorded all the same, and marked: the tap could not forward it.
                    let origin = register_client(&spec, &rec, listen, peer, None);
                    rec.record_datagram(&origin, Direction::ToServer, datagram.to_vec(), Some(crate::trace::frame::Fault::NoUpstream));
                    continue;
                }
            };
            let origin = register_client(&spec, &rec, listen, peer, up.local_addr().ok());
            tracing::debug!(server = %spec.server, tap = %listen, client = %peer, upstream = ?origin.upstream, conn = origin.conn, clients = upstreams.len() + 1, "new SIP/UDP client");
            let last = Arc::new(std::sync::atomic::AtomicU64::new(now_ms()));
            let task = tasks.spawn(udp_return(up.clone(), socket.clone(), peer, origin.clone(), rec.clone(), last.clone(), started));
            if let Some(port) = origin.upstream.map(|a| a.port()) {
                // A new socket: its drop count starts at 0.
                watched.lock().expect("watch list lock").push(loss::Watched { port, origin: origin.clone(), dir: Direction::ToClient, seen: 0 });
            }
            upstreams.insert(peer, UdpClient { up, origin, task, last, held: None, watched: watched.clone() });
        }
        let Some(client) = upstreams.get_mut(&peer) else { continue };
        client.last.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        // Recorded either way (the client did send it), and marked with what the tap did.
        let struck = fault::for_datagram(&faults, datagram);
        if let Some(f) = struck {
            tracing::info!(server = %spec.server, conn = client.origin.conn, "fault: {} a datagram from {peer}", f.mark().name());
        }
        // Recorded before it is forwarded, so that the server's answer cannot be recorded
        // first; the recorder takes the one copy, and what is sent comes from the buffer.
        rec.record_datagram(&client.origin, Direction::ToServer, datagram.to_vec(), struck.map(|f| f.mark()));
        match struck {
            None => {
                let _ = client.up.send(datagram).await;
                if let Some((held, _)) = client.held.take() {
                    let _ = client.up.send(&held).await;
                }
            }
            Some(DatagramFault::Drop) => {}
            Some(DatagramFault::Duplicate) => {
                let _ = client.up.send(datagram).await;
                let _ = client.up.send(datagram).await;
            }
            Some(DatagramFault::Delay(by)) => {
                let up = client.up.clone();
                let bytes = datagram.to_vec();
                tasks.spawn(async move {
                    tokio::time::sleep(by).await;
                    let _ = up.send(&bytes).await;
                });
            }
            Some(DatagramFault::Reorder) => {
                if let Some((earlier, _)) = client.held.replace((datagram.to_vec(), tokio::time::Instant::now() + fault::REORDER_HOLD)) {
                    let _ = client.up.send(&earlier).await;
                }
            }
        }
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
    loop {
        if up.readable().await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        // Received, recorded and (nearly always) sent with the buffer borrowed and no await
        // in between; a send the socket cannot take at once waits below with its own copy.
        let unsent = crate::wire::with_datagram_buffer(|buf| match up.try_recv(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Ok(n) => {
                last.store(started.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
                let datagram = &buf[..n];
                rec.record_datagram(&origin, Direction::ToClient, datagram.to_vec(), None);
                match tap.try_send_to(datagram, client) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Some(datagram.to_vec())),
                    _ => Ok(None),
                }
            }
            Err(e) => Err(e),
        });
        match unsent {
            Ok(None) => {}
            Ok(Some(bytes)) => drop(tap.send_to(&bytes, client).await),
            // ICMP unreachable from a not-yet-listening server: keep the relay alive.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::frame::Fault;

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
    fn a_datagram_rule_strikes_only_its_first_copies() {
        use fault::{for_datagram, DatagramFault};
        let rule = FaultRule::Datagram { prefix: "MESSAGE ".into(), skip: 1, copies: 2, action: DatagramFault::Drop };
        let f: Faults = Arc::new(std::sync::Mutex::new(vec![rule]));
        assert_eq!(for_datagram(&f, b"REGISTER sip:x SIP/2.0"), None);
        assert_eq!(for_datagram(&f, b"MESSAGE sip:x SIP/2.0"), None, "skipped");
        assert_eq!(for_datagram(&f, b"MESSAGE sip:x SIP/2.0"), Some(DatagramFault::Drop));
        assert_eq!(for_datagram(&f, b"MESSAGE sip:x SIP/2.0"), Some(DatagramFault::Drop));
        assert_eq!(for_datagram(&f, b"MESSAGE sip:x SIP/2.0"), None);
    }

    /// A UDP tap in front of a plain socket, with `rules` set, and a client socket.
    async fn udp_tap_with(rules: Vec<FaultRule>) -> (Tap, Arc<Recorder>, UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rec = Arc::new(Recorder::new());
        let spec = TapSpec { server: "s".into(), proto: Proto::Sip, transport: Transport::Udp, upstream: server.local_addr().unwrap(), tls: None };
        let tap = Tap::start(spec, rec.clone()).await.unwrap();
        *tap.faults.lock().unwrap() = rules;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        (tap, rec, server, client)
    }

    /// The next datagram the server gets, as text, within a second.
    async fn next_at(server: &UdpSocket) -> Option<String> {
        let mut buf = [0u8; 2048];
        let n = tokio::time::timeout(std::time::Duration::from_secs(1), server.recv(&mut buf)).await.ok()?.ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[tokio::test]
    async fn datagram_faults_delay_duplicate_and_reorder_what_the_server_gets_and_are_marked() {
        use fault::DatagramFault::*;
        let rule = |prefix: &str, action| FaultRule::Datagram { prefix: prefix.into(), skip: 0, copies: 1, action };
        let rules = vec![rule("A ", Delay(std::time::Duration::from_millis(300))), rule("B ", Duplicate), rule("C ", Reorder)];
        let (tap, rec, server, client) = udp_tap_with(rules).await;
        let msg = |m: &str| format!("{m} sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n");
        let started = std::time::Instant::now();
        client.send_to(msg("A").as_bytes(), tap.listen).await.unwrap();
        assert!(next_at(&server).await.unwrap().starts_with("A "));
        assert!(started.elapsed() >= std::time::Duration::from_millis(300), "delayed by 300 ms");
        client.send_to(msg("B").as_bytes(), tap.listen).await.unwrap();
        assert!(next_at(&server).await.unwrap().starts_with("B "));
        assert!(next_at(&server).await.unwrap().starts_with("B "), "a second copy");
        client.send_to(msg("C").as_bytes(), tap.listen).await.unwrap();
        client.send_to(msg("D").as_bytes(), tap.listen).await.unwrap();
        assert!(next_at(&server).await.unwrap().starts_with("D "), "D overtakes the held C");
        assert!(next_at(&server).await.unwrap().starts_with("C "));
        let marks: Vec<String> = rec.frames_for_all().iter().filter_map(|f| f.fault).map(|f| f.name()).collect();
        assert_eq!(marks, ["delayed-300ms", "duplicated", "reordered"]);
    }

    #[tokio::test]
    async fn a_reordered_datagram_nothing_overtakes_goes_on_after_the_hold() {
        let (tap, _rec, server, client) = udp_tap_with(vec![FaultRule::Datagram { prefix: "C ".into(), skip: 0, copies: 1, action: fault::DatagramFault::Reorder }]).await;
        client.send_to(b"C sip:x SIP/2.0\r\n\r\n", tap.listen).await.unwrap();
        assert_eq!(next_at(&server).await, None, "held");
        let got = tokio::time::timeout(fault::REORDER_HOLD * 2, async { loop { if let Some(m) = next_at(&server).await { return m } } }).await;
        assert!(got.is_ok_and(|m| m.starts_with("C ")), "released after the hold");
    }

    /// A TCP tap in front of a server that echoes, with `rules` set; a connected client.
    async fn echo_tap_with(rules: Vec<FaultRule>) -> (Tap, Arc<Recorder>, TcpStream) {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = server.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = server.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let rec = Arc::new(Recorder::new());
        let spec = TapSpec { server: "s".into(), proto: Proto::Xmpp, transport: Transport::Tcp, upstream, tls: None };
        let tap = Tap::start(spec, rec.clone()).await.unwrap();
        *tap.faults.lock().unwrap() = rules;
        let client = TcpStream::connect(tap.listen).await.unwrap();
        (tap, rec, client)
    }

    #[tokio::test]
    async fn a_reset_rule_resets_the_connection_once_the_client_sent_enough() {
        let rule = FaultRule::Stream { proto: Proto::Xmpp, after: 20, copies: 1, action: fault::StreamFault::Reset };
        let (_tap, rec, mut client) = echo_tap_with(vec![rule]).await;
        let mut buf = [0u8; 64];
        client.write_all(b"<a/>").await.unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"<a/>", "below the threshold all is relayed");
        client.write_all(b"<bbbbbbbbbbbbbbbbbbbbbbb/>").await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), client.read(&mut buf)).await.expect("not left hanging");
        assert_eq!(got.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset), "a TCP reset, not a close");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(rec.frames_for_all().iter().any(|f| f.fault == Some(Fault::Reset) && matches!(f.kind, FrameKind::Fault(_))));
    }

    #[tokio::test]
    async fn a_stall_rule_holds_both_directions_then_relays_everything() {
        let stall = std::time::Duration::from_millis(400);
        let rule = FaultRule::Stream { proto: Proto::Xmpp, after: 4, copies: 1, action: fault::StreamFault::Stall(stall) };
        let (_tap, rec, mut client) = echo_tap_with(vec![rule]).await;
        let started = std::time::Instant::now();
        client.write_all(b"<a/>").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 4 {
            let n = client.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"<a/>");
        assert!(started.elapsed() >= stall, "answered after the stall, not before");
        assert!(rec.frames_for_all().iter().any(|f| f.fault == Some(Fault::Stalled(stall))));
    }
}
