//! Which actor a recorded connection belongs to, from the wire alone.
//!
//! Every actor has accounts of its own, so the account a connection authenticates as names
//! its actor, whichever program made it (the reference client or a client under test): the
//! SASL identity or the JID the server binds on XMPP; the Digest username, else the From of
//! its requests or the To of its responses, on SIP. A connection's earlier frames (stream
//! header, features, the first unauthenticated REGISTER) belong to it too. See
//! docs/decisions/0007-attribution-by-account.md.

use super::frame::{Direction, Frame, Proto};
use crate::sip::message::addr_uri;
use crate::sip::SipMessage;
use crate::wire::Transport;
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use std::collections::HashMap;
use std::net::SocketAddr;

/// How strongly a frame names an account: authentication beats an address in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    /// The user part of a To or From header.
    Header,
    /// A SASL identity, a bound JID's user, a Digest username.
    Authenticated,
    /// A bound full JID (`user/resource`): tells resources of one account apart.
    Bound,
}

/// One leg of an actor as the wire showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub actor: String,
    pub proto: Proto,
    pub transport: Transport,
    /// The client's own address.
    pub client: SocketAddr,
    /// The tap's socket towards the server for it, if any.
    pub upstream: Option<SocketAddr>,
}

/// The actor name of a connection that belongs to another scenario (no actor has an empty name).
pub const FOREIGN: &str = "";

/// Connections attributed to actors.
#[derive(Debug, Default)]
pub struct Attribution {
    by_conn: HashMap<u64, String>,
    /// Each attributed connection's leg, in order of first frame.
    pub legs: Vec<Leg>,
}

impl Attribution {
    /// The actor a connection belongs to.
    pub fn actor_of(&self, conn: u64) -> Option<&str> {
        self.by_conn.get(&conn).map(String::as_str)
    }

    /// The frames of attributed connections, in recorded order.
    pub fn frames<'a>(&self, frames: &'a [Frame]) -> Vec<&'a Frame> {
        frames.iter().filter(|f| self.by_conn.contains_key(&f.conn)).collect()
    }
}

/// Attribution kept up to date as frames arrive, for waits that look at the wire while a
/// scenario runs.
#[derive(Debug, Default)]
pub struct Attributor {
    accounts: Vec<(String, String)>,
    /// Accounts of scenarios running beside this one: their connections are not ours, even
    /// before anything of ours shows.
    foreign: Vec<String>,
    best: HashMap<u64, (Strength, String)>,
    /// Connections in order of first frame, with that frame's leg facts.
    first: Vec<(u64, Proto, Transport, SocketAddr, Option<SocketAddr>)>,
}

impl Attributor {
    /// Nothing seen yet; `accounts` maps account user names (compared without case, as XMPP
    /// and Digest do), and `user/resource` for actors that share an account, to actors.
    pub fn new(accounts: Vec<(String, String)>) -> Attributor {
        Attributor { accounts, ..Default::default() }
    }

    /// Connections that authenticate as one of `users` belong to another scenario, unless
    /// the user is one of this scenario's own accounts (those are looked up first).
    pub fn with_foreign(mut self, users: Vec<String>) -> Attributor {
        self.foreign = users;
        self
    }

    /// Take in more frames, in recorded order.
    pub fn feed(&mut self, frames: &[Frame]) {
        for f in frames {
            if !self.first.iter().any(|(c, ..)| *c == f.conn) {
                self.first.push((f.conn, f.proto, f.transport, f.client, f.upstream));
            }
            for (strength, user) in evidence(f) {
                let actor = match self.accounts.iter().find(|(u, _)| u.eq_ignore_ascii_case(&user)) {
                    Some((_, actor)) => actor,
                    None if self.foreign.iter().any(|u| u.eq_ignore_ascii_case(&user)) => FOREIGN,
                    None => continue,
                };
                let slot = self.best.entry(f.conn).or_insert((strength, actor.to_string()));
                if strength > slot.0 {
                    *slot = (strength, actor.to_string());
                }
            }
        }
    }

    /// The actor a connection belongs to, so far (`FOREIGN`: another scenario's).
    pub fn actor_of(&self, conn: u64) -> Option<&str> {
        self.best.get(&conn).map(|(_, a)| a.as_str())
    }

    /// Whether the wire has shown a connection to be one of this scenario's actors'.
    pub fn is_ours(&self, conn: u64) -> bool {
        self.actor_of(conn).is_some_and(|a| a != FOREIGN)
    }

    /// The actor a JID names: by `user/resource`, else by the account's user (compared
    /// without case).
    pub fn actor_of_jid(&self, jid: &str) -> Option<&str> {
        let (user, rest) = jid.split_once('@')?;
        let full = rest.split_once('/').map(|(_, r)| format!("{user}/{r}"));
        let find = |k: &str| self.accounts.iter().find(|(u, _)| u.eq_ignore_ascii_case(k)).map(|(_, a)| a.as_str());
        full.as_deref().and_then(find).or_else(|| find(user))
    }

