//! RFC 3261 §17 transactions as plain state machines: client and server, INVITE and
//! non-INVITE, over an unreliable (UDP) or reliable (TCP) transport.
//!
//! Time comes in as an argument, so every timer (A, B, D, E, F, G, H, I, J, K) runs on
//! virtual time in the tests. Each input returns the actions to take; nothing here does I/O.

use crate::sip::message::SipMessage;
use std::time::{Duration, Instant};

/// RFC 3261 timer base values (§17.1.1.1, Table 4).
pub const T1: Duration = Duration::from_millis(500);
pub const T2: Duration = Duration::from_secs(4);
pub const T4: Duration = Duration::from_secs(5);
/// Timer D's minimum for an unreliable transport.
pub const TIMER_D: Duration = Duration::from_secs(32);

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq)]
pub enum TxAction {
    /// Send these bytes to the transaction's peer (a retransmission, an ACK or a response).
    Transmit(Vec<u8>),
    /// Hand this response to the transaction user (provisional or final).
    Deliver(SipMessage),
    /// Timer B or F fired: no final response came.
    TimedOut,
    /// Timer H fired: our final response to an INVITE was never acknowledged.
    NoAck,
}

/// Client transaction states (§17.1.1, §17.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Calling (INVITE) or Trying (non-INVITE).
    Started,
    Proceeding,
    Completed,
    Terminated,
}

/// One client transaction.
#[derive(Debug, Clone)]
pub struct ClientTx {
    pub request: Vec<u8>,
    pub branch: String,
    pub method: String,
    pub state: ClientState,
    reliable: bool,
    /// Timer A or E.
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer B or F.
    timeout_at: Option<Instant>,
    /// Timer D or K.
    end_at: Option<Instant>,
    /// The ACK for a non-2xx final response to an INVITE, resent on each retransmission of it.
    ack: Option<Vec<u8>>,
}

fn is_invite(method: &str) -> bool {
    method == "INVITE"
}

impl ClientTx {
    /// A transaction whose request has just been sent.
    pub fn new(now: Instant, request: Vec<u8>, branch: String, method: String, reliable: bool) -> ClientTx {
        ClientTx {
            request,
            branch,
            method,
            state: ClientState::Started,
            reliable,
            retransmit_at: (!reliable).then_some(now + T1),
            interval: T1,
            timeout_at: Some(now + 64 * T1),
            end_at: None,
            ack: None,
        }
    }

    /// True for an INVITE transaction.
    pub fn invite(&self) -> bool {
        is_invite(&self.method)
    }

