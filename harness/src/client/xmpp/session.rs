//! Sans-IO XMPP c2s session: stream negotiation, STARTTLS, SASL (SCRAM-SHA-256, SCRAM-SHA-1,
//! then PLAIN), resource binding.
//!
//! Feed received bytes with [`XmppSession::handle_input`]; take bytes to send with
//! [`XmppSession::poll_transmit`] and happenings with [`XmppSession::poll_event`]. When
//! [`XmppSession::wants_tls`] turns true the shell runs the TLS handshake on its socket and
//! reports it with [`XmppSession::tls_established`].

use super::scram::{ScramClient, ScramHash};
use crate::xml::{self, Element};
use crate::xmpp::{XmppFrameKind, XmppFramer};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use std::collections::VecDeque;

const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const BIND_NS: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

/// Who logs in, where.
#[derive(Debug, Clone)]
pub struct XmppConfig {
    pub user: String,
    pub domain: String,
    pub password: String,
    pub resource: String,
    /// Negotiate STARTTLS (RFC 6120 §5) before SASL, and fail when the server does not offer it.
    pub starttls: bool,
    /// The disco#info features the client answers with.
    pub features: Vec<String>,
    /// Answer requests addressed to the client by itself (see `features::answer_iq`).
    pub answers: bool,
}

impl XmppConfig {
    /// A plain (no STARTTLS) login of `account` with `resource`.
    pub fn for_account(account: &crate::account::Account, resource: &str) -> XmppConfig {
        XmppConfig {
            user: account.user.clone(),
            domain: account.domain.clone(),
            password: account.password.clone(),
            resource: resource.into(),
            starttls: false,
            features: super::features::own_features(),
            answers: true,
        }
    }
}

/// What the session reports upward.
#[derive(Debug, Clone, PartialEq)]
pub enum XmppEvent {
    /// Bound; the full JID the server assigned.
    Online { jid: String },
    /// The stream is now under TLS; what the handshake settled.
    Secured(String),
    /// A stanza or other element after binding.
    Stanza(Element),
    /// Negotiation failed; the stream is useless.
    Failed(String),
    /// Bytes the session could not read.
    Unparsed(String),
    /// The server closed the stream.
    Closed,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    AwaitHeader { authed: bool },
    AwaitFeatures { authed: bool },
    /// `<starttls/>` sent; waiting for `<proceed/>`.
    StartTls,
    /// `<proceed/>` received: the next bytes on the socket are the TLS handshake.
    TlsHandshake,
    Sasl { mechanism: &'static str },
    AwaitBind,
    Online,
    Closing,
    Closed,
}

/// One client-to-server stream.
#[derive(Debug)]
pub struct XmppSession {
    cfg: XmppConfig,
    framer: XmppFramer,
    state: State,
    /// The SCRAM exchange, once a mechanism is chosen.
    scram: Option<ScramClient>,
    cnonce: String,
    /// The stream was restarted under TLS.
    secured: bool,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<XmppEvent>,
}

/// The opening of a client stream to `domain` (RFC 6120 §4.2).
pub fn stream_header(domain: &str) -> Vec<u8> {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
        xml::escape(domain, true)
    )
    .into_bytes()
}

impl XmppSession {
    /// A session that has sent its stream header (see `poll_transmit`).
    pub fn new(cfg: XmppConfig, cnonce: &str) -> XmppSession {
        let mut s = XmppSession {
            out: VecDeque::from([stream_header(&cfg.domain)]),
            cfg,
            framer: XmppFramer::new(),
            state: State::AwaitHeader { authed: false },
            scram: None,
            cnonce: cnonce.to_string(),
            secured: false,
            events: VecDeque::new(),
        };
        s.framer.restart();
        s
    }

    /// Bytes to write to the socket.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Next event for the layer above.
    pub fn poll_event(&mut self) -> Option<XmppEvent> {
        self.events.pop_front()
    }

