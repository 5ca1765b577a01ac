//! Sans-IO SIP user agent over UDP: RFC 3261 client and server transactions (INVITE and
//! non-INVITE, see `transaction.rs`), digest answers to 401/407, registration, calls with SDP
//! offer/answer (see `call.rs`), and a UAS that answers MESSAGE, OPTIONS and NOTIFY with 200.
//!
//! The caller owns the socket and the clock: feed datagrams and time in, drain datagrams,
//! events and the next deadline out.

use super::call::{self, Call, CallState, Pending2xx, Role};
use super::transaction::{ClientState, ClientTx, ServerState, ServerTx, TxAction};
pub use super::transaction::{T1, T2, T4};
use crate::ids::{new_branch, token};
use crate::sip::digest::{self, Challenge, Credentials};
use crate::sip::message::{header_param, same_header, split_list, SipMessage};
use crate::sip::sdp::Session;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;
#[cfg(test)]
use std::time::Duration;

/// Account and addresses of one SIP leg.
#[derive(Debug, Clone)]
pub struct SipConfig {
    pub user: String,
    pub password: String,
    pub domain: String,
    pub local: SocketAddr,
    pub proxy: SocketAddr,
    /// UDP, or TCP or TLS (reliable: no retransmissions, timers D/I/J/K zero).
    pub transport: crate::wire::Transport,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// Identifies a client transaction chain (auth retries keep the id).
pub type TxId = u64;

/// What the UA reports.
#[derive(Debug, Clone)]
pub enum SipEvent {
    /// Any message received (requests, and responses including challenges).
    Received(SipMessage),
    /// A client transaction ended with this final response.
    Final { tx: TxId, response: SipMessage },
    /// Timer B or F fired: no final response.
    TimedOut { tx: TxId },
    /// A datagram that is not SIP.
    Unparsed { bytes: Vec<u8>, error: String },
    /// An INVITE arrived and we answered 180 Ringing.
    IncomingCall { call_id: String, from: String, video: bool, sdp_problem: Option<String>, call_info: Option<String> },
    /// The call's 2xx was acknowledged (callee) or received and acknowledged (caller).
    CallConfirmed { call_id: String, sdp_problem: Option<String> },
    /// The call ended, and why.
    CallEnded { call_id: String, reason: CallEnd },
}

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEnd {
    /// We sent BYE.
    WeHungUp,
    /// The peer sent BYE.
    PeerHungUp,
    /// We answered the INVITE with this final non-2xx code (486, 603).
    WeRejected(u16),
    /// The caller cancelled it while it rang here.
    CancelledByCaller,
    /// Our INVITE got this final non-2xx response.
    Answered(u16),
    /// Our 2xx was never acknowledged.
    NoAck,
    /// Our INVITE got no final response (Timer B).
    NoFinalResponse,
}

impl std::fmt::Display for CallEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallEnd::WeHungUp => write!(f, "we hung up"),
            CallEnd::PeerHungUp => write!(f, "the peer hung up"),
            CallEnd::WeRejected(code) => write!(f, "we rejected it with {code}"),
            CallEnd::CancelledByCaller => write!(f, "cancelled by the caller"),
            CallEnd::Answered(code) => write!(f, "answered {code}"),
            CallEnd::NoAck => write!(f, "no ACK for our 2xx"),
            CallEnd::NoFinalResponse => write!(f, "no final response (Timer B)"),
        }
    }
}

/// Why a request cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UaError {
    #[error("not a SIP message: {0}")]
    Parse(#[from] crate::sip::message::ParseError),
    #[error("request lacks a Via branch or CSeq, so no transaction can track it")]
    Untrackable,
    #[error("no call {0}")]
    NoCall(String),
    #[error("a MESSAGE of {0} bytes outside a session exceeds RFC 3428's 1300-byte limit for UDP")]
    TooLarge(usize),
    #[error("call {call}: cannot {what} while it is {state:?}")]
    CallState { call: String, what: &'static str, state: CallState },
}

#[derive(Debug)]
struct ClientEntry {
    /// 0 for a transaction kept only to absorb retransmissions (a challenged INVITE).
    id: TxId,
    tx: ClientTx,
    auth_attempts: u8,
}

#[derive(Debug)]
struct ServerEntry {
    tx: ServerTx,
    to: SocketAddr,
}

/// The user agent.
#[derive(Debug)]
pub struct SipUa {
    cfg: SipConfig,
    clients: Vec<ClientEntry>,
    servers: Vec<ServerEntry>,
    calls: Vec<Call>,
    out: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    next_id: TxId,
    reg_call_id: String,
    reg_tag: String,
    reg_cseq: u32,
    nc: u32,
    /// Port announced in SDP for audio (nothing listens: no media yet).
    media_port: u16,
    /// Presence subscriptions we hold, as dialogs keyed by the target's URI (in `remote`).
    subscriptions: Vec<Call>,
    /// Our publication's entity tag (RFC 3903), once the server has given one.
    etag: Option<String>,
}

/// Turn scenario text into wire bytes: CRLF line ends, Content-Length added when missing.
pub fn prepare_outgoing(text: &str) -> Vec<u8> {
    let text = text.replace("\r\n", "\n");
    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h.to_string(), b.to_string()),
        None => (text.trim_end_matches('\n').to_string(), String::new()),
    };
    // The YAML block's final line break is not part of the body.
    let body = body.strip_suffix('\n').unwrap_or(&body).replace('\n', "\r\n");
    let mut out = head.replace('\n', "\r\n");
    let has_len = head.lines().skip(1).any(|l| {
        l.split_once(':').is_some_and(|(n, _)| same_header(n, "Content-Length"))
    });
    if !has_len {
        out.push_str(&format!("\r\nContent-Length: {}", body.len()));
    }
    out.push_str("\r\n\r\n");
    out.push_str(&body);
    out.into_bytes()
}

