//! Protocol-level readiness probes: a server is ready when it answers its protocol.

use super::Account;
use crate::client::xmpp::connection::XmppConnection;
use crate::client::xmpp::session::{stream_header, XmppConfig, XmppEvent};
use crate::xml::{self, Element};
use crate::xmpp::{XmppFrameKind, XmppFramer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A raw client stream, read element by element with the project's framer: for the probes
/// that must not log in.
struct RawStream {
    socket: TcpStream,
    framer: XmppFramer,
    buf: Vec<u8>,
}

impl RawStream {
    /// Connect and send the stream header.
    async fn open(addr: SocketAddr, domain: &str) -> Result<RawStream, String> {
        let mut socket = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        socket.write_all(&stream_header(domain)).await.map_err(|e| e.to_string())?;
        Ok(RawStream { socket, framer: XmppFramer::new(), buf: vec![0u8; 4096] })
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.socket.write_all(bytes).await.map_err(|e| e.to_string())
    }

    /// The next top-level element after the stream header.
    async fn next_element(&mut self) -> Result<Element, String> {
        loop {
            while let Some(frame) = self.framer.next_frame() {
                match frame.kind {
                    XmppFrameKind::Element => {
                        return xml::parse(&frame.bytes, &xml::client_stream_scope(), false).map_err(|e| e.to_string())
                    }
                    XmppFrameKind::StreamClose => return Err("the server closed the stream".into()),
                    _ => {}
                }
            }
            let n = self.socket.read(&mut self.buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the connection closed".into());
            }
            self.framer.push(&self.buf[..n]);
        }
    }

    /// Close our side of the stream.
    async fn close(mut self) {
        let _ = self.socket.write_all(b"</stream:stream>").await;
    }
}

/// One XMPP probe: open a stream and wait for `<stream:features>`.
pub async fn xmpp_answers(addr: SocketAddr, domain: &str, wait: Duration) -> bool {
    let attempt = async {
        let mut s = RawStream::open(addr, domain).await?;
        while s.next_element().await?.local_name() != "features" {}
        s.close().await;
        Ok::<(), String>(())
    };
    matches!(tokio::time::timeout(wait, attempt).await, Ok(Ok(())))
}

/// One SIP probe: OPTIONS over UDP. Any response counts; it gives the `Server:` header's
/// value (empty when there is none).
pub async fn sip_answers(addr: SocketAddr, wait: Duration) -> Option<String> {
    let attempt = async {
        let s = UdpSocket::bind("127.0.0.1:0").await.ok()?;
        let local = s.local_addr().ok()?;
        let branch = crate::ids::new_branch();
        let msg = format!(
            "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};rport;branch={branch}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=p\r\nTo: <sip:{addr}>\r\n\
             Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        s.send_to(msg.as_bytes(), addr).await.ok()?;
        let mut buf = [0u8; 4096];
        let (n, _) = s.recv_from(&mut buf).await.ok()?;
        let msg = crate::sip::message::SipMessage::parse(&buf[..n]).ok()?;
        msg.status()?;
        Some(msg.header("Server").unwrap_or_default().trim().to_string())
    };
    tokio::time::timeout(wait, attempt).await.ok().flatten()
}

/// The server's name and version as it answers jabber:iq:version (XEP-0092), logged in as
/// `account`; None when it does not say before `deadline`.
pub async fn xmpp_version(addr: SocketAddr, account: &Account, deadline: tokio::time::Instant) -> Option<String> {
    let cfg = XmppConfig::for_account(account, "version-probe");
    let ask = async {
        let mut conn = XmppConnection::start(addr, cfg, None).await.ok()?;
        let mut answer = None;
        while let Some(ev) = conn.events.recv().await {
            match ev {
                XmppEvent::Online { .. } => {
                    let iq = format!("<iq type='get' id='sixpac-version' to='{}'><query xmlns='jabber:iq:version'/></iq>", account.domain);
                    conn.send_raw(iq.into_bytes());
                }
                XmppEvent::Stanza(el) if el.attr("id") == Some("sixpac-version") => {
                    let q = el.child("query");
                    let text = |n: &str| q.and_then(|q| q.child(n)).map(|c| c.text()).unwrap_or_default();
                    let v = format!("{} {}", text("name"), text("version")).trim().to_string();
                    answer = Some(v).filter(|v| !v.is_empty());
                    conn.close();
                }
                XmppEvent::Failed(_) | XmppEvent::Closed => break,
                _ => {}
            }
        }
        answer
    };
    tokio::time::timeout_at(deadline, ask).await.ok().flatten()
}

/// Create an account by in-band registration (XEP-0077): a stream, then the register iq
/// before any authentication. Used where accounts can only be made on a running server.
pub async fn register_in_band(addr: SocketAddr, account: &Account, wait: Duration) -> Result<(), String> {
    let attempt = async {
        let mut s = RawStream::open(addr, &account.domain).await?;
        loop {
            let el = s.next_element().await?;
            match el.local_name() {
                "features" => {
                    let iq = format!(
                        "<iq type='set' id='sixpac-reg'><query xmlns='jabber:iq:register'><username>{}</username><password>{}</password></query></iq>",
                        xml::escape(&account.user, false),
                        xml::escape(&account.password, false)
                    );
                    s.send(iq.as_bytes()).await?;
                }
                "iq" if el.attr("id") == Some("sixpac-reg") => {
                    s.close().await;
                    return match el.attr("type") {
                        Some("result") => Ok(()),
                        _ => Err(format!("registration refused: {}", el.to_xml())),
                    };
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(wait, attempt).await.unwrap_or_else(|_| Err(format!("no answer within {} s", wait.as_secs())))
}

/// Empty an existing account's roster, refuse subscription requests still waiting for it, and
/// delete its "on the phone" PEP node, logged in
/// directly (not through a tap, so nothing of it is in any trace). The external backend does
/// this before each scenario: its accounts are reused, and contacts or a last published
/// activity left by an earlier scenario would change what the next one sees.
pub async fn reset_roster(addr: SocketAddr, account: &Account, deadline: tokio::time::Instant) -> Result<(), String> {
    let cfg = XmppConfig::for_account(account, "sixpac-reset");
    let work = async {
        let mut conn = XmppConnection::start(addr, cfg, None).await.map_err(|e| e.to_string())?;
        let mut pending: Option<usize> = None;
        while let Some(ev) = conn.events.recv().await {
            match ev {
                XmppEvent::Online { .. } => {
                    // The node may not exist: any answer will do.
                    conn.send_raw(
                        b"<iq type='set' id='reset-pep'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='http://jabber.org/protocol/activity'/></pubsub></iq>"
                            .to_vec(),
                    );
                    conn.send_raw(b"<iq type='get' id='reset-roster'><query xmlns='jabber:iq:roster'/></iq>".to_vec());
                }
                XmppEvent::Stanza(el) if el.attr("id") == Some("reset-pep") => {}
                XmppEvent::Stanza(el) if el.attr("id") == Some("reset-roster") => {
                    let items: Vec<String> = el
                        .child("query")
                        .map(|q| q.elements().filter_map(|i| i.attr("jid").map(str::to_string)).collect())
                        .unwrap_or_default();
                    pending = Some(items.len());
                    for (n, jid) in items.iter().enumerate() {
                        let iq = format!(
                            "<iq type='set' id='reset-{n}'><query xmlns='jabber:iq:roster'><item jid='{}' subscription='remove'/></query></iq>",
                            xml::escape(jid, true)
                        );
                        conn.send_raw(iq.into_bytes());
                    }
                }
                XmppEvent::Stanza(el) if el.attr("id").is_some_and(|i| i.starts_with("reset-")) => {
                    pending = pending.map(|p| p.saturating_sub(1));
                }
                XmppEvent::Failed(why) => return Err(why),
                XmppEvent::Closed => break,
                _ => {}
            }
            if pending == Some(0) {
                pending = None;
                // Requests still waiting from earlier scenarios come after initial presence
                // (with no contacts left, that presence goes nowhere): refuse each of them.
                conn.send_raw(b"<presence/>".to_vec());
                let quiet = tokio::time::Instant::now() + std::time::Duration::from_millis(300);
                while let Ok(Some(ev)) = tokio::time::timeout_at(quiet, conn.events.recv()).await {
                    if let XmppEvent::Stanza(el) = ev {
                        if el.local_name() == "presence" && el.attr("type") == Some("subscribe") {
                            let from = xml::escape(el.attr("from").unwrap_or(""), true);
                            conn.send_raw(format!("<presence to='{from}' type='unsubscribed'/>").into_bytes());
                        }
                    }
                }
                conn.close();
            }
        }
        Ok(())
    };
    tokio::time::timeout_at(deadline, work).await.unwrap_or_else(|_| Err("roster reset did not finish in time".into()))
}
