//! TLS behind a tap. The tap runs TLS on both sides, as server towards the client (the run's
//! domain certificate) and as client towards the server (trusting only the run's CA), and
//! records the plaintext it relays. For XMPP (RFC 6120 §5) it relays the plain stream until
//! the client's `<starttls/>` and the server's `<proceed/>` first; SIP over TLS (RFC 3261
//! §26.2) is TLS from the first byte.
//!
//! What each handshake settled goes into the trace as a frame of kind `TlsHandshake`: the
//! tap's own account, not received bytes. The ciphertext is not recorded; without the
//! session keys it says nothing a diff could use.

use super::fault::ConnFaults;
use super::pump;
use crate::tls::{describe, Pki, HANDSHAKE_DEADLINE};
use crate::trace::frame::{Direction, FrameKind, Origin, Recorder};
use std::sync::Arc;
use tokio::net::TcpStream;


/// Relay one XMPP connection, terminating STARTTLS if the two ends negotiate it.
pub(super) async fn relay_starttls(client: TcpStream, server: TcpStream, origin: Origin, rec: Arc<Recorder>, pki: Arc<Pki>, conn: Arc<ConnFaults>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, origin.clone(), Direction::ToServer, rec.clone(), Some(b"<starttls"), &conn);
    let down = pump(sr, cw, origin.clone(), Direction::ToClient, rec.clone(), Some(b"<proceed"), &conn);
    let (up, down) = tokio::join!(up, down);
    let ((cr, sw), (sr, cw)) = match (up, down) {
        (Some(u), Some(d)) => (u, d),
        // The server refused or closed: the client side still gets relayed to the end.
        (Some((cr, sw)), None) => {
            pump(cr, sw, origin, Direction::ToServer, rec, None, &conn).await;
            return;
        }
        (None, Some((sr, cw))) => {
            pump(sr, cw, origin, Direction::ToClient, rec, None, &conn).await;
            return;
        }
        (None, None) => return,
    };
    let (Ok(client), Ok(server)) = (cr.reunite(cw), sr.reunite(sw)) else { return };
    relay_secured(client, server, origin, rec, pki, conn).await
}

/// Handshake on both sides, record what each settled, then relay the plaintext.
pub(super) async fn relay_secured(client: TcpStream, server: TcpStream, origin: Origin, rec: Arc<Recorder>, pki: Arc<Pki>, conn: Arc<ConnFaults>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let (inner, outer) = tokio::join!(
        tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(client)),
        crate::tls::connect(pki.upstream.clone(), &pki.domain, server),
    );
    let inner = match inner {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no TLS handshake within {} s", HANDSHAKE_DEADLINE.as_secs())),
    };
    match (inner, outer) {
        (Ok(c), Ok((s, server_facts))) => {
            let sni = c.get_ref().1.server_name().map(|n| format!(" sni={n}")).unwrap_or_default();
            note(&rec, &origin, Direction::ToServer, format!("client-tap {}{sni}", describe(c.get_ref().1)));
            note(&rec, &origin, Direction::ToClient, format!("tap-server {server_facts}"));
            let (cr, cw) = tokio::io::split(c);
            let (sr, sw) = tokio::io::split(s);
            let up = pump(cr, sw, origin.clone(), Direction::ToServer, rec.clone(), None, &conn);
            let down = pump(sr, cw, origin, Direction::ToClient, rec, None, &conn);
            tokio::join!(up, down);
        }
        (inner, outer) => {
            if let Err(e) = inner {
                note(&rec, &origin, Direction::ToServer, format!("!! client-tap handshake failed: {e}"));
            }
            if let Err(e) = outer {
                note(&rec, &origin, Direction::ToClient, format!("!! tap-server handshake failed: {e}"));
            }
        }
    }
}

fn note(rec: &Recorder, origin: &Origin, dir: Direction, text: String) {
    rec.record(origin, dir, FrameKind::TlsHandshake, text.into_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tap::{Tap, TapSpec};
    use crate::trace::frame::{Proto, Transport};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const FEATURES: &[u8] = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s' version='1.0'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>";

    async fn read_until(s: &mut (impl AsyncReadExt + Unpin), needle: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(needle.len()).any(|w| w == needle) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before {:?}", String::from_utf8_lossy(needle));
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// A unit-test double of an XMPP server: offers STARTTLS, proceeds, then echoes one line
    /// under TLS. Real servers are exercised by the scenarios.
    async fn fake_server(listener: tokio::net::TcpListener, pki: Arc<Pki>) {
        let (mut s, _) = listener.accept().await.unwrap();
        read_until(&mut s, b"version='1.0'>").await;
        s.write_all(FEATURES).await.unwrap();
        read_until(&mut s, b"<starttls").await;
        s.write_all(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await.unwrap();
        let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(pki.server.clone()).accept(s).await else { return };
        read_until(&mut tls, b"<secret/>").await;
        tls.write_all(b"<answer/>").await.unwrap();
        tls.shutdown().await.unwrap();
    }

    /// Frames a tap holding `pki` records for one client that trusts `client_trusts`.
    async fn run(pki: Arc<Pki>, client_trusts: Arc<rustls::ClientConfig>) -> Vec<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let server = tokio::spawn(fake_server(listener, pki.clone()));
        let rec = Arc::new(Recorder::new());
        let spec = TapSpec { server: "x".into(), proto: Proto::Xmpp, transport: Transport::Tcp, upstream, tls: Some(pki) };
        let tap = Tap::start(spec, rec.clone()).await.unwrap();
        let mut c = tokio::net::TcpStream::connect(tap.listen).await.unwrap();
        c.write_all(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='t.test' version='1.0'>").await.unwrap();
        read_until(&mut c, b"</stream:features>").await;
        c.write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").await.unwrap();
        read_until(&mut c, b"<proceed").await;
        let name = rustls::pki_types::ServerName::try_from("t.test").unwrap();
        if let Ok(mut tls) = tokio_rustls::TlsConnector::from(client_trusts).connect(name, c).await {
            tls.write_all(b"<secret/>").await.unwrap();
            read_until(&mut tls, b"<answer/>").await;
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        rec.frames_for_all().iter().map(|f| format!("{:?} {}", f.kind, String::from_utf8_lossy(&f.bytes))).collect()
    }

    #[tokio::test]
    async fn plaintext_after_starttls_is_recorded_with_the_handshake_facts() {
        let pki = Arc::new(Pki::new("t.test").unwrap());
        let frames = run(pki.clone(), pki.client.clone()).await;
        assert!(frames.iter().any(|f| f.starts_with("TlsHandshake client-tap TLSv1_3") && f.ends_with("sni=t.test")), "{frames:#?}");
        assert!(frames.iter().any(|f| f.starts_with("TlsHandshake tap-server TLSv1_3")), "{frames:#?}");
        assert!(frames.iter().any(|f| f.contains("<secret/>")) && frames.iter().any(|f| f.contains("<answer/>")), "{frames:#?}");
    }

    #[tokio::test]
    async fn a_client_that_does_not_trust_the_run_ca_is_recorded_failing() {
        let pki = Arc::new(Pki::new("t.test").unwrap());
        let other = Pki::new("t.test").unwrap();
        let frames = run(pki, other.client.clone()).await;
        assert!(frames.iter().any(|f| f.contains("!! client-tap handshake failed")), "{frames:#?}");
        assert!(!frames.iter().any(|f| f.contains("<secret/>")), "{frames:#?}");
    }
}
