//! Tokio shell around [`SipUa`]: one UDP socket, one task, commands in, events out.

use super::ua::{SipConfig, SipEvent, SipUa, TxId, UaError};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
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
    /// Bind a loopback socket and start the UA task.
    pub async fn start(
        user: &str,
        password: &str,
        domain: &str,
        proxy: SocketAddr,
    ) -> std::io::Result<SipEndpoint> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let local = socket.local_addr()?;
        let ua = SipUa::new(SipConfig {
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            local,
            proxy,
        });
        let (aor, contact) = (ua.aor(), ua.contact());
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(ua, socket, cmd_rx, ev_tx));
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

    /// Start a REGISTER transaction.
    pub async fn register(&self, expires: u32) -> Option<TxId> {
        self.with(move |ua, now| ua.register(now, expires)).await
    }

    /// Send message bytes; requests other than ACK become client transactions.
    pub async fn send(&self, bytes: Vec<u8>) -> Result<Option<TxId>, UaError> {
        self.with(move |ua, now| ua.send(now, &bytes)).await.unwrap_or(Err(UaError::Untrackable))
    }
}

async fn drive(
    mut ua: SipUa,
    socket: UdpSocket,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::UnboundedSender<SipEvent>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(t) = ua.poll_transmit() {
            // A send error on loopback UDP means the peer port is gone; the transaction's
            // timers report the consequence, so the error itself carries nothing more.
            let _ = socket.send_to(&t.bytes, t.to).await;
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
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => ua.handle_input(Instant::now(), from, &buf[..n]),
                // ICMP port-unreachable surfaces here on Linux; keep serving.
                Err(_) => continue,
            },
            _ = tokio::time::sleep_until(wake) => ua.handle_timeout(Instant::now()),
            c = commands.recv() => match c {
                None => return,
                Some(job) => job(&mut ua, Instant::now()),
            },
        }
    }
}