/// Rebuild a request for an authenticated retry: new branch, CSeq + 1, one credentials header.
fn with_credentials(req: &SipMessage, branch: &str, auth_name: &str, auth_value: &str) -> Vec<u8> {
    let raw = req.raw();
    let first_line_end = raw.iter().position(|b| *b == b'\n').map(|p| p + 1).unwrap_or(raw.len());
    let mut out = String::from_utf8_lossy(&raw[..first_line_end]).trim_end().to_string();
    out.push_str("\r\n");
    let mut via_done = false;
    for h in req.header_lines() {
        let name = req.name_of(h);
        let value = req.value_of(h);
        if same_header(name, auth_name) {
            continue;
        }
        let value = if same_header(name, "Via") && !via_done {
            via_done = true;
            match header_param(&value, "branch") {
                Some(old) => value.replacen(&format!("branch={old}"), &format!("branch={branch}"), 1),
                None => format!("{value};branch={branch}"),
            }
        } else if same_header(name, "CSeq") {
            let mut it = value.split_whitespace();
            let n: u32 = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            format!("{} {}", n + 1, it.next().unwrap_or(""))
        } else {
            value
        };
        out.push_str(&format!("{name}: {value}\r\n"));
        if same_header(name, "CSeq") {
            out.push_str(&format!("{auth_name}: {auth_value}\r\n"));
        }
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(req.body());
    bytes
}

impl SipUa {
    /// A UA for one account.
    pub fn new(cfg: SipConfig) -> SipUa {
        // The SIP socket's own port: unique among live clients, so no two streams in one trace
        // share a media port by chance (nothing listens: no media yet).
        let media_port = cfg.local.port();
        SipUa {
            cfg,
            clients: Vec::new(),
            servers: Vec::new(),
            calls: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            reg_call_id: token(20),
            reg_tag: token(10),
            reg_cseq: 0,
            nc: 0,
            media_port,
            subscriptions: Vec::new(),
            etag: None,
        }
    }

    /// PUBLISH presence (RFC 3903 §4): with a body and no SIP-If-Match the first time; with
    /// SIP-If-Match afterwards (a modification with a body, a refresh without); `expires` 0
    /// removes the publication.
    pub fn publish(&mut self, now: Instant, pidf: Option<&str>, expires: u32) -> TxId {
        let aor = self.aor();
        let mut req = format!(
            "PUBLISH {aor} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\nCall-ID: {cid}\r\n\
             CSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: {expires}\r\n",
            via = self.via(),
            tag = token(10),
            cid = token(20),
        );
        if let Some(etag) = &self.etag {
            req.push_str(&format!("SIP-If-Match: {etag}\r\n"));
        }
        match pidf {
            Some(body) => req.push_str(&format!("Content-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{body}", body.len())),
            None => req.push_str("Content-Length: 0\r\n\r\n"),
        }
        if expires == 0 {
            self.etag = None;
        }
        self.send(now, req.as_bytes()).ok().flatten().expect("own PUBLISH is trackable")
    }

    /// SUBSCRIBE to a presentity (RFC 3856, RFC 6665): a new dialog the first time, a refresh
    /// inside it afterwards; `expires` 0 ends the subscription.
    pub fn subscribe(&mut self, now: Instant, to_uri: &str, expires: u32) -> TxId {
        let (via, contact) = (self.via(), self.contact());
        let extra = format!("Event: presence\r\nAccept: application/pidf+xml\r\nExpires: {expires}\r\n");
        let bytes = match self.subscriptions.iter_mut().find(|d| d.remote.contains(to_uri) && d.state == CallState::Confirmed) {
            Some(d) => {
                if expires == 0 {
                    d.state = CallState::Terminated;
                }
                d.in_dialog("SUBSCRIBE", &via, &contact, &extra)
            }
            None => {
                let call_id = token(20);
                let local = format!("<{}>;tag={}", self.aor(), token(10));
                let req = format!(
                    "SUBSCRIBE {to_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {local}\r\nTo: <{to_uri}>\r\nCall-ID: {call_id}\r\n\
                     CSeq: 1 SUBSCRIBE\r\nContact: <{contact}>\r\n{extra}Content-Length: 0\r\n\r\n"
                );
                self.subscriptions.retain(|d| !d.remote.contains(to_uri));
                let dialog = Call::new(call_id, Role::Caller, local, format!("<{to_uri}>"), req.clone().into_bytes());
                self.subscriptions.push(dialog);
                req.into_bytes()
            }
        };
        self.send(now, &bytes).ok().flatten().expect("own SUBSCRIBE is trackable")
    }

    /// What a final response to our PUBLISH or SUBSCRIBE means for its state.
    fn on_presence_response(&mut self, msg: &SipMessage, request: &[u8]) {
        let ok = msg.status().is_some_and(|c| (200..300).contains(&c));
        match msg.cseq().map(|(_, m)| m).as_deref() {
            Some("PUBLISH") if ok => {
                let removing = SipMessage::parse(request).ok().and_then(|r| r.header("Expires")).is_some_and(|e| e.trim() == "0");
                self.etag = if removing { None } else { msg.header("SIP-ETag").or(self.etag.take()) };
            }
            Some("SUBSCRIBE") => {
                let call_id = msg.header("Call-ID").unwrap_or_default();
                if let Some(d) = self.subscriptions.iter_mut().find(|d| d.call_id == call_id) {
                    if ok && d.state == CallState::Early {
                        d.learn_from_response(msg);
                        d.state = CallState::Confirmed;
                    } else if !ok {
                        d.state = CallState::Terminated;
                    }
                }
            }
            _ => {}
        }
    }

    /// The account's address-of-record.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.cfg.domain)
    }

    /// The Contact URI this UA registers.
    pub fn contact(&self) -> String {
        let transport = match self.cfg.transport {
            crate::wire::Transport::Udp => String::new(),
            t => format!(";transport={}", t.name()),
        };
        format!("sip:{}@{}{transport}", self.cfg.user, self.cfg.local)
    }

    /// The transport's name in Via.
    pub fn transport(&self) -> &'static str {
        match self.cfg.transport {
            crate::wire::Transport::Udp => "UDP",
            crate::wire::Transport::Tcp => "TCP",
            crate::wire::Transport::Tls => "TLS",
        }
    }

    fn via(&self) -> String {
        format!("SIP/2.0/{} {};rport;branch={}", self.transport(), self.cfg.local, new_branch())
    }

    /// Start (or refresh, or with 0 remove) a registration.
    pub fn register(&mut self, now: Instant, expires: u32) -> TxId {
        self.reg_cseq += 1;
        let text = format!(
            "REGISTER sip:{domain} SIP/2.0\n\
             Via: SIP/2.0/{transport} {local};rport;branch={branch}\n\
             Max-Forwards: 70\n\
             From: <{aor}>;tag={tag}\n\
             To: <{aor}>\n\
             Call-ID: {cid}\n\
             CSeq: {cseq} REGISTER\n\
             Contact: <{contact}>\n\
             Expires: {expires}\n\
             User-Agent: sixpac/{ver}\n",
            domain = self.cfg.domain,
            transport = self.transport(),
            local = self.cfg.local,
            branch = new_branch(),
            aor = self.aor(),
            tag = self.reg_tag,
            cid = self.reg_call_id,
            cseq = self.reg_cseq,
            contact = self.contact(),
            ver = env!("CARGO_PKG_VERSION"),
        );
        self.send(now, &prepare_outgoing(&text)).ok().flatten().expect("own REGISTER is trackable")
    }

    /// The largest out-of-session MESSAGE sent over UDP (RFC 3428 §8: the path MTU is unknown).
    pub const MESSAGE_LIMIT: usize = 1300;

    /// A MESSAGE (RFC 3428) with a text/plain body, outside any dialog and without Contact;
    /// refused when it would exceed [`Self::MESSAGE_LIMIT`] bytes.
    pub fn message(&mut self, now: Instant, to_uri: &str, text: &str) -> Result<TxId, UaError> {
        let req = format!(
            "MESSAGE {to_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <{aor}>;tag={tag}\r\nTo: <{to_uri}>\r\n\
             Call-ID: {cid}\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\n{text}",
            via = self.via(),
            aor = self.aor(),
            tag = token(10),
            cid = token(20),
            len = text.len(),
        );
        if req.len() > Self::MESSAGE_LIMIT {
            return Err(UaError::TooLarge(req.len()));
        }
        Ok(self.send(now, req.as_bytes())?.expect("own MESSAGE is trackable"))
    }

    /// Send a request's bytes as a new client transaction (responses and ACKs go out untracked).
    pub fn send(&mut self, now: Instant, bytes: &[u8]) -> Result<Option<TxId>, UaError> {
        let msg = SipMessage::parse(bytes)?;
        let to = self.cfg.proxy;
        self.out.push_back(Transmit { to, bytes: bytes.to_vec() });
        let Some(method) = msg.method() else { return Ok(None) };
        if method == "ACK" {
            return Ok(None);
        }
        let call_id = msg.header("Call-ID").unwrap_or_default();
        let to_tag = msg.header("To").and_then(|t| header_param(&t, "tag"));
        if method == "SUBSCRIBE" && to_tag.is_none() && !self.subscriptions.iter().any(|d| d.call_id == call_id) {
            // A subscription written by hand still gets its NOTIFYs answered 200, not 481.
            let (from, to_hdr) = (msg.header("From").unwrap_or_default(), msg.header("To").unwrap_or_default());
            self.subscriptions.push(Call::new(call_id, Role::Caller, from, to_hdr, bytes.to_vec()));
        }
        let branch = msg.top_via().and_then(|v| header_param(&v, "branch")).ok_or(UaError::Untrackable)?;
        msg.cseq().ok_or(UaError::Untrackable)?;
        let id = self.next_id;
        self.next_id += 1;
        let tx = ClientTx::new(now, bytes.to_vec(), branch, method.to_string(), self.cfg.transport.reliable());
        self.clients.push(ClientEntry { id, tx, auth_attempts: 0 });
        Ok(Some(id))
    }

    /// Call `to_uri`: INVITE with an SDP offer (audio, and video when asked). Returns the Call-ID.
    pub fn invite(&mut self, now: Instant, to_uri: &str, video: bool) -> String {
        self.invite_with(now, to_uri, video, "")
    }

    /// [`Self::invite`] with more header lines (each ending in CRLF), e.g. Call-Info.
    pub fn invite_with(&mut self, now: Instant, to_uri: &str, video: bool, extra: &str) -> String {
        let call_id = token(20);
        let local = format!("<{}>;tag={}", self.aor(), token(10));
        let offer = Session::offer(&self.cfg.local.ip().to_string(), self.media_port, video);
        let sdp = offer.to_text();
        let req = format!(
            "INVITE {to_uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {local}\r\nTo: <{to_uri}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <{contact}>\r\n{extra}User-Agent: sixpac/{ver}\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            via = self.via(),
            contact = self.contact(),
            ver = env!("CARGO_PKG_VERSION"),
            len = sdp.len(),
        );
        let tx = self.send(now, req.as_bytes()).ok().flatten();
        let mut call = Call::new(call_id.clone(), Role::Caller, local, format!("<{to_uri}>"), req.into_bytes());
        call.invite_tx = tx;
        call.offer = Some(offer);
        self.calls.push(call);
        call_id
    }

    fn call_mut(&mut self, call_id: &str) -> Result<&mut Call, UaError> {
        self.calls.iter_mut().find(|c| c.call_id == call_id).ok_or_else(|| UaError::NoCall(call_id.into()))
    }

    /// The state of a call, if we know it.
    pub fn call_state(&self, call_id: &str) -> Option<CallState> {
        self.calls.iter().find(|c| c.call_id == call_id).map(|c| c.state)
    }

    /// Respond to an incoming INVITE through its server transaction.
    /// `ended` says why the call ends, for a final response other than 2xx.
    fn respond_invite(&mut self, now: Instant, call_id: &str, code: u16, reason: &str, ended: Option<CallEnd>) -> Result<(), UaError> {
        let success = code < 300;
        let (contact, port) = (self.contact(), self.media_port);
        let (ip, proxy) = (self.cfg.local.ip().to_string(), self.cfg.proxy);
        let call = self.call_mut(call_id)?;
        if call.role != Role::Callee || call.state != CallState::Early {
            let state = call.state;
            return Err(UaError::CallState { call: call_id.into(), what: "answer or reject", state });
        }
        let inv = SipMessage::parse(&call.invite)?;
        let tag = call.local_tag().unwrap_or_default();
        let sdp = success.then(|| {
            let offer = call.offer.clone().unwrap_or_else(|| Session::offer(&ip, port, false));
            Session::answer(&offer, &ip, port, true).to_text()
        });
        let bytes = call::response(&inv, code, reason, &tag, success.then_some(contact.as_str()), sdp.as_deref());
        let to = call.peer.unwrap_or(proxy);
        if success {
            call.state = CallState::Confirmed;
            call.pending_2xx = Some(Pending2xx { bytes: bytes.clone(), to, next_at: now + T1, interval: T1, give_up_at: now + 64 * T1 });
        } else {
            call.state = CallState::Terminated;
            self.events.push_back(SipEvent::CallEnded { call_id: call_id.into(), reason: ended.unwrap_or(CallEnd::WeRejected(code)) });
        }
        let branch = inv.top_via().and_then(|v| header_param(&v, "branch")).unwrap_or_default();
        if let Some(e) = self.servers.iter_mut().find(|e| e.tx.branch == branch && e.tx.invite()) {
            transmit_to(&mut self.out, to, e.tx.respond(now, code, bytes));
        }
        Ok(())
    }

    /// Answer an incoming call with 200 and an SDP answer.
    pub fn answer(&mut self, now: Instant, call_id: &str) -> Result<(), UaError> {
        self.respond_invite(now, call_id, 200, "OK", None)
    }

    /// Reject an incoming call: 486 Busy Here or 603 Decline (or any final code).
    pub fn reject(&mut self, now: Instant, call_id: &str, code: u16) -> Result<(), UaError> {
        let reason = match code {
            486 => "Busy Here",
            603 => "Decline",
            480 => "Temporarily Unavailable",
            _ => "Rejected",
        };
        self.respond_invite(now, call_id, code, reason, Some(CallEnd::WeRejected(code)))
    }

    /// CANCEL our pending INVITE.
    pub fn cancel(&mut self, now: Instant, call_id: &str) -> Result<TxId, UaError> {
        let call = self.call_mut(call_id)?;
        if call.role != Role::Caller || call.state != CallState::Early {
            let state = call.state;
            return Err(UaError::CallState { call: call_id.into(), what: "cancel", state });
        }
        let bytes = call.cancel().ok_or(UaError::Untrackable)?;
        Ok(self.send(now, &bytes)?.expect("CANCEL is tracked"))
    }

    /// Hang up a confirmed call with BYE.
    pub fn bye(&mut self, now: Instant, call_id: &str) -> Result<TxId, UaError> {
        let (via, contact) = (self.via(), self.contact());
        let call = self.call_mut(call_id)?;
        if call.state != CallState::Confirmed {
            let state = call.state;
            return Err(UaError::CallState { call: call_id.into(), what: "hang up", state });
        }
        call.state = CallState::Terminated;
        call.pending_2xx = None;
        let bytes = call.in_dialog("BYE", &via, &contact, "");
        self.events.push_back(SipEvent::CallEnded { call_id: call_id.into(), reason: CallEnd::WeHungUp });
        Ok(self.send(now, &bytes)?.expect("BYE is tracked"))
    }

    /// Bytes to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<SipEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let clients = self.clients.iter().filter_map(|e| e.tx.next_timer());
        let servers = self.servers.iter().filter_map(|e| e.tx.next_timer());
        let calls = self.calls.iter().filter_map(|c| c.pending_2xx.as_ref().map(|p| p.next_at.min(p.give_up_at)));
        clients.chain(servers).chain(calls).min()
    }

    /// Fire whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let proxy = self.cfg.proxy;
        for e in &mut self.clients {
            if e.tx.next_timer().is_none_or(|t| t > now) {
                continue;
            }
            for a in e.tx.on_timer(now) {
                match a {
                    TxAction::Transmit(b) => self.out.push_back(Transmit { to: proxy, bytes: b }),
                    TxAction::TimedOut if e.id != 0 => self.events.push_back(SipEvent::TimedOut { tx: e.id }),
                    _ => {}
                }
            }
        }
        for e in &mut self.servers {
            if e.tx.next_timer().is_some_and(|t| t <= now) {
                transmit_to(&mut self.out, e.to, e.tx.on_timer(now));
            }
        }
        for c in &mut self.calls {
            let Some(p) = &mut c.pending_2xx else { continue };
            if now >= p.give_up_at {
                // §13.3.1.4: no ACK within 64*T1 ends the dialog.
                c.pending_2xx = None;
                c.state = CallState::Terminated;
                self.events.push_back(SipEvent::CallEnded { call_id: c.call_id.clone(), reason: CallEnd::NoAck });
            } else if now >= p.next_at {
                self.out.push_back(Transmit { to: p.to, bytes: p.bytes.clone() });
                p.interval = (p.interval * 2).min(T2);
                p.next_at = now + p.interval;
            }
        }
        for e in &self.clients {
            if e.tx.state == ClientState::Terminated && e.tx.invite() {
                // A timed-out INVITE ends its call.
                if let Some(c) = self.calls.iter_mut().find(|c| c.invite_tx == Some(e.id) && c.state == CallState::Early) {
                    c.state = CallState::Terminated;
                    self.events.push_back(SipEvent::CallEnded { call_id: c.call_id.clone(), reason: CallEnd::NoFinalResponse });
                }
            }
        }
        self.clients.retain(|e| e.tx.state != ClientState::Terminated);
        self.servers.retain(|e| e.tx.state != ServerState::Terminated);
    }

    /// Feed one received datagram.
    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
            return; // keepalive
        }
        let msg = match SipMessage::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.events.push_back(SipEvent::Unparsed { bytes: bytes.to_vec(), error: e.to_string() });
                return;
            }
        };
        if msg.status().is_some() {
            self.on_response(now, msg);
        } else {
            self.on_request(now, from, msg);
        }
    }

    fn on_response(&mut self, now: Instant, msg: SipMessage) {
        let branch = msg.top_via().and_then(|v| header_param(&v, "branch"));
        let method = msg.cseq().map(|(_, m)| m);
        let code = msg.status().unwrap_or(0);
        let Some(idx) = self
            .clients
            .iter()
            .position(|e| Some(&e.tx.branch) == branch.as_ref() && Some(&e.tx.method) == method.as_ref())
        else {
            // A 2xx retransmitted after our INVITE transaction ended: the ACK was lost (§13.2.2.4).
            let call_id = msg.header("Call-ID").unwrap_or_default();
            if method.as_deref() == Some("INVITE") && (200..300).contains(&code) {
                if let Some(ack) = self.calls.iter().find(|c| c.call_id == call_id).and_then(|c| c.ack.clone()) {
                    self.out.push_back(Transmit { to: self.cfg.proxy, bytes: ack });
                    return;
                }
            }
            // Stray or late response: report it, it may be what a scenario checks.
            self.events.push_back(SipEvent::Received(msg));
            return;
        };
        let before = self.clients[idx].tx.state;
        if before == ClientState::Completed {
            // A retransmitted final response: absorbed (non-INVITE) or re-ACKed (INVITE).
            let acts = self.clients[idx].tx.on_response(now, &msg);
            self.apply_client(idx, acts, false);
            return;
        }
        self.events.push_back(SipEvent::Received(msg.clone()));
        if (code == 401 || code == 407) && self.clients[idx].auth_attempts < 2 {
            let (request, method) = (self.clients[idx].tx.request.clone(), self.clients[idx].tx.method.clone());
            if let Some(retry) = self.authenticated_retry(&request, &method, &msg) {
                // Finish the challenged transaction (an INVITE's is ACKed) and go on with a new one
                // under the same id; the old one stays only to absorb retransmissions.
                let acts = self.clients[idx].tx.on_response(now, &msg);
                self.apply_client(idx, acts, false);
                let e = &mut self.clients[idx];
                let id = std::mem::replace(&mut e.id, 0);
                let attempts = e.auth_attempts + 1;
                let parsed = SipMessage::parse(&retry).expect("rebuilt request parses");
                let new_branch = parsed.top_via().and_then(|v| header_param(&v, "branch")).unwrap_or_default();
                // A dialog-creating request's retry carries the dialog's CSeq from now on.
                let call_id = parsed.header("Call-ID").unwrap_or_default();
                if let Some(d) = self.calls.iter_mut().chain(self.subscriptions.iter_mut()).find(|d| d.call_id == call_id) {
                    d.invite = retry.clone();
                    d.local_cseq = parsed.cseq().map(|(n, _)| n).unwrap_or(d.local_cseq);
                }
                self.out.push_back(Transmit { to: self.cfg.proxy, bytes: retry.clone() });
                let tx = ClientTx::new(now, retry, new_branch, method, self.cfg.transport.reliable());
                self.clients.push(ClientEntry { id, tx, auth_attempts: attempts });
                return;
            }
        }
        let acts = self.clients[idx].tx.on_response(now, &msg);
        if self.clients[idx].tx.invite() {
            self.on_invite_response(&msg);
        } else if code >= 200 {
            let request = self.clients[idx].tx.request.clone();
            self.on_presence_response(&msg, &request);
        }
        self.apply_client(idx, acts, true);
    }

    /// Carry out a client transaction's actions; `deliver` reports final responses as events.
    fn apply_client(&mut self, idx: usize, acts: Vec<TxAction>, deliver: bool) {
        let id = self.clients[idx].id;
        for a in acts {
            match a {
                TxAction::Transmit(b) => self.out.push_back(Transmit { to: self.cfg.proxy, bytes: b }),
                TxAction::Deliver(m) if deliver && id != 0 && m.status().unwrap_or(0) >= 200 => {
                    self.events.push_back(SipEvent::Final { tx: id, response: m });
                }
                _ => {}
            }
        }
    }

    /// What a response to our INVITE means for its call.
    fn on_invite_response(&mut self, msg: &SipMessage) {
        let code = msg.status().unwrap_or(0);
        let call_id = msg.header("Call-ID").unwrap_or_default();
        let (via, contact) = (self.via(), self.contact());
        let Some(c) = self.calls.iter_mut().find(|c| c.call_id == call_id && c.role == Role::Caller) else { return };
        if c.state != CallState::Early {
            return;
        }
        c.learn_from_response(msg);
        if (200..300).contains(&code) {
            let ack = c.in_dialog("ACK", &via, &contact, "");
            c.ack = Some(ack.clone());
            c.state = CallState::Confirmed;
            // RFC 3264 §6: the answer is valid SDP with the offer's m-lines, in order.
            let sdp_problem = match (&c.offer, sdp_of(msg)) {
                (Some(offer), Ok(answer)) => crate::sip::sdp::check_answer(offer, &answer).err().map(|e| format!("SDP answer: {e}")),
                (_, Err(e)) => Some(format!("SDP answer: {e}")),
                (None, Ok(_)) => None,
            };
            self.out.push_back(Transmit { to: self.cfg.proxy, bytes: ack });
            self.events.push_back(SipEvent::CallConfirmed { call_id, sdp_problem });
        } else if code >= 300 {
            c.state = CallState::Terminated;
            self.events.push_back(SipEvent::CallEnded { call_id, reason: CallEnd::Answered(code) });
        }
    }

    fn authenticated_retry(&mut self, request: &[u8], method: &str, resp: &SipMessage) -> Option<Vec<u8>> {
        let (challenge_name, auth_name) = if resp.status() == Some(407) {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let ch = Challenge::parse(&resp.header(challenge_name)?).ok()?;
        let req = SipMessage::parse(request).ok()?;
        let uri = match req.start_line() {
            crate::sip::message::StartLine::Request { uri, .. } => uri.clone(),
            _ => return None,
        };
        self.nc += 1;
        let cred = Credentials { user: &self.cfg.user, password: &self.cfg.password };
        let value = digest::answer(&ch, &cred, method, &uri, &token(16), self.nc).ok()?;
        if method == "REGISTER" {
            self.reg_cseq += 1;
        }
        Some(with_credentials(&req, &new_branch(), auth_name, &value))
    }

    fn on_request(&mut self, now: Instant, from: SocketAddr, msg: SipMessage) {
        let method = msg.method().unwrap_or_default().to_string();
        let branch = msg.top_via().and_then(|v| header_param(&v, "branch")).unwrap_or_default();
        let call_id = msg.header("Call-ID").unwrap_or_default();
        if method == "ACK" {
            // ACK for a non-2xx goes to the INVITE server transaction; for a 2xx, to the dialog.
            // Either way a scenario may check it arrived.
            self.events.push_back(SipEvent::Received(msg.clone()));
            if let Some(e) = self.servers.iter_mut().find(|e| e.tx.branch == branch && e.tx.invite()) {
                e.tx.on_request(now, "ACK");
                return;
            }
            if let Some(c) = self.calls.iter_mut().find(|c| c.call_id == call_id && c.pending_2xx.is_some()) {
                c.pending_2xx = None;
                self.events.push_back(SipEvent::CallConfirmed { call_id, sdp_problem: None });
            }
            return;
        }
        if let Some(e) = self.servers.iter_mut().find(|e| e.tx.branch == branch && e.tx.method == method) {
            transmit_to(&mut self.out, e.to, e.tx.on_request(now, &method));
            return;
        }
        self.events.push_back(SipEvent::Received(msg.clone()));
        let to = response_target(&msg, from);
        let mut tx = ServerTx::new(branch.clone(), method.clone(), self.cfg.transport.reliable());
        let tag = token(10);
        let (code, reason): (u16, &str) = match method.as_str() {
            "MESSAGE" | "OPTIONS" => (200, "OK"),
            // RFC 6665 §4.1.3: a NOTIFY that matches no subscription of ours gets 481.
            "NOTIFY" if self.subscriptions.iter().any(|d| d.call_id == call_id) => (200, "OK"),
            "NOTIFY" => (481, "Subscription Does Not Exist"),
            "INVITE" => {
                let parsed = sdp_of(&msg);
                let sdp_problem = parsed.as_ref().err().map(|e| format!("SDP offer: {e}"));
                let offer = parsed.ok();
                let video = offer.as_ref().is_some_and(|o| o.media.iter().any(|m| m.kind == "video" && m.port != 0));
                let remote = msg.header("From").unwrap_or_default();
                let mut local = msg.header("To").unwrap_or_default();
                if header_param(&local, "tag").is_none() {
                    local = format!("{local};tag={tag}");
                }
                let mut call = Call::new(call_id.clone(), Role::Callee, local, remote.clone(), msg.raw().to_vec());
                call.remote_target = call::contact_uri(&msg);
                // The callee's route set is the Record-Route as received (§12.1.1).
                call.route_set = msg.headers("Record-Route").iter().flat_map(|v| split_list(v)).collect();
                call.offer = offer;
                call.peer = Some(to);
                self.calls.push(call);
                let call_info = msg.header("Call-Info");
                self.events.push_back(SipEvent::IncomingCall { call_id: call_id.clone(), from: remote, video, sdp_problem, call_info });
                (180, "Ringing")
            }
            "CANCEL" => {
                let pending = self.servers.iter().any(|e| e.tx.branch == branch && e.tx.invite() && e.tx.state == ServerState::Proceeding);
                if !pending {
                    (481, "Call/Transaction Does Not Exist")
                } else {
                    // 200 for the CANCEL, then 487 for the INVITE (§9.2).
                    let ok = call::response(&msg, 200, "OK", &tag, None, None);
                    transmit_to(&mut self.out, to, tx.respond(now, 200, ok));
                    self.servers.push(ServerEntry { tx, to });
                    let _ = self.respond_invite(now, &call_id, 487, "Request Terminated", Some(CallEnd::CancelledByCaller));
                    return;
                }
            }
            "BYE" => match self.calls.iter_mut().find(|c| c.call_id == call_id && c.state == CallState::Confirmed) {
                Some(c) => {
                    c.state = CallState::Terminated;
                    c.pending_2xx = None;
                    self.events.push_back(SipEvent::CallEnded { call_id: call_id.clone(), reason: CallEnd::PeerHungUp });
                    (200, "OK")
                }
                None => (481, "Call/Transaction Does Not Exist"),
            },
            _ => (501, "Not Implemented"),
        };
        // An INVITE's dialog took `tag` as ours above (when its To had none), so the 180
        // carries the same tag.
        let contact = self.contact();
        let bytes = call::response(&msg, code, reason, &tag, (method == "INVITE").then_some(contact.as_str()), None);
        transmit_to(&mut self.out, to, tx.respond(now, code, bytes));
        self.servers.push(ServerEntry { tx, to });
    }
}