    /// What the frames so far attribute.
    pub fn attribution(&self) -> Attribution {
        let mut out = Attribution::default();
        for (conn, proto, transport, client, upstream) in &self.first {
            if let Some(actor) = self.actor_of(*conn).filter(|_| self.is_ours(*conn)).map(str::to_string) {
                let leg = Leg { actor: actor.clone(), proto: *proto, transport: *transport, client: *client, upstream: *upstream };
                if !out.legs.contains(&leg) {
                    out.legs.push(leg);
                }
                out.by_conn.insert(*conn, actor);
            }
        }
        out
    }
}

/// The account users a frame names, with how strongly.
fn evidence(f: &Frame) -> Vec<(Strength, String)> {
    match f.proto {
        Proto::Xmpp => xmpp_evidence(f),
        Proto::Sip => sip_evidence(f),
    }
}

fn xmpp_evidence(f: &Frame) -> Vec<(Strength, String)> {
    let text = String::from_utf8_lossy(&f.bytes);
    let text = text.trim_start();
    let mut out = Vec::new();
    match f.dir {
        // <auth mechanism='…'>base64</auth>
        Direction::ToServer if text.starts_with("<auth") => {
            let mechanism = attr(text, "mechanism").unwrap_or_default();
            let payload = text.split_once('>').map(|(_, r)| r).and_then(|r| r.split_once("</auth>")).map(|(p, _)| p.trim());
            if let Some(user) = payload.and_then(|p| B64.decode(p).ok()).and_then(|b| sasl_user(&mechanism, &b)) {
                out.push((Strength::Authenticated, user));
            }
        }
        // The bind result: <jid>user@domain/resource</jid>
        Direction::ToClient if text.starts_with("<iq") && text.contains("urn:ietf:params:xml:ns:xmpp-bind") => {
            if let Some(jid) = text.split_once("<jid>").and_then(|(_, r)| r.split_once("</jid>")).map(|(j, _)| j) {
                if let Some((user, rest)) = jid.split_once('@') {
                    out.push((Strength::Authenticated, user.to_string()));
                    if let Some((_, resource)) = rest.split_once('/') {
                        out.push((Strength::Bound, format!("{user}/{resource}")));
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// The identity a SASL initial response names: PLAIN's authcid, SCRAM's `n=`.
fn sasl_user(mechanism: &str, payload: &[u8]) -> Option<String> {
    if mechanism == "PLAIN" {
        let parts: Vec<&[u8]> = payload.split(|b| *b == 0).collect();
        return parts.get(1).map(|u| String::from_utf8_lossy(u).into_owned());
    }
    if mechanism.starts_with("SCRAM-") {
        let text = String::from_utf8_lossy(payload);
        // gs2 header (two fields), then n=user,r=nonce
        let bare = text.splitn(3, ',').nth(2)?;
        let user = bare.split(',').find_map(|a| a.strip_prefix("n="))?;
        return Some(user.replace("=2C", ",").replace("=3D", "="));
    }
    None
}

/// A quoted attribute's value in an element's start tag.
fn attr(text: &str, name: &str) -> Option<String> {
    let tag = text.split_once('>').map(|(t, _)| t).unwrap_or(text);
    for q in ['\'', '"'] {
        if let Some((_, rest)) = tag.split_once(&format!("{name}={q}")) {
            return rest.split_once(q).map(|(v, _)| v.to_string());
        }
    }
    None
}

fn sip_evidence(f: &Frame) -> Vec<(Strength, String)> {
    let Ok(msg) = SipMessage::parse(&f.bytes) else { return Vec::new() };
    let user_of = |header: &str| msg.header(header).and_then(|v| uri_user(addr_uri(&v)));
    let mut out = Vec::new();
    let request = msg.method().is_some();
    match (f.dir, request) {
        (Direction::ToServer, true) => {
            for h in ["Authorization", "Proxy-Authorization"] {
                for v in msg.headers(h) {
                    let params = crate::sip::digest::auth_params(v.trim_start().strip_prefix("Digest").unwrap_or(&v));
                    if let Some((_, u)) = params.into_iter().find(|(k, _)| k.eq_ignore_ascii_case("username")) {
                        out.push((Strength::Authenticated, u));
                    }
                }
            }
            out.extend(user_of("From").map(|u| (Strength::Header, u)));
        }
        (Direction::ToServer, false) => out.extend(user_of("To").map(|u| (Strength::Header, u))),
        (Direction::ToClient, true) => out.extend(user_of("To").map(|u| (Strength::Header, u))),
        (Direction::ToClient, false) => out.extend(user_of("From").map(|u| (Strength::Header, u))),
    }
    out
}

/// The user part of a SIP URI (`sip:alice@example.test;…` -> `alice`).
fn uri_user(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("sips:").or_else(|| uri.strip_prefix("sip:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.split(';').next().unwrap_or(user).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(conn: u64, proto: Proto, dir: Direction, text: &str) -> Frame {
        Frame::for_test(0, conn, proto, dir, text)
    }

    fn attribute(frames: &[Frame], accounts: &[(String, String)]) -> Attribution {
        let mut a = Attributor::new(accounts.to_vec());
        a.feed(frames);
        a.attribution()
    }

    fn accounts() -> Vec<(String, String)> {
        vec![("alice_x1".into(), "alice".into()), ("bob_y2".into(), "bob".into())]
    }

    #[test]
    fn two_resources_of_one_account_are_told_apart_by_the_bound_jid() {
        let keys: Vec<(String, String)> = vec![
            ("juliet_z/sixpac".into(), "juliet".into()),
            ("juliet_z/phone".into(), "juliet_phone".into()),
            ("juliet_z".into(), "juliet".into()),
        ];
        let scram = B64.encode(b"n,,n=juliet_z,r=abc");
        let auth = format!("<auth mechanism='SCRAM-SHA-1' xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{scram}</auth>");
        let bound = |res: &str| format!("<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>juliet_z@d/{res}</jid></bind></iq>");
        let frames = vec![
            frame(1, Proto::Xmpp, Direction::ToServer, &auth),
            frame(2, Proto::Xmpp, Direction::ToServer, &auth),
            frame(2, Proto::Xmpp, Direction::ToClient, &bound("phone")),
            frame(1, Proto::Xmpp, Direction::ToClient, &bound("sixpac")),
        ];
        let a = attribute(&frames, &keys);
        assert_eq!((a.actor_of(1), a.actor_of(2)), (Some("juliet"), Some("juliet_phone")), "the bound JID outranks the SASL identity");
        let mut live = Attributor::new(keys);
        live.feed(&frames);
        assert_eq!(live.actor_of_jid("juliet_z@d/phone"), Some("juliet_phone"));
        assert_eq!(live.actor_of_jid("juliet_z@d/laptop"), Some("juliet"), "another resource: the account's owner");
    }

    #[test]
    fn sasl_identities_and_bound_jids_name_their_connection_from_its_first_frame() {
        let plain = B64.encode(b"\0alice_x1\0secret");
        let scram = B64.encode(b"n,,n=bob_y2,r=abc");
        let frames = vec![
            frame(1, Proto::Xmpp, Direction::ToServer, "<?xml version='1.0'?><stream:stream to='example.test'>"),
            frame(1, Proto::Xmpp, Direction::ToServer, &format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>")),
            frame(2, Proto::Xmpp, Direction::ToServer, &format!("\n <auth mechanism=\"SCRAM-SHA-1\" xmlns='x'>{scram}</auth>")),
            frame(3, Proto::Xmpp, Direction::ToClient, "<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>Alice_X1@example.test/r</jid></bind></iq>"),
            frame(4, Proto::Xmpp, Direction::ToServer, "<stream:stream>"),
        ];
        let a = attribute(&frames, &accounts());
        assert_eq!((a.actor_of(1), a.actor_of(2), a.actor_of(3), a.actor_of(4)), (Some("alice"), Some("bob"), Some("alice"), None));
        assert_eq!(a.frames(&frames).len(), 4, "the stream header before the auth belongs to its connection");
        assert_eq!(a.legs.iter().map(|l| l.actor.as_str()).collect::<Vec<_>>(), ["alice", "bob", "alice"]);
    }

    #[test]
    fn a_digest_username_outweighs_a_from_header_and_responses_name_their_to() {
        let reg = "REGISTER sip:example.test SIP/2.0\r\nFrom: <sip:bob_y2@example.test>;tag=1\r\nTo: <sip:bob_y2@example.test>\r\nAuthorization: Digest username=\"alice_x1\", realm=\"example.test\"\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nContent-Length: 0\r\n\r\n";
        let ringing = "SIP/2.0 180 Ringing\r\nFrom: <sip:alice_x1@example.test>;tag=1\r\nTo: <sip:bob_y2@example.test>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let notify = "NOTIFY sip:alice_x1@127.0.0.1:5 SIP/2.0\r\nFrom: <sip:bob_y2@example.test>;tag=1\r\nTo: <sip:alice_x1@example.test>;tag=2\r\nCall-ID: n\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n";
        let frames = vec![
            frame(1, Proto::Sip, Direction::ToServer, reg),
            frame(2, Proto::Sip, Direction::ToServer, ringing),
            frame(3, Proto::Sip, Direction::ToClient, notify),
            frame(4, Proto::Sip, Direction::ToServer, "garbage"),
        ];
        let a = attribute(&frames, &accounts());
        assert_eq!((a.actor_of(1), a.actor_of(2), a.actor_of(3), a.actor_of(4)), (Some("alice"), Some("bob"), Some("alice"), None));
    }

    #[test]
    fn scram_names_unescape_and_unknown_mechanisms_name_no_one() {
        assert_eq!(sasl_user("SCRAM-SHA-256", b"n,,n=a=2Cb=3Dc,r=x"), Some("a,b=c".into()));
        assert_eq!(sasl_user("SCRAM-SHA-1", b"garbage"), None);
        assert_eq!(sasl_user("EXTERNAL", b"alice"), None);
        assert_eq!(sasl_user("PLAIN", b"authz\0alice\0pw"), Some("alice".into()));
    }
}