    /// Queue arbitrary bytes (raw send; nothing is checked).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.out.push_back(bytes.to_vec());
    }

    /// Close the stream politely.
    pub fn close(&mut self) {
        if !matches!(self.state, State::Closed | State::Closing) {
            self.out.push_back(b"</stream:stream>".to_vec());
            self.state = State::Closing;
        }
    }

    /// True when the shell must run the TLS handshake now (the server said `<proceed/>`).
    pub fn wants_tls(&self) -> bool {
        self.state == State::TlsHandshake
    }

    /// The shell finished the TLS handshake: restart the stream over it (RFC 6120 §5.4.3.3).
    pub fn tls_established(&mut self, facts: String) {
        if self.state == State::TlsHandshake {
            self.framer = XmppFramer::new();
            self.framer.restart();
            self.out.push_back(stream_header(&self.cfg.domain));
            self.state = State::AwaitHeader { authed: false };
            self.secured = true;
            self.events.push_back(XmppEvent::Secured(facts));
        }
    }

    /// The shell's TLS handshake failed.
    pub fn tls_failed(&mut self, why: String) {
        self.fail(format!("TLS handshake: {why}"));
    }

    /// True once the server's close was seen (or negotiation failed).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The transport reached EOF.
    pub fn handle_eof(&mut self) {
        if let Some(f) = self.framer.finish() {
            if let XmppFrameKind::Unparsed(r) = f.kind {
                self.events.push_back(XmppEvent::Unparsed(r));
            }
        }
        if self.state != State::Closed {
            self.state = State::Closed;
            self.events.push_back(XmppEvent::Closed);
        }
    }

    /// Feed bytes read from the socket.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
        while let Some(frame) = self.framer.next_frame() {
            if self.state == State::TlsHandshake {
                // Bytes after <proceed/> belong to TLS, which the shell reads from the socket.
                break;
            }
            match frame.kind {
                XmppFrameKind::StreamHeader => self.on_header(),
                XmppFrameKind::StreamClose => {
                    if self.state != State::Closing {
                        self.out.push_back(b"</stream:stream>".to_vec());
                    }
                    self.state = State::Closed;
                    self.events.push_back(XmppEvent::Closed);
                }
                XmppFrameKind::Element => match xml::parse(&frame.bytes, &xml::client_stream_scope(), false) {
                    Ok(el) => self.on_element(el),
                    Err(e) => self.events.push_back(XmppEvent::Unparsed(e.to_string())),
                },
                XmppFrameKind::Whitespace => {}
                XmppFrameKind::Opaque => self.fail("unexpected TLS data".into()),
                XmppFrameKind::Unparsed(r) => self.events.push_back(XmppEvent::Unparsed(r)),
            }
        }
    }

    fn fail(&mut self, why: String) {
        self.events.push_back(XmppEvent::Failed(why));
        self.state = State::Closed;
    }

    fn on_header(&mut self) {
        if let State::AwaitHeader { authed } = self.state {
            self.state = State::AwaitFeatures { authed };
        }
    }

    fn on_element(&mut self, el: Element) {
        let sasl = el.ns.as_deref() == Some(SASL_NS);
        match (&self.state, el.local_name()) {
            (State::AwaitFeatures { authed: false }, "features") => self.after_features(&el),
            (State::StartTls, "proceed") if el.ns.as_deref() == Some(TLS_NS) => self.state = State::TlsHandshake,
            (State::StartTls, "failure") if el.ns.as_deref() == Some(TLS_NS) => self.fail("server refused STARTTLS".into()),
            (State::AwaitFeatures { authed: true }, "features") => {
                if el.elements().any(|c| c.local_name() == "bind" && c.ns.as_deref() == Some(BIND_NS)) {
                    let bind = format!(
                        "<iq type='set' id='bind_1'><bind xmlns='{BIND_NS}'><resource>{}</resource></bind></iq>",
                        xml::escape(&self.cfg.resource, false)
                    );
                    self.out.push_back(bind.into_bytes());
                    self.state = State::AwaitBind;
                } else {
                    self.fail("server offers no resource binding".into());
                }
            }
            (State::Sasl { mechanism }, "challenge") if sasl => {
                let mechanism = *mechanism;
                let data = B64.decode(el.text().trim()).unwrap_or_default();
                let reply = match (mechanism.starts_with("SCRAM-"), self.scram.as_mut()) {
                    (true, Some(s)) => s.client_final(&String::from_utf8_lossy(&data)),
                    _ => return self.fail(format!("unexpected challenge for {mechanism}")),
                };
                match reply {
                    Ok(r) => self.out.push_back(
                        format!("<response xmlns='{SASL_NS}'>{}</response>", B64.encode(r)).into_bytes(),
                    ),
                    Err(e) => self.fail(format!("SCRAM: {e}")),
                }
            }
            (State::Sasl { mechanism }, "success") if sasl => {
                if mechanism.starts_with("SCRAM-") {
                    let data = B64.decode(el.text().trim()).unwrap_or_default();
                    let check = self.scram.as_ref().map(|s| s.verify_final(&String::from_utf8_lossy(&data)));
                    if let Some(Err(e)) = check {
                        return self.fail(format!("SCRAM: {e}"));
                    }
                }
                self.framer.restart();
                self.out.push_back(stream_header(&self.cfg.domain));
                self.state = State::AwaitHeader { authed: true };
            }
            (State::Sasl { .. }, "failure") if sasl => {
                let cond = el.elements().next().map(|c| c.local_name().to_string()).unwrap_or_default();
                self.fail(format!("SASL failure: {cond}"));
            }
            (State::AwaitBind, "iq") if el.attr("id") == Some("bind_1") => {
                let jid = el.child("bind").and_then(|b| b.child("jid")).map(|j| j.text());
                match (el.attr("type"), jid) {
                    (Some("result"), Some(jid)) => {
                        self.state = State::Online;
                        self.events.push_back(XmppEvent::Online { jid });
                    }
                    _ => self.fail(format!("bind failed: {}", el.to_xml())),
                }
            }
            (State::Online | State::Closing, _) => {
                // Requests addressed to the client are answered at once (disco#info, ping,
                // roster push; anything else service-unavailable); every stanza still goes up.
                if el.local_name() == "iq" && self.state == State::Online && self.cfg.answers {
                    if let Some(answer) = super::features::answer_iq(&el, &self.cfg.features) {
                        self.out.push_back(answer.into_bytes());
                    }
                }
                self.events.push_back(XmppEvent::Stanza(el))
            }
            (_, "error") => self.fail(format!("stream error: {}", el.to_xml())),
            _ => self.fail(format!("unexpected element during negotiation: {}", el.to_xml())),
        }
    }

    /// The first features: STARTTLS when configured (or required by the server), else SASL.
    fn after_features(&mut self, features: &Element) {
        let offer = features.elements().find(|c| c.local_name() == "starttls" && c.ns.as_deref() == Some(TLS_NS));
        let secured = self.secured;
        match (secured, self.cfg.starttls, offer) {
            (false, true, Some(_)) => {
                self.out.push_back(format!("<starttls xmlns='{TLS_NS}'/>").into_bytes());
                self.state = State::StartTls;
            }
            (false, true, None) => self.fail("server offers no STARTTLS".into()),
            (false, false, Some(o)) if o.child("required").is_some() => {
                self.fail("server requires STARTTLS and this leg is configured plain".into())
            }
            _ => self.start_sasl(features),
        }
    }

    fn start_sasl(&mut self, features: &Element) {
        let offered: Vec<String> = features
            .child("mechanisms")
            .map(|m| m.elements().map(|e| e.text().trim().to_string()).collect())
            .unwrap_or_default();
        // The strongest SCRAM the server offers: SHA-256 (RFC 7677), else SHA-1 (RFC 5802).
        let scram = [ScramHash::Sha256, ScramHash::Sha1].into_iter().find(|h| offered.iter().any(|m| m == h.mechanism()));
        if let Some(hash) = scram {
            let client = ScramClient::with_hash(hash, &self.cfg.user, &self.cfg.password, &self.cnonce);
            let first = client.client_first();
            self.scram = Some(client);
            let mechanism = hash.mechanism();
            self.out.push_back(
                format!("<auth xmlns='{SASL_NS}' mechanism='{mechanism}'>{}</auth>", B64.encode(first)).into_bytes(),
            );
            self.state = State::Sasl { mechanism };
        } else if offered.iter().any(|m| m == "PLAIN") {
            let blob = format!("\0{}\0{}", self.cfg.user, self.cfg.password);
            self.out.push_back(
                format!("<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{}</auth>", B64.encode(blob)).into_bytes(),
            );
            self.state = State::Sasl { mechanism: "PLAIN" };
        } else {
            self.fail(format!("no supported SASL mechanism among {offered:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> XmppConfig {
        XmppConfig { user: "u".into(), domain: "d.test".into(), password: "p".into(), resource: "r".into(), starttls: false, features: super::super::features::own_features(), answers: true }
    }

    const STARTTLS_OFFER: &[u8] = b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";

    #[test]
    fn starttls_then_a_new_stream_then_sasl() {
        let mut s = XmppSession::new(XmppConfig { starttls: true, ..cfg() }, "n");
        drain(&mut s);
        s.handle_input(HDR);
        s.handle_input(STARTTLS_OFFER);
        assert_eq!(drain(&mut s), vec!["<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"]);
        assert!(!s.wants_tls());
        // TLS bytes glued to <proceed/> are left for the shell, not parsed as XML.
        s.handle_input(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\x16\x03\x03");
        assert!(s.wants_tls());
        assert_eq!(s.poll_event(), None);
        s.tls_established("TLSv1_3 X".into());
        assert_eq!(s.poll_event(), Some(XmppEvent::Secured("TLSv1_3 X".into())));
        assert!(drain(&mut s)[0].starts_with("<?xml"));
        s.handle_input(HDR);
        s.handle_input(STARTTLS_OFFER);
        assert!(drain(&mut s)[0].contains("mechanism='PLAIN'"), "the secured stream goes on to SASL");
    }

    #[test]
    fn starttls_missing_refused_or_required_fails_cleanly() {
        let mut s = XmppSession::new(XmppConfig { starttls: true, ..cfg() }, "n");
        s.handle_input(HDR);
        s.handle_input(b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
        assert!(matches!(s.poll_event(), Some(XmppEvent::Failed(m)) if m.contains("no STARTTLS")));
        let mut s = XmppSession::new(XmppConfig { starttls: true, ..cfg() }, "n");
        s.handle_input(HDR);
        s.handle_input(STARTTLS_OFFER);
        s.handle_input(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert!(matches!(s.poll_event(), Some(XmppEvent::Failed(m)) if m.contains("refused")));
        let mut s = XmppSession::new(cfg(), "n");
        s.handle_input(HDR);
        s.handle_input(b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>");
        assert!(matches!(s.poll_event(), Some(XmppEvent::Failed(m)) if m.contains("requires STARTTLS")));
    }

    fn drain(s: &mut XmppSession) -> Vec<String> {
        std::iter::from_fn(|| s.poll_transmit()).map(|b| String::from_utf8(b).unwrap()).collect()
    }

    const HDR: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>";

    #[test]
    fn plain_login_and_bind() {
        let mut s = XmppSession::new(cfg(), "n");
        assert!(drain(&mut s)[0].contains("to='d.test'"));
        s.handle_input(HDR);
        s.handle_input(b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>");
        let auth = drain(&mut s);
        assert!(auth[0].contains("mechanism='PLAIN'>AHUAcA=="), "{auth:?}");
        s.handle_input(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
        assert!(drain(&mut s)[0].starts_with("<?xml"));
        s.handle_input(HDR);
        s.handle_input(b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>");
        assert!(drain(&mut s)[0].contains("<resource>r</resource>"));
        s.handle_input(b"<iq type='result' id='bind_1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>u@d.test/r</jid></bind></iq>");
        assert_eq!(s.poll_event(), Some(XmppEvent::Online { jid: "u@d.test/r".into() }));
        s.handle_input(b"<message from='a@d.test/x'><body>hi</body></message>");
        assert!(matches!(s.poll_event(), Some(XmppEvent::Stanza(e)) if e.local_name() == "message"));
    }

    #[test]
    fn sasl_failure_and_missing_mechanisms_fail_cleanly() {
        let mut s = XmppSession::new(cfg(), "n");
        s.handle_input(HDR);
        s.handle_input(b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>X-OTHER</mechanism></mechanisms></stream:features>");
        assert!(matches!(s.poll_event(), Some(XmppEvent::Failed(m)) if m.contains("X-OTHER")));
        let mut s = XmppSession::new(cfg(), "n");
        s.handle_input(HDR);
        s.handle_input(b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>");
        s.handle_input(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>");
        assert!(matches!(s.poll_event(), Some(XmppEvent::Failed(m)) if m.contains("not-authorized")));
    }
}
