//! Calls: the INVITE dialog (RFC 3261 §12-15) of the reference client, as data plus the
//! functions that build its requests and responses. The UA (`ua.rs`) owns the transactions
//! and decides when these run.

use crate::sip::message::{addr_uri, header_param, same_header, split_list, SipMessage};
use crate::sip::sdp::Session;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Which side of the call we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Caller,
    Callee,
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// INVITE sent or received, no final response yet.
    Early,
    /// 2xx sent or received.
    Confirmed,
    /// Ended: rejected, cancelled, hung up or timed out.
    Terminated,
}

/// A 2xx the callee retransmits until the ACK comes (§13.3.1.4).
#[derive(Debug, Clone)]
pub struct Pending2xx {
    pub bytes: Vec<u8>,
    pub to: SocketAddr,
    pub next_at: Instant,
    pub interval: Duration,
    pub give_up_at: Instant,
}

/// One call and its dialog. A presence subscription's dialog uses the same record.
#[derive(Debug, Clone)]
pub struct Call {
    pub call_id: String,
    pub role: Role,
    pub state: CallState,
    /// Our From (caller) or To (callee) header value, with our tag.
    pub local: String,
    /// The peer's header value, with its tag once known.
    pub remote: String,
    /// Where in-dialog requests go: the peer's Contact.
    pub remote_target: Option<String>,
    /// Record-Route, in the order our requests must carry it as Route.
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    /// The INVITE as sent (caller; CANCEL copies it) or as received (callee).
    pub invite: Vec<u8>,
    /// The client transaction of our INVITE.
    pub invite_tx: Option<u64>,
    /// Our offer (caller) or the peer's (callee).
    pub offer: Option<Session>,
    /// The ACK for the 2xx, resent when the 2xx is retransmitted.
    pub ack: Option<Vec<u8>>,
    pub pending_2xx: Option<Pending2xx>,
    /// Where our responses go (callee).
    pub peer: Option<SocketAddr>,
}

/// The `Contact` URI of a message, without angle brackets and parameters.
pub fn contact_uri(msg: &SipMessage) -> Option<String> {
    msg.header("Contact").map(|c| addr_uri(&c).to_string())
}

fn tag_of(value: &str) -> Option<String> {
    header_param(value, "tag")
}

impl Call {
    /// A dialog in its early state: the rest is learned as responses and requests come.
    pub fn new(call_id: String, role: Role, local: String, remote: String, invite: Vec<u8>) -> Call {
        Call {
            call_id,
            role,
            state: CallState::Early,
            local,
            remote,
            remote_target: None,
            route_set: Vec::new(),
            local_cseq: if role == Role::Caller { 1 } else { 0 },
            invite,
            invite_tx: None,
            offer: None,
            ack: None,
            pending_2xx: None,
            peer: None,
        }
    }

    /// Our tag.
    pub fn local_tag(&self) -> Option<String> {
        tag_of(&self.local)
    }

    /// Learn the peer's tag, target and route set from a response to our INVITE (§12.1.2).
    pub fn learn_from_response(&mut self, resp: &SipMessage) {
        if let Some(to) = resp.header("To") {
            if tag_of(&to).is_some() {
                self.remote = to;
            }
        }
        if let Some(c) = contact_uri(resp) {
            self.remote_target = Some(c);
        }
        // The caller's route set is the Record-Route of the response, reversed.
        let rr: Vec<String> = resp.headers("Record-Route").iter().flat_map(|v| split_list(v)).collect();
        if !rr.is_empty() {
            self.route_set = rr.into_iter().rev().collect();
        }
    }

