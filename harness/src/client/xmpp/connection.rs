//! Tokio shell around [`XmppSession`]: one TCP stream (under TLS after STARTTLS), one task,
//! commands in, events out.

use super::session::{XmppConfig, XmppEvent, XmppSession};
use std::net::SocketAddr;
use std::sync::Arc;
use crate::tls::ByteStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

enum Command {
    Raw(Vec<u8>),
    Close,
}

/// A running XMPP leg.
pub struct XmppConnection {
    commands: mpsc::UnboundedSender<Command>,
    /// Events from the session, in order.
    pub events: mpsc::UnboundedReceiver<XmppEvent>,
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for XmppConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl XmppConnection {
    /// Connect and start negotiating; `tls` is whom the leg trusts after STARTTLS.
    pub async fn start(
        server: SocketAddr,
        cfg: XmppConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<XmppConnection> {
        if cfg.starttls && tls.is_none() {
            return Err(std::io::Error::other("STARTTLS asked for, but no CA to trust was given"));
        }
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        let domain = cfg.domain.clone();
        let session = XmppSession::new(cfg, &crate::ids::token(24));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let upgrade = tls.map(|c| (c, domain));
        let task = tokio::spawn(drive(session, Box::new(stream), upgrade, cmd_rx, ev_tx));
        Ok(XmppConnection { commands: cmd_tx, events: ev_rx, local, task })
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Write bytes as they are.
    pub fn send_raw(&self, bytes: Vec<u8>) -> bool {
        self.commands.send(Command::Raw(bytes)).is_ok()
    }

    /// Send the closing tag; the task ends when the server closes too.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}

async fn drive(
    mut session: XmppSession,
    mut stream: Box<dyn ByteStream>,
    upgrade: Option<(Arc<rustls::ClientConfig>, String)>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<XmppEvent>,
) {
    let mut buf = vec![0u8; 16384];
    let mut commands_open = true;
    loop {
        while let Some(bytes) = session.poll_transmit() {
            if stream.write_all(&bytes).await.is_err() {
                session.handle_eof();
            }
        }
        while let Some(e) = session.poll_event() {
            let _ = events.send(e);
        }
        if session.is_closed() {
            let _ = stream.shutdown().await;
            return;
        }
        if session.wants_tls() {
            let Some((config, domain)) = &upgrade else {
                session.tls_failed("no CA to trust".into());
                continue;
            };
            match crate::tls::connect(config.clone(), domain, stream).await {
                Ok((tls, facts)) => {
                    session.tls_established(facts);
                    stream = tls;
                }
                Err(e) => {
                    // The socket went into the failed handshake; nothing is left to close.
                    session.tls_failed(e.to_string());
                    while let Some(e) = session.poll_event() {
                        let _ = events.send(e);
                    }
                    return;
                }
            }
            continue;
        }
        tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => session.handle_eof(),
                Ok(n) => session.handle_input(&buf[..n]),
            },
            c = commands.recv(), if commands_open => match c {
                None => commands_open = false,
                Some(Command::Raw(b)) => session.send_raw(&b),
                Some(Command::Close) => session.close(),
            },
        }
    }
}
