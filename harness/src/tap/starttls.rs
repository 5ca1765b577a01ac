//! STARTTLS behind a tap (RFC 6120 §5): the tap relays the plain stream until the client's
//! `<starttls/>` and the server's `<proceed/>`, then runs TLS on both sides, as server towards
//! the client (the run's domain certificate) and as client towards the server (trusting only
//! the run's CA), and records the plaintext it relays from then on.
//!
//! What each handshake settled goes into the trace as a frame of kind `TlsHandshake`: the
//! tap's own account, not received bytes. The ciphertext is not recorded; without the
//! session keys it says nothing a diff could use.

use super::pump;
use crate::tls::{describe, Pki};
use crate::trace::frame::{Direction, FrameKind, Origin, Recorder};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long each side's handshake may take.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Relay one XMPP connection, terminating STARTTLS if the two ends negotiate it.
pub(super) async fn relay(client: TcpStream, server: TcpStream, origin: Origin, rec: Arc<Recorder>, pki: Arc<Pki>) {
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, origin.clone(), Direction::ToServer, rec.clone(), Some(b"<starttls"));
    let down = pump(sr, cw, origin.clone(), Direction::ToClient, rec.clone(), Some(b"<proceed"));
    let (up, down) = tokio::join!(up, down);
    let ((cr, sw), (sr, cw)) = match (up, down) {
        (Some(u), Some(d)) => (u, d),
        // The server refused or closed: the client side still gets relayed to the end.
        (Some((cr, sw)), None) => {
            pump(cr, sw, origin, Direction::ToServer, rec, None).await;
            return;
        }
        (None, Some((sr, cw))) => {
            pump(sr, cw, origin, Direction::ToClient, rec, None).await;
            return;
        }
        (None, None) => return,
    };
    let (Ok(client), Ok(server)) = (cr.reunite(cw), sr.reunite(sw)) else { return };
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
    let connector = tokio_rustls::TlsConnector::from(pki.client.clone());
    let name = match rustls::pki_types::ServerName::try_from(pki.domain.clone()) {
        Ok(n) => n,
        Err(e) => return note(&rec, &origin, Direction::ToClient, format!("!! {}: {e}", pki.domain)),
    };
    let (inner, outer) = tokio::join!(
        tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(client)),
        tokio::time::timeout(HANDSHAKE_DEADLINE, connector.connect(name, server)),
    );
    match (settled(inner), settled(outer)) {
        (Ok(c), Ok(s)) => {
            let sni = c.get_ref().1.server_name().map(|n| format!(" sni={n}")).unwrap_or_default();
            note(&rec, &origin, Direction::ToServer, format!("client-tap {}{sni}", describe(c.get_ref().1)));
            note(&rec, &origin, Direction::ToClient, format!("tap-server {}", describe(s.get_ref().1)));
            let (cr, cw) = tokio::io::split(c);
            let (sr, sw) = tokio::io::split(s);
            let up = pump(cr, sw, origin.clone(), Direction::ToServer, rec.clone(), None);
            let down = pump(sr, cw, origin, Direction::ToClient, rec, None);
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

/// A handshake's stream, or why there is none.
fn settled<S>(r: Result<std::io::Result<S>, tokio::time::error::Elapsed>) -> Result<S, String> {
    match r {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no handshake within {} s", HANDSHAKE_DEADLINE.as_secs())),
    }
}

fn note(rec: &Recorder, origin: &Origin, dir: Direction, text: String) {
    rec.record(origin, dir, FrameKind::TlsHandshake, text.into_bytes());
}