    /// A request inside the dialog (§12.2.1.1): BYE, a refreshing SUBSCRIBE, or the ACK for a
    /// 2xx (same CSeq number). `extra` holds more header lines, each ending in CRLF.
    pub fn in_dialog(&mut self, method: &str, via: &str, contact: &str, extra: &str) -> Vec<u8> {
        let cseq = if method == "ACK" {
            self.local_cseq
        } else {
            self.local_cseq += 1;
            self.local_cseq
        };
        let target = self.remote_target.clone().unwrap_or_else(|| addr_uri(&self.remote).to_string());
        let mut out = format!("{method} {target} SIP/2.0\r\nVia: {via}\r\n");
        for r in &self.route_set {
            out.push_str(&format!("Route: {r}\r\n"));
        }
        let (from, to) = (&self.local, &self.remote);
        out.push_str(&format!(
            "Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <{contact}>\r\n{extra}Content-Length: 0\r\n\r\n",
            self.call_id
        ));
        out.into_bytes()
    }

    /// CANCEL for our pending INVITE (§9.1): the INVITE's Request-URI, top Via, From, To,
    /// Call-ID, Route and CSeq number.
    pub fn cancel(&self) -> Option<Vec<u8>> {
        let inv = SipMessage::parse(&self.invite).ok()?;
        let uri = match inv.start_line() {
            crate::sip::message::StartLine::Request { uri, .. } => uri.clone(),
            _ => return None,
        };
        let mut out = format!("CANCEL {uri} SIP/2.0\r\nVia: {}\r\n", inv.top_via()?);
        for r in inv.headers("Route") {
            out.push_str(&format!("Route: {r}\r\n"));
        }
        let n = inv.cseq()?.0;
        out.push_str(&format!(
            "Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {n} CANCEL\r\nContent-Length: 0\r\n\r\n",
            inv.header("From")?,
            inv.header("To")?,
            self.call_id
        ));
        Some(out.into_bytes())
    }
}

/// A response to `req` with our tag on To, optional Contact and SDP body (§8.2.6, §12.1.1).
pub fn response(req: &SipMessage, code: u16, reason: &str, to_tag: &str, contact: Option<&str>, sdp: Option<&str>) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for h in req.header_lines() {
        let name = req.name_of(h);
        let value = req.value_of(h);
        if ["Via", "Record-Route", "From", "Call-ID", "CSeq"].iter().any(|n| same_header(name, n)) {
            out.push_str(&format!("{name}: {value}\r\n"));
        } else if same_header(name, "To") {
            let value = if tag_of(&value).is_none() && code > 100 { format!("{value};tag={to_tag}") } else { value };
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if let Some(c) = contact {
        out.push_str(&format!("Contact: <{c}>\r\n"));
    }
    out.push_str(&format!("Server: sixpac/{}\r\n", env!("CARGO_PKG_VERSION")));
    match sdp {
        Some(body) => out.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len())),
        None => out.push_str("Content-Length: 0\r\n\r\n"),
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_route_lists_split_outside_brackets() {
        assert_eq!(split_list("<sip:a;lr>, <sip:b,c;lr>"), vec!["<sip:a;lr>", "<sip:b,c;lr>"]);
    }

    #[test]
    fn the_callers_route_set_is_the_record_route_reversed() {
        let resp = SipMessage::parse(b"SIP/2.0 200 OK\r\nRecord-Route: <sip:p2;lr>, <sip:p1;lr>\r\nTo: <sip:bob@x>;tag=b\r\nContact: <sip:bob@1.2.3.4:5>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut call = Call::new("c".into(), Role::Caller, "<sip:alice@x>;tag=a".into(), "<sip:bob@x>".into(), vec![]);
        call.learn_from_response(&resp);
        assert_eq!(call.route_set, vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
        let bye = String::from_utf8(call.in_dialog("BYE", "SIP/2.0/UDP h;branch=z9hG4bKx", "sip:alice@h", "")).unwrap();
        assert!(bye.starts_with("BYE sip:bob@1.2.3.4:5 SIP/2.0\r\n"), "{bye}");
        assert!(bye.contains("Route: <sip:p1;lr>\r\nRoute: <sip:p2;lr>\r\n") && bye.contains("To: <sip:bob@x>;tag=b") && bye.contains("CSeq: 2 BYE"), "{bye}");
    }
}
