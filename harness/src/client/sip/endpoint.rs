//! Tokio shell around [`SipUa`]: one UDP socket, one task, commands in, events out.

use super::ua::{SipConfig, SipEvent, SipUa, TxId, UaError};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

enum Command {
    Register { expires: u32, reply: oneshot::Sender<TxId> },
    Send { bytes: Vec<u8>, reply: oneshot::Sender<Result<Option<TxId>, UaError>> },
}

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

    /// Start a REGISTER transaction.
    pub async fn register(&self, expires: u32) -> Option<TxId> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Register { expires, reply }).await.ok()?;
        rx.await.ok()
    }

    /// Send message bytes; requests other than ACK become client transactions.
    pub async fn send(&self, bytes: Vec<u8>) -> Result<Option<TxId>, UaError> {
        let (reply, rx) = oneshot::channel();
        let gone = || UaError::Untrackable;
        self.commands.send(Command::Send { bytes, reply }).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
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
                Some(Command::Register { expires, reply }) => {
                    let _ = reply.send(ua.register(Instant::now(), expires));
                }
                Some(Command::Send { bytes, reply }) => {
                    let _ = reply.send(ua.send(Instant::now(), &bytes));
                }
            },
        }
    }
}