    /// The next instant a timer of this transaction fires.
    pub fn next_timer(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at].into_iter().flatten().min()
    }

    /// A response matched to this transaction (§17.1.3).
    pub fn on_response(&mut self, now: Instant, msg: &SipMessage) -> Vec<TxAction> {
        let code = msg.status().unwrap_or(0);
        match (self.invite(), self.state) {
            (_, ClientState::Terminated) => vec![],
            (true, ClientState::Completed) => {
                // A retransmitted final response: the ACK was lost, send it again (§17.1.1.2).
                self.ack.clone().map(TxAction::Transmit).into_iter().collect()
            }
            (false, ClientState::Completed) => vec![], // absorbed while Timer K runs
            (invite, _) if code < 200 => {
                self.state = ClientState::Proceeding;
                if invite {
                    self.retransmit_at = None; // Timer A stops on a provisional response
                } else if !self.reliable {
                    self.interval = T2;
                    self.retransmit_at = Some(now + T2);
                }
                vec![TxAction::Deliver(msg.clone())]
            }
            (true, _) if code < 300 => {
                // 2xx: the transaction ends and the TU sends the ACK in the dialog (§13.2.2.4).
                self.state = ClientState::Terminated;
                self.clear();
                vec![TxAction::Deliver(msg.clone())]
            }
            (true, _) => {
                let ack = ack_for(&self.request, msg);
                self.state = ClientState::Completed;
                self.clear();
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { TIMER_D });
                self.ack = Some(ack.clone());
                vec![TxAction::Transmit(ack), TxAction::Deliver(msg.clone())]
            }
            (false, _) => {
                self.state = ClientState::Completed;
                self.clear();
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { T4 });
                vec![TxAction::Deliver(msg.clone())]
            }
        }
    }

    fn clear(&mut self) {
        self.retransmit_at = None;
        self.timeout_at = None;
    }

    /// Fire the timers that are due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<TxAction> {
        let mut out = Vec::new();
        if self.end_at.is_some_and(|t| now >= t) {
            self.state = ClientState::Terminated;
            self.end_at = None;
            return out;
        }
        if self.timeout_at.is_some_and(|t| now >= t) {
            self.state = ClientState::Terminated;
            self.clear();
            out.push(TxAction::TimedOut);
            return out;
        }
        if let Some(at) = self.retransmit_at.filter(|t| now >= *t) {
            out.push(TxAction::Transmit(self.request.clone()));
            // Timer A doubles without bound; Timer E doubles up to T2, and is T2 once
            // a provisional response came (§17.1.1.2, §17.1.2.2).
            self.interval = match (self.invite(), self.state) {
                (true, _) => self.interval * 2,
                (false, ClientState::Proceeding) => T2,
                (false, _) => (self.interval * 2).min(T2),
            };
            self.retransmit_at = Some(at.max(now) + self.interval);
        }
        out
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): the request's Request-URI, top Via,
/// From, Call-ID and Route; the response's To; the CSeq number with method ACK.
pub fn ack_for(request: &[u8], response: &SipMessage) -> Vec<u8> {
    let Ok(req) = SipMessage::parse(request) else { return Vec::new() };
    let uri = match req.start_line() {
        crate::sip::message::StartLine::Request { uri, .. } => uri.clone(),
        _ => return Vec::new(),
    };
    let mut out = format!("ACK {uri} SIP/2.0\r\n");
    if let Some(via) = req.top_via() {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    for r in req.headers("Route") {
        out.push_str(&format!("Route: {r}\r\n"));
    }
    out.push_str("Max-Forwards: 70\r\n");
    for (name, v) in [("From", req.header("From")), ("To", response.header("To")), ("Call-ID", req.header("Call-ID"))] {
        if let Some(v) = v {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    let n = req.cseq().map(|(n, _)| n).unwrap_or(1);
    out.push_str(&format!("CSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n"));
    out.into_bytes()
}

/// Server transaction states (§17.2.1, §17.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Proceeding (INVITE) or Trying/Proceeding (non-INVITE): no final response yet.
    Proceeding,
    Completed,
    /// INVITE only: the ACK for our non-2xx final response came.
    Confirmed,
    Terminated,
}

/// One server transaction.
#[derive(Debug, Clone)]
pub struct ServerTx {
    pub branch: String,
    pub method: String,
    pub state: ServerState,
    reliable: bool,
    /// The last response sent, repeated when the request is retransmitted.
    last: Option<Vec<u8>>,
    /// Timer G.
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer H.
    timeout_at: Option<Instant>,
    /// Timer I or J.
    end_at: Option<Instant>,
}

impl ServerTx {
    /// A transaction for a request just received.
    pub fn new(branch: String, method: String, reliable: bool) -> ServerTx {
        ServerTx {
            branch,
            method,
            state: ServerState::Proceeding,
            reliable,
            last: None,
            retransmit_at: None,
            interval: T1,
            timeout_at: None,
            end_at: None,
        }
    }

    /// True for an INVITE transaction.
    pub fn invite(&self) -> bool {
        is_invite(&self.method)
    }

    /// The next instant a timer of this transaction fires.
    pub fn next_timer(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at].into_iter().flatten().min()
    }

    /// The TU sends a response through the transaction.
    pub fn respond(&mut self, now: Instant, code: u16, bytes: Vec<u8>) -> Vec<TxAction> {
        if matches!(self.state, ServerState::Terminated | ServerState::Confirmed) {
            return vec![];
        }
        if self.state == ServerState::Completed {
            return vec![]; // one final response per transaction
        }
        self.last = Some(bytes.clone());
        if code >= 200 {
            if self.invite() && code < 300 {
                // 2xx ends the INVITE server transaction; the UAS core retransmits it (§13.3.1.4).
                self.state = ServerState::Terminated;
            } else if self.invite() {
                self.state = ServerState::Completed;
                self.retransmit_at = (!self.reliable).then_some(now + T1);
                self.timeout_at = Some(now + 64 * T1);
            } else {
                self.state = ServerState::Completed;
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { 64 * T1 });
            }
        }
        vec![TxAction::Transmit(bytes)]
    }

    /// The request came again, or (for an INVITE) its ACK came.
    pub fn on_request(&mut self, now: Instant, method: &str) -> Vec<TxAction> {
        if method == "ACK" {
            if self.invite() && self.state == ServerState::Completed {
                self.state = ServerState::Confirmed;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.end_at = Some(now + if self.reliable { Duration::ZERO } else { T4 });
            }
            return vec![];
        }
        match self.state {
            ServerState::Proceeding | ServerState::Completed => self.last.clone().map(TxAction::Transmit).into_iter().collect(),
            _ => vec![],
        }
    }

    /// Fire the timers that are due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<TxAction> {
        if self.end_at.is_some_and(|t| now >= t) {
            self.state = ServerState::Terminated;
            self.end_at = None;
            return vec![];
        }
        if self.timeout_at.is_some_and(|t| now >= t) {
            self.state = ServerState::Terminated;
            self.retransmit_at = None;
            self.timeout_at = None;
            return vec![TxAction::NoAck];
        }
        let mut out = Vec::new();
        if let Some(at) = self.retransmit_at.filter(|t| now >= *t) {
            out.extend(self.last.clone().map(TxAction::Transmit));
            self.interval = (self.interval * 2).min(T2);
            self.retransmit_at = Some(at.max(now) + self.interval);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\nCall-ID: c\r\nCSeq: 3 INVITE\r\nContent-Length: 0\r\n\r\n";

    fn resp(code: u16, method: &str) -> SipMessage {
        let text = format!("SIP/2.0 {code} X\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:bob@example.test>;tag=b\r\nCall-ID: c\r\nCSeq: 3 {method}\r\nContent-Length: 0\r\n\r\n");
        SipMessage::parse(text.as_bytes()).unwrap()
    }

    /// Fire timers on virtual time up to `until`; (offset ms, action) pairs.
    fn drive_client(tx: &mut ClientTx, t0: Instant, until: Duration) -> Vec<(u128, TxAction)> {
        let mut out = Vec::new();
        while let Some(at) = tx.next_timer() {
            if at - t0 > until {
                break;
            }
            for a in tx.on_timer(at) {
                out.push(((at - t0).as_millis(), a));
            }
        }
        out
    }

    fn transmits(v: &[(u128, TxAction)]) -> Vec<u128> {
        v.iter().filter(|(_, a)| matches!(a, TxAction::Transmit(_))).map(|(t, _)| *t).collect()
    }

    #[test]
    fn timer_a_doubles_and_timer_b_ends_an_unanswered_invite() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(t0, INVITE.into(), "z9hG4bKa".into(), "INVITE".into(), false);
        let v = drive_client(&mut tx, t0, Duration::from_secs(60));
        assert_eq!(transmits(&v), vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(v.last().unwrap(), &(32000, TxAction::TimedOut));
        assert_eq!(tx.state, ClientState::Terminated);
    }

    #[test]
    fn a_provisional_response_stops_timer_a_but_not_timer_b() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(t0, INVITE.into(), "z9hG4bKa".into(), "INVITE".into(), false);
        tx.on_response(t0 + Duration::from_millis(100), &resp(180, "INVITE"));
        assert_eq!(tx.state, ClientState::Proceeding);
        let v = drive_client(&mut tx, t0, Duration::from_secs(60));
        assert_eq!(v, vec![(32000, TxAction::TimedOut)]);
    }

    #[test]
    fn a_non_2xx_final_is_acked_and_timer_d_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(t0, INVITE.into(), "z9hG4bKa".into(), "INVITE".into(), false);
        let busy = resp(486, "INVITE");
        let acts = tx.on_response(t0, &busy);
        let TxAction::Transmit(ack) = &acts[0] else { panic!("{acts:?}") };
        let ack = String::from_utf8_lossy(ack);
        assert!(ack.starts_with("ACK sip:bob@example.test SIP/2.0\r\n"), "{ack}");
        for want in ["branch=z9hG4bKa", "To: <sip:bob@example.test>;tag=b", "CSeq: 3 ACK", "Route: <sip:127.0.0.1:5060;lr>"] {
            assert!(ack.contains(want), "missing {want}: {ack}");
        }
        assert!(matches!(acts[1], TxAction::Deliver(_)));
        // The 486 again: the ACK again, nothing delivered.
        let again = tx.on_response(t0 + Duration::from_secs(1), &busy);
        assert_eq!(again, vec![TxAction::Transmit(ack.as_bytes().to_vec())]);
        assert_eq!(tx.next_timer(), Some(t0 + TIMER_D));
        assert!(drive_client(&mut tx, t0, Duration::from_secs(60)).is_empty());
        assert_eq!(tx.state, ClientState::Terminated);
    }

    #[test]
    fn a_2xx_terminates_the_invite_client_transaction_at_once() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(t0, INVITE.into(), "z9hG4bKa".into(), "INVITE".into(), false);
        let acts = tx.on_response(t0, &resp(200, "INVITE"));
        assert!(matches!(acts.as_slice(), [TxAction::Deliver(_)]));
        assert_eq!(tx.state, ClientState::Terminated);
        assert_eq!(tx.next_timer(), None);
    }

    #[test]
    fn timer_e_goes_to_t2_in_proceeding_and_timer_k_follows_the_final() {
        let t0 = Instant::now();
        let req = INVITE.replace("INVITE", "MESSAGE");
        let mut tx = ClientTx::new(t0, req.into_bytes(), "z9hG4bKa".into(), "MESSAGE".into(), false);
        assert_eq!(transmits(&drive_client(&mut tx, t0, Duration::from_millis(1600))), vec![500, 1500]);
        tx.on_response(t0 + Duration::from_millis(1600), &resp(100, "MESSAGE"));
        let v = drive_client(&mut tx, t0, Duration::from_millis(10_000));
        assert_eq!(transmits(&v), vec![5600, 9600]);
        let acts = tx.on_response(t0 + Duration::from_secs(10), &resp(200, "MESSAGE"));
        assert!(matches!(acts.as_slice(), [TxAction::Deliver(_)]));
        assert_eq!(tx.next_timer(), Some(t0 + Duration::from_secs(10) + T4));
        assert!(tx.on_response(t0 + Duration::from_secs(11), &resp(200, "MESSAGE")).is_empty());
        drive_client(&mut tx, t0, Duration::from_secs(60));
        assert_eq!(tx.state, ClientState::Terminated);
    }

    #[test]
    fn over_tcp_nothing_is_retransmitted_and_timers_d_and_k_are_zero() {
        let t0 = Instant::now();
        let mut tx = ClientTx::new(t0, INVITE.into(), "z9hG4bKa".into(), "INVITE".into(), true);
        assert_eq!(tx.next_timer(), Some(t0 + 64 * T1), "only Timer B");
        tx.on_response(t0, &resp(603, "INVITE"));
        assert_eq!(tx.next_timer(), Some(t0), "Timer D is zero on a reliable transport");
        let mut nt = ClientTx::new(t0, b"x".to_vec(), "b".into(), "BYE".into(), true);
        nt.on_response(t0, &resp(200, "BYE"));
        assert_eq!(nt.next_timer(), Some(t0), "Timer K is zero on a reliable transport");
    }

    fn drive_server(tx: &mut ServerTx, t0: Instant) -> Vec<(u128, TxAction)> {
        let mut out = Vec::new();
        while let Some(at) = tx.next_timer() {
            for a in tx.on_timer(at) {
                out.push(((at - t0).as_millis(), a));
            }
        }
        out
    }

    #[test]
    fn timer_g_retransmits_a_rejection_until_timer_h() {
        let t0 = Instant::now();
        let mut tx = ServerTx::new("z9hG4bKa".into(), "INVITE".into(), false);
        tx.respond(t0, 180, b"180".to_vec());
        assert_eq!(tx.on_request(t0, "INVITE"), vec![TxAction::Transmit(b"180".to_vec())], "retransmitted INVITE gets the 180");
        tx.respond(t0, 486, b"486".to_vec());
        let v = drive_server(&mut tx, t0);
        assert_eq!(transmits(&v), vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
        assert_eq!(v.last().unwrap(), &(32000, TxAction::NoAck));
    }

    #[test]
    fn the_ack_confirms_and_timer_i_ends_the_transaction() {
        let t0 = Instant::now();
        let mut tx = ServerTx::new("z9hG4bKa".into(), "INVITE".into(), false);
        tx.respond(t0, 603, b"603".to_vec());
        tx.on_request(t0 + Duration::from_millis(700), "ACK");
        assert_eq!(tx.state, ServerState::Confirmed);
        assert_eq!(tx.next_timer(), Some(t0 + Duration::from_millis(700) + T4), "Timer I = T4");
        assert!(drive_server(&mut tx, t0).is_empty());
        assert_eq!(tx.state, ServerState::Terminated);
    }

    #[test]
    fn timer_j_keeps_a_non_invite_answer_for_retransmissions() {
        let t0 = Instant::now();
        let mut tx = ServerTx::new("z9hG4bKb".into(), "BYE".into(), false);
        tx.respond(t0, 200, b"200".to_vec());
        assert_eq!(tx.on_request(t0 + T1, "BYE"), vec![TxAction::Transmit(b"200".to_vec())]);
        assert_eq!(tx.next_timer(), Some(t0 + 64 * T1), "Timer J = 64*T1");
        let mut tcp = ServerTx::new("z9hG4bKc".into(), "BYE".into(), true);
        tcp.respond(t0, 200, b"200".to_vec());
        assert_eq!(tcp.next_timer(), Some(t0), "Timer J is zero on a reliable transport");
    }
}
