//! Tokio shell around [`SipUa`]: one UDP socket or one TCP or TLS connection, one task,
//! commands in, events out.

use super::ua::{SipConfig, SipEvent, SipUa, TxId, UaError};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use crate::sip::message::{keepalive_prefix_len, stream_frame_len};
use crate::wire::Transport;
use std::sync::Arc;
use crate::tls::ByteStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Work for the UA, run inside its task with the current time.
type Command = Box<dyn FnOnce(&mut SipUa, Instant) + Send>;

/// A running SIP leg: socket task plus channels.
pub struct SipEndpoint {
    commands: mpsc::Sender<Command>,
    /// Events from the UA, in order.
    pub events: mpsc::UnboundedReceiver<SipEvent>,
    local: SocketAddr,
    aor: String,
    contact: String,
    task: JoinHandle<()>,
}

impl Drop for SipEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SipEndpoint {
    /// Bind a loopback UDP socket, or connect over TCP or TLS to `proxy` (TLS trusting `tls`,
    /// for a certificate naming `domain`), and start the UA task.
    pub async fn start(
        user: &str,
        password: &str,
        domain: &str,
        proxy: SocketAddr,
        transport: Transport,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<SipEndpoint> {
        let (link, local) = match transport {
            Transport::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").await?;
                let local = s.local_addr()?;
                (Link::Udp(s), local)
            }
            Transport::Tcp | Transport::Tls => {
                let s = TcpStream::connect(proxy).await?;
                s.set_nodelay(true)?;
                let local = s.local_addr()?;
                let stream: Box<dyn ByteStream> = match (transport, tls) {
                    (Transport::Tls, Some(cfg)) => crate::tls::connect(cfg, domain, s).await?.0,
                    (Transport::Tls, None) => return Err(std::io::Error::other("SIP over TLS needs a CA to trust")),
                    _ => Box::new(s),
                };
                (Link::Stream(stream, Vec::new()), local)
            }
        };
        let ua = SipUa::new(SipConfig {
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            local,
            proxy,
            transport,
        });
        let (aor, contact) = (ua.aor(), ua.contact());
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(ua, link, proxy, cmd_rx, ev_tx));
        Ok(SipEndpoint { commands: cmd_tx, events: ev_rx, local, aor, contact, task })
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The address-of-record.
    pub fn aor(&self) -> &str {
        &self.aor
    }

    /// The registered Contact URI.
    pub fn contact(&self) -> &str {
        &self.contact
    }

    /// Run `f` on the UA inside its task and return its result; None when the task is gone.
    pub async fn with<R: Send + 'static>(&self, f: impl FnOnce(&mut SipUa, Instant) -> R + Send + 'static) -> Option<R> {
        let (reply, rx) = oneshot::channel();
        let job: Command = Box::new(move |ua, now| {
            let _ = reply.send(f(ua, now));
        });
        self.commands.send(job).await.ok()?;
        rx.await.ok()
    }

    /// Send message bytes; requests other than ACK become client transactions.
    pub async fn send(&self, bytes: Vec<u8>) -> Result<Option<TxId>, UaError> {
        self.with(move |ua, now| ua.send(now, &bytes)).await.unwrap_or(Err(UaError::Untrackable))
    }
}

/// The leg's transport: a datagram socket, or a stream with the bytes not yet cut into messages.
enum Link {
    Udp(UdpSocket),
    Stream(Box<dyn ByteStream>, Vec<u8>),
}

impl Link {
    async fn send(&mut self, t: &super::ua::Transmit) {
        // A send error on loopback UDP means the peer port is gone; the transaction's timers
        // report the consequence, so the error itself carries nothing more. On TCP a broken
        // connection shows as end of stream on the next read.
        match self {
            Link::Udp(s) => drop(s.send_to(&t.bytes, t.to).await),
            Link::Stream(s, _) => drop(s.write_all(&t.bytes).await),
        }
    }

    /// Wait for input: whole messages with their source, or None when the link is closed.
    async fn recv(&mut self, buf: &mut [u8], peer: SocketAddr) -> Option<Vec<(SocketAddr, Vec<u8>)>> {
        match self {
            Link::Udp(s) => {
                if s.readable().await.is_err() {
                    return Some(vec![]);
                }
                // No await while the buffer is borrowed. A readiness that was spurious
                // (WouldBlock), or ICMP port-unreachable (which Linux reports here), hands over
                // nothing and the leg keeps serving.
                crate::wire::with_datagram_buffer(|d| match s.try_recv_from(d) {
                    Ok((n, from)) => Some(vec![(from, d[..n].to_vec())]),
                    Err(_) => Some(vec![]),
                })
            }
            Link::Stream(s, pending) => {
                let n = s.read(buf).await.ok().filter(|n| *n > 0)?;
                pending.extend_from_slice(&buf[..n]);
                let mut out = Vec::new();
                loop {
                    let keep = keepalive_prefix_len(pending);
                    pending.drain(..keep);
                    match stream_frame_len(pending) {
                        Ok(Some(len)) => out.push((peer, pending.drain(..len).collect())),
                        Ok(None) => break,
                        // Unframeable bytes: hand them over as they are; the UA reports them.
                        Err(_) => {
                            out.push((peer, std::mem::take(pending)));
                            break;
                        }
                    }
                }
                Some(out)
            }
        }
    }
}

async fn drive(
    mut ua: SipUa,
    mut link: Link,
    proxy: SocketAddr,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<SipEvent>,
) {
    // Stream reads only (datagrams go into `wire::with_datagram_buffer`).
    let mut buf = vec![0u8; 16384];
    let mut open = true;
    loop {
        while let Some(t) = ua.poll_transmit() {
            link.send(&t).await;
        }
        while let Some(e) = ua.poll_event() {
            if events.send(e).is_err() {
                return;
            }
        }
        let wake = ua
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = link.recv(&mut buf, proxy), if open => match r {
                Some(msgs) => {
                    for (from, bytes) in msgs {
                        ua.handle_input(Instant::now(), from, &bytes);
                    }
                }
                // The server closed the connection: keep the task for its timers and commands.
                None => open = false,
            },
            _ = tokio::time::sleep_until(wake) => ua.handle_timeout(Instant::now()),
            c = commands.recv() => match c {
                None => return,
                Some(job) => job(&mut ua, Instant::now()),
            },
        }
    }
}