/// Queue what a server transaction asks to transmit, towards `to`.
fn transmit_to(out: &mut VecDeque<Transmit>, to: SocketAddr, actions: Vec<TxAction>) {
    for a in actions {
        if let TxAction::Transmit(bytes) = a {
            out.push_back(Transmit { to, bytes });
        }
    }
}

/// The SDP body of a message, or why there is none that parses.
fn sdp_of(msg: &SipMessage) -> Result<Session, String> {
    let is_sdp = msg.header("Content-Type").is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"));
    if !is_sdp || msg.body().is_empty() {
        return Err("no application/sdp body".into());
    }
    let text = std::str::from_utf8(msg.body()).map_err(|_| "the body is not UTF-8".to_string())?;
    Session::parse(text).map_err(|e| e.to_string())
}

/// Where a response goes (RFC 3261 §18.2.2 with RFC 3581 symmetric response routing).
fn response_target(req: &SipMessage, from: SocketAddr) -> SocketAddr {
    let Some(via) = req.top_via() else { return from };
    if header_param(&via, "rport").is_some() {
        return from;
    }
    let sent_by = via.split_whitespace().nth(1).unwrap_or("").split(';').next().unwrap_or("");
    let host = header_param(&via, "received");
    let (h, p) = sent_by.rsplit_once(':').unwrap_or((sent_by, "5060"));
    let host = host.unwrap_or_else(|| h.to_string());
    format!("{host}:{p}").parse().unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ua() -> SipUa {
        SipUa::new(SipConfig {
            user: "alice".into(),
            password: "pw".into(),
            domain: "example.test".into(),
            local: "127.0.0.1:5070".parse().unwrap(),
            proxy: "127.0.0.1:5060".parse().unwrap(),
            transport: crate::wire::Transport::Udp,
        })
    }

    fn reply(to: &[u8], code: u16, extra: &str) -> Vec<u8> {
        let req = SipMessage::parse(to).unwrap();
        let mut r = String::from_utf8(call::response(&req, code, "X", &token(10), None, None)).unwrap();
        r = r.replacen("Content-Length: 0\r\n", &format!("{extra}Content-Length: 0\r\n"), 1);
        r.into_bytes()
    }

    #[test]
    fn timer_e_doubles_to_t2_and_timer_f_times_out() {
        let mut ua = ua();
        let t0 = Instant::now();
        let id = ua.register(t0, 60);
        assert!(ua.poll_transmit().is_some());
        let mut sends = vec![];
        let mut now = t0;
        while let Some(at) = ua.poll_timeout() {
            now = at;
            ua.handle_timeout(now);
            while ua.poll_transmit().is_some() {
                sends.push(now - t0);
            }
            if let Some(SipEvent::TimedOut { tx }) = ua.poll_event() {
                assert_eq!(tx, id);
                break;
            }
        }
        let ms: Vec<u128> = sends.iter().map(|d| d.as_millis()).collect();
        assert_eq!(&ms[..5], &[500, 1500, 3500, 7500, 11500]);
        assert_eq!(now - t0, 64 * T1);
    }

    #[test]
    fn answers_a_407_with_proxy_authorization_and_new_cseq() {
        let mut ua = ua();
        let now = Instant::now();
        let text = "MESSAGE sip:bob@example.test SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK-old\nFrom: <sip:alice@example.test>;tag=1\nTo: <sip:bob@example.test>\nCall-ID: c1\nCSeq: 7 MESSAGE\nContent-Type: text/plain\n\nhello\n";
        let id = ua.send(now, &prepare_outgoing(text)).unwrap().unwrap();
        let first = ua.poll_transmit().unwrap().bytes;
        assert!(String::from_utf8_lossy(&first).ends_with("Content-Length: 5\r\n\r\nhello"));
        let challenge = reply(&first, 407, "Proxy-Authenticate: Digest realm=\"example.test\", nonce=\"n1\", qop=\"auth\"\r\n");
        ua.handle_input(now, "127.0.0.1:5060".parse().unwrap(), &challenge);
        let retry = String::from_utf8(ua.poll_transmit().unwrap().bytes).unwrap();
        assert!(retry.contains("CSeq: 8 MESSAGE\r\nProxy-Authorization: Digest username=\"alice\""), "{retry}");
        assert!(!retry.contains("branch=z9hG4bK-old"));
        assert!(retry.ends_with("\r\n\r\nhello"));
        let ok = reply(retry.as_bytes(), 200, "");
        ua.handle_input(now, "127.0.0.1:5060".parse().unwrap(), &ok);
        let finals: Vec<_> = std::iter::from_fn(|| ua.poll_event())
            .filter_map(|e| match e { SipEvent::Final { tx, response } => Some((tx, response.status())), _ => None })
            .collect();
        assert_eq!(finals, vec![(id, Some(200))]);
    }

    #[test]
    fn incoming_message_gets_200_to_the_source_when_rport() {
        let mut ua = ua();
        let now = Instant::now();
        let req = b"MESSAGE sip:alice@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx;rport\r\nFrom: <sip:bob@example.test>;tag=9\r\nTo: <sip:alice@example.test>\r\nCall-ID: q\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        ua.handle_input(now, src, req);
        let t = ua.poll_transmit().unwrap();
        assert_eq!(t.to, src);
        assert!(t.bytes.starts_with(b"SIP/2.0 200 OK\r\n"));
        ua.handle_input(now, src, req); // retransmission gets the same answer
        assert_eq!(ua.poll_transmit().unwrap().bytes, t.bytes);
    }

    fn pair() -> (SipUa, SipUa) {
        let (a, b): (SocketAddr, SocketAddr) = ("127.0.0.1:5071".parse().unwrap(), "127.0.0.1:5072".parse().unwrap());
        let mk = |user: &str, local, proxy| SipUa::new(SipConfig { user: user.into(), password: "pw".into(), domain: "example.test".into(), local, proxy, transport: crate::wire::Transport::Udp });
        (mk("alice", a, b), mk("bob", b, a))
    }

    /// Deliver every pending datagram between the two UAs until both are quiet; first lines sent.
    fn exchange(a: &mut SipUa, b: &mut SipUa, now: Instant) -> Vec<String> {
        fn step(from: &mut SipUa, to: &mut SipUa, now: Instant, seen: &mut Vec<String>) -> bool {
            let mut moved = false;
            let src = from.cfg.local;
            while let Some(t) = from.poll_transmit() {
                seen.push(format!("{} {}", from.cfg.user, String::from_utf8_lossy(&t.bytes).lines().next().unwrap_or("")));
                to.handle_input(now, src, &t.bytes);
                moved = true;
            }
            moved
        }
        let mut seen = Vec::new();
        loop {
            let ab = step(a, b, now, &mut seen);
            let ba = step(b, a, now, &mut seen);
            if !ab && !ba {
                return seen;
            }
        }
    }

    fn events(ua: &mut SipUa) -> Vec<SipEvent> {
        std::iter::from_fn(|| ua.poll_event()).filter(|e| !matches!(e, SipEvent::Received(_))).collect()
    }

    #[test]
    fn a_call_rings_is_answered_acked_and_hung_up() {
        let (mut a, mut b) = pair();
        let now = Instant::now();
        let call = a.invite(now, "sip:bob@example.test", true);
        let wire = exchange(&mut a, &mut b, now);
        assert_eq!(wire, vec!["alice INVITE sip:bob@example.test SIP/2.0", "bob SIP/2.0 180 Ringing"]);
        assert!(matches!(events(&mut b).as_slice(), [SipEvent::IncomingCall { video: true, sdp_problem: None, .. }]));
        b.answer(now, &call).unwrap();
        let wire = exchange(&mut a, &mut b, now);
        assert_eq!(wire, vec!["bob SIP/2.0 200 OK", "alice ACK sip:bob@127.0.0.1:5072 SIP/2.0"]);
        assert!(events(&mut b).iter().any(|e| matches!(e, SipEvent::CallConfirmed { .. })), "the ACK stops the 2xx retransmissions");
        assert!(events(&mut a).iter().any(|e| matches!(e, SipEvent::CallConfirmed { sdp_problem: None, .. })), "the answer fits the offer");
        assert!(b.calls[0].pending_2xx.is_none());
        a.bye(now, &call).unwrap();
        let wire = exchange(&mut a, &mut b, now);
        assert_eq!(wire, vec!["alice BYE sip:bob@127.0.0.1:5072 SIP/2.0", "bob SIP/2.0 200 OK"]);
        assert!(events(&mut b).iter().any(|e| matches!(e, SipEvent::CallEnded { reason, .. } if *reason == CallEnd::PeerHungUp)));
        assert_eq!(a.call_state(&call), Some(CallState::Terminated));
    }

    #[test]
    fn the_answer_keeps_the_offers_m_lines() {
        let (mut a, mut b) = pair();
        let now = Instant::now();
        let call = a.invite(now, "sip:bob@example.test", true);
        exchange(&mut a, &mut b, now);
        b.answer(now, &call).unwrap();
        let ok = b.poll_transmit().unwrap();
        let msg = SipMessage::parse(&ok.bytes).unwrap();
        let answer = Session::parse(std::str::from_utf8(msg.body()).unwrap()).unwrap();
        crate::sip::sdp::check_answer(a.calls[0].offer.as_ref().unwrap(), &answer).unwrap();
    }

    #[test]
    fn busy_and_decline_are_acked_by_the_transaction() {
        for code in [486u16, 603] {
            let (mut a, mut b) = pair();
            let now = Instant::now();
            let call = a.invite(now, "sip:bob@example.test", false);
            exchange(&mut a, &mut b, now);
            b.reject(now, &call, code).unwrap();
            let wire = exchange(&mut a, &mut b, now);
            assert_eq!(wire[0], format!("bob SIP/2.0 {code} {}", if code == 486 { "Busy Here" } else { "Decline" }));
            assert_eq!(wire[1], "alice ACK sip:bob@example.test SIP/2.0", "the non-2xx ACK keeps the Request-URI");
            assert_eq!(a.call_state(&call), Some(CallState::Terminated));
            // Bob's transaction is Confirmed: no more retransmissions of the rejection (Timer G stopped).
            b.handle_timeout(now + Duration::from_secs(1));
            assert!(b.poll_transmit().is_none());
        }
    }

    #[test]
    fn cancel_gets_200_and_the_invite_487() {
        let (mut a, mut b) = pair();
        let now = Instant::now();
        let call = a.invite(now, "sip:bob@example.test", false);
        exchange(&mut a, &mut b, now);
        a.cancel(now, &call).unwrap();
        let wire = exchange(&mut a, &mut b, now);
        assert_eq!(wire, vec![
            "alice CANCEL sip:bob@example.test SIP/2.0",
            "bob SIP/2.0 200 OK",
            "bob SIP/2.0 487 Request Terminated",
            "alice ACK sip:bob@example.test SIP/2.0",
        ]);
        assert!(events(&mut b).iter().any(|e| matches!(e, SipEvent::CallEnded { reason, .. } if *reason == CallEnd::CancelledByCaller)));
        assert!(events(&mut a).iter().any(|e| matches!(e, SipEvent::CallEnded { reason, .. } if *reason == CallEnd::Answered(487))));
    }

    #[test]
    fn an_unacked_2xx_is_retransmitted_then_the_call_ends() {
        let (mut a, mut b) = pair();
        let now = Instant::now();
        let call = a.invite(now, "sip:bob@example.test", false);
        exchange(&mut a, &mut b, now);
        b.answer(now, &call).unwrap();
        b.poll_transmit().unwrap(); // the 200, lost
        let mut sends = Vec::new();
        while let Some(at) = b.poll_timeout() {
            b.handle_timeout(at);
            while b.poll_transmit().is_some() {
                sends.push((at - now).as_millis());
            }
            if b.call_state(&call) == Some(CallState::Terminated) {
                assert_eq!(at - now, 64 * T1);
                break;
            }
        }
        assert_eq!(&sends[..5], &[500, 1500, 3500, 7500, 11500]);
    }

    #[test]
    fn an_out_of_session_message_over_1300_bytes_is_refused() {
        let (mut a, _) = pair();
        let now = Instant::now();
        assert!(a.message(now, "sip:bob@example.test", &"x".repeat(900)).is_ok());
        a.poll_transmit();
        let err = a.message(now, "sip:bob@example.test", &"x".repeat(1200)).unwrap_err();
        assert!(matches!(err, UaError::TooLarge(n) if n > 1300), "{err}");
        assert!(a.poll_transmit().is_none(), "nothing was sent");
    }

    #[test]
    fn an_invite_with_broken_sdp_is_reported() {
        let (_, mut b) = pair();
        let now = Instant::now();
        let body = "v=0\r\ns=x\r\n";
        let inv = format!("INVITE sip:bob@127.0.0.1:5072 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKbad;rport\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\nCall-ID: broken\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5071>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        b.handle_input(now, "127.0.0.1:5071".parse().unwrap(), inv.as_bytes());
        let ev = events(&mut b);
        assert!(matches!(ev.as_slice(), [SipEvent::IncomingCall { sdp_problem: Some(p), .. }] if p.starts_with("SDP offer:")), "{ev:?}");
    }

    #[test]
    fn a_notify_for_no_subscription_gets_481() {
        let (mut a, _) = pair();
        let now = Instant::now();
        let notify = |cid: &str| format!("NOTIFY sip:alice@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{cid};rport\r\nFrom: <sip:bob@example.test>;tag=b\r\nTo: <sip:alice@example.test>;tag=a\r\nCall-ID: {cid}\r\nCSeq: 1 NOTIFY\r\nEvent: presence\r\nSubscription-State: active;expires=60\r\nContent-Length: 0\r\n\r\n");
        a.handle_input(now, "127.0.0.1:5060".parse().unwrap(), notify("nosuch").as_bytes());
        assert!(a.poll_transmit().unwrap().bytes.starts_with(b"SIP/2.0 481 "));
        a.subscribe(now, "sip:bob@example.test", 600);
        let sub = SipMessage::parse(&a.poll_transmit().unwrap().bytes).unwrap();
        let cid = sub.header("Call-ID").unwrap();
        a.handle_input(now, "127.0.0.1:5060".parse().unwrap(), notify(&cid).as_bytes());
        assert!(a.poll_transmit().unwrap().bytes.starts_with(b"SIP/2.0 200 "), "a NOTIFY may come before the 200");
    }
}
