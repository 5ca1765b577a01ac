//! Sans-IO SIP user agent over UDP: non-INVITE client transactions with RFC 3261 timers E/F/K,
//! digest answers to 401/407, and a UAS that answers MESSAGE, OPTIONS and NOTIFY with 200.
//!
//! The caller owns the socket and the clock: feed datagrams and time in, drain datagrams,
//! events and the next deadline out.

use crate::sip::digest::{self, Challenge, Credentials};
use crate::sip::message::{header_param, same_header, SipMessage};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// RFC 3261 timer base values.
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const T4: Duration = Duration::from_secs(5);

/// Account and addresses of one SIP leg.
#[derive(Debug, Clone)]
pub struct SipConfig {
    pub user: String,
    pub password: String,
    pub domain: String,
    pub local: SocketAddr,
    pub proxy: SocketAddr,
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
    /// Timer F fired: no final response.
    TimedOut { tx: TxId },
    /// A datagram that is not SIP.
    Unparsed { bytes: Vec<u8>, error: String },
}

/// Why a request cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UaError {
    #[error("not a SIP message: {0}")]
    Parse(#[from] crate::sip::message::ParseError),
    #[error("request lacks a Via branch or CSeq, so no transaction can track it")]
    Untrackable,
}

#[derive(Debug, Clone, PartialEq)]
enum TxState {
    Trying,
    Proceeding,
    Completed { until: Instant },
}

#[derive(Debug)]
struct ClientTx {
    id: TxId,
    request: Vec<u8>,
    branch: String,
    method: String,
    state: TxState,
    retransmit_at: Option<Instant>,
    interval: Duration,
    timeout_at: Instant,
    auth_attempts: u8,
}

#[derive(Debug)]
struct ServerTx {
    branch: String,
    method: String,
    response: Transmit,
    until: Instant,
}

/// The user agent.
#[derive(Debug)]
pub struct SipUa {
    cfg: SipConfig,
    clients: Vec<ClientTx>,
    servers: Vec<ServerTx>,
    out: VecDeque<Transmit>,
    events: VecDeque<SipEvent>,
    next_id: TxId,
    reg_call_id: String,
    reg_tag: String,
    reg_cseq: u32,
    nc: u32,
}

/// A random lowercase hex token (for branches, tags, Call-IDs, nonces).
pub fn token(len: usize) -> String {
    let mut b = vec![0u8; len.div_ceil(2)];
    getrandom::fill(&mut b).expect("OS random source");
    let mut s: String = b.iter().map(|x| format!("{x:02x}")).collect();
    s.truncate(len);
    s
}

/// A new RFC 3261 branch (magic cookie + random).
pub fn new_branch() -> String {
    format!("z9hG4bK{}", token(16))
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
        SipUa {
            cfg,
            clients: Vec::new(),
            servers: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            reg_call_id: token(20),
            reg_tag: token(10),
            reg_cseq: 0,
            nc: 0,
        }
    }

    /// The account's address-of-record.
    pub fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.cfg.domain)
    }

    /// The Contact URI this UA registers.
    pub fn contact(&self) -> String {
        format!("sip:{}@{}", self.cfg.user, self.cfg.local)
    }

    /// Start (or refresh, or with 0 remove) a registration.
    pub fn register(&mut self, now: Instant, expires: u32) -> TxId {
        self.reg_cseq += 1;
        let text = format!(
            "REGISTER sip:{domain} SIP/2.0\n\
             Via: SIP/2.0/UDP {local};rport;branch={branch}\n\
             Max-Forwards: 70\n\
             From: <{aor}>;tag={tag}\n\
             To: <{aor}>\n\
             Call-ID: {cid}\n\
             CSeq: {cseq} REGISTER\n\
             Contact: <{contact}>\n\
             Expires: {expires}\n\
             User-Agent: sixpac/{ver}\n",
            domain = self.cfg.domain,
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

    /// Send a request's bytes as a new client transaction (responses and ACKs go out untracked).
    pub fn send(&mut self, now: Instant, bytes: &[u8]) -> Result<Option<TxId>, UaError> {
        let msg = SipMessage::parse(bytes)?;
        let to = self.cfg.proxy;
        self.out.push_back(Transmit { to, bytes: bytes.to_vec() });
        let Some(method) = msg.method() else { return Ok(None) };
        if method == "ACK" {
            return Ok(None);
        }
        let branch = msg
            .top_via()
            .and_then(|v| header_param(&v, "branch"))
            .ok_or(UaError::Untrackable)?;
        msg.cseq().ok_or(UaError::Untrackable)?;
        let id = self.next_id;
        self.next_id += 1;
        self.clients.push(ClientTx {
            id,
            request: bytes.to_vec(),
            branch,
            method: method.to_string(),
            state: TxState::Trying,
            retransmit_at: Some(now + T1),
            interval: T1,
            timeout_at: now + 64 * T1,
            auth_attempts: 0,
        });
        Ok(Some(id))
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
        let clients = self.clients.iter().flat_map(|t| match t.state {
            TxState::Completed { until } => [Some(until), None],
            _ => [t.retransmit_at, Some(t.timeout_at)],
        });
        let clients = clients.flatten();
        clients.chain(self.servers.iter().map(|s| s.until)).min()
    }

    /// Fire whatever timers are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut timed_out = Vec::new();
        for t in &mut self.clients {
            if matches!(t.state, TxState::Completed { .. }) {
                continue; // Timer K: removed below once it runs out, without an event
            }
            if now >= t.timeout_at {
                timed_out.push(t.id);
                continue;
            }
            if let Some(at) = t.retransmit_at {
                if now >= at {
                    self.out.push_back(Transmit { to: self.cfg.proxy, bytes: t.request.clone() });
                    t.interval = match t.state {
                        TxState::Proceeding => T2,
                        _ => (t.interval * 2).min(T2),
                    };
                    t.retransmit_at = Some(now + t.interval);
                }
            }
        }
        for id in &timed_out {
            self.events.push_back(SipEvent::TimedOut { tx: *id });
        }
        self.clients.retain(|t| {
            let expired = matches!(t.state, TxState::Completed { until } if until <= now);
            !timed_out.contains(&t.id) && !expired
        });
        self.servers.retain(|s| s.until > now);
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
            .position(|t| Some(&t.branch) == branch.as_ref() && Some(&t.method) == method.as_ref())
        else {
            // Stray or late response: report it, it may be what a scenario checks.
            self.events.push_back(SipEvent::Received(msg));
            return;
        };
        if matches!(self.clients[idx].state, TxState::Completed { .. }) {
            return; // retransmitted final response, absorbed (Timer K)
        }
        self.events.push_back(SipEvent::Received(msg.clone()));
        if code < 200 {
            self.clients[idx].state = TxState::Proceeding;
            return;
        }
        if (code == 401 || code == 407) && self.clients[idx].auth_attempts < 2 {
            let (request, method) = (self.clients[idx].request.clone(), self.clients[idx].method.clone());
            if let Some(retry) = self.authenticated_retry(&request, &method, &msg) {
                let t = &mut self.clients[idx];
                let parsed = SipMessage::parse(&retry).expect("rebuilt request parses");
                t.branch = parsed.top_via().and_then(|v| header_param(&v, "branch")).unwrap_or_default();
                t.request = retry.clone();
                t.auth_attempts += 1;
                t.state = TxState::Trying;
                t.interval = T1;
                t.retransmit_at = Some(now + T1);
                t.timeout_at = now + 64 * T1;
                self.out.push_back(Transmit { to: self.cfg.proxy, bytes: retry });
                return;
            }
        }
        let t = &mut self.clients[idx];
        t.state = TxState::Completed { until: now + T4 };
        t.retransmit_at = None;
        self.events.push_back(SipEvent::Final { tx: t.id, response: msg });
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
        if let Some(s) = self.servers.iter().find(|s| s.branch == branch && s.method == method) {
            self.out.push_back(s.response.clone()); // retransmitted request: repeat our answer
            return;
        }
        self.events.push_back(SipEvent::Received(msg.clone()));
        if method == "ACK" {
            return;
        }
        let (code, reason) = match method.as_str() {
            "MESSAGE" | "OPTIONS" | "NOTIFY" => (200, "OK"),
            _ => (501, "Not Implemented"),
        };
        let response = Transmit { to: response_target(&msg, from), bytes: build_response(&msg, code, reason) };
        self.out.push_back(response.clone());
        self.servers.push(ServerTx { branch, method, response, until: now + 64 * T1 });
    }
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

/// A response echoing the request's Via, From, To (tagged), Call-ID and CSeq, with no body.
pub fn build_response(req: &SipMessage, code: u16, reason: &str) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for h in req.header_lines() {
        let name = req.name_of(h);
        let value = req.value_of(h);
        if same_header(name, "Via") || same_header(name, "From") || same_header(name, "Call-ID") || same_header(name, "CSeq") || same_header(name, "Record-Route") {
            out.push_str(&format!("{name}: {value}\r\n"));
        } else if same_header(name, "To") {
            let value = if header_param(&value, "tag").is_none() && code > 100 {
                format!("{value};tag={}", token(10))
            } else {
                value
            };
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    out.push_str(&format!("Server: sixpac/{}\r\nContent-Length: 0\r\n\r\n", env!("CARGO_PKG_VERSION")));
    out.into_bytes()
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
        })
    }

    fn reply(to: &[u8], code: u16, extra: &str) -> Vec<u8> {
        let req = SipMessage::parse(to).unwrap();
        let mut r = String::from_utf8(build_response(&req, code, "X")).unwrap();
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
}
