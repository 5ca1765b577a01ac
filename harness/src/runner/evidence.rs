//! The expectation engine: `receives` and `receives nothing` steps judged on what the taps
//! recorded on an actor's connections, whichever client plays the actor.
//!
//! A frame counts as received by an actor when a tap forwarded it towards a connection that
//! the wire attributes to that actor (see `trace::attribution`). A `receives` step takes the
//! first such frame, recorded since the scenario began, that matches and that no earlier
//! `receives` took; the retransmissions of a SIP datagram it took are taken with it.

use crate::scenario::matching::{match_sip, match_xml, parse_xml_pattern};
use crate::scenario::Wire;
use crate::sip::SipMessage;
use crate::trace::attribution::Attributor;
use crate::trace::frame::{Direction, Frame, FrameKind, Proto, Recorder, Transport};
use crate::xml::{self, Element};
use std::collections::HashSet;
use std::sync::Arc;

/// A parsed pattern, ready to test frames against.
pub enum Pattern {
    Xml(Element),
    Sip(String),
    /// `{any}` alone: every frame (for `receives nothing`).
    Any,
}

impl Pattern {
    /// Compile `text` for `wire`, or say why it cannot be.
    pub fn new(wire: Wire, text: &str) -> Result<Pattern, String> {
        if text.trim() == crate::scenario::matching::ANY {
            return Ok(Pattern::Any);
        }
        Ok(match wire {
            Wire::Xmpp => Pattern::Xml(parse_xml_pattern(text)?),
            Wire::Sip => Pattern::Sip(text.to_string()),
        })
    }

    /// Whether a frame matches, or why not.
    pub fn test(&self, f: &Frame) -> Result<(), String> {
        match self {
            Pattern::Xml(want) => {
                let el = xml::parse(&f.bytes, &xml::client_stream_scope(), false).map_err(|e| e.to_string())?;
                match_xml(want, &el)
            }
            Pattern::Sip(want) => {
                let m = SipMessage::parse(&f.bytes).map_err(|e| e.to_string())?;
                match_sip(want, &m)
            }
            Pattern::Any => Ok(()),
        }
    }
}

/// What the taps recorded for one scenario, and which arrivals `receives` steps took.
pub struct Evidence {
    recorder: Arc<Recorder>,
    /// The recorder's length when the scenario began.
    first: usize,
    frames: Vec<Frame>,
    cast: Attributor,
    /// Sequence numbers of the arrivals `receives` steps took (with their retransmissions).
    taken: HashSet<u64>,
    /// Bytes of taken SIP datagrams, per connection: a retransmission that comes later is
    /// taken as it is recorded.
    taken_datagrams: HashSet<(u64, Vec<u8>)>,
    /// The last frame a `receives` took, per actor and wire (true: SIP): where "next" starts.
    last_taken: std::collections::HashMap<(String, bool), u64>,
    /// The last frame recorded when each actor's connect ended.
    connected: std::collections::HashMap<String, u64>,
    /// Frames `newly_attributed` has handed out.
    handed: HashSet<u64>,
}

/// How far one wait has looked: frames it already tested need no second test, since nothing
/// is taken while it waits.
#[derive(Debug, Default)]
pub struct Cursor(usize);

impl Evidence {
    /// Watch frames recorded from now on; `accounts` maps account users to actor names, and
    /// `foreign` names the accounts of scenarios that may run beside this one (this one's
    /// own among them do no harm: they are its own).
    pub fn new(recorder: Arc<Recorder>, accounts: Vec<(String, String)>, foreign: Vec<String>) -> Evidence {
        let first = recorder.len();
        Evidence { recorder, first, frames: Vec::new(), cast: Attributor::new(accounts).with_foreign(foreign), taken: HashSet::new(), taken_datagrams: HashSet::new(), last_taken: Default::default(), connected: Default::default(), handed: HashSet::new() }
    }

    /// Take in what the taps recorded since the last look.
    fn refresh(&mut self) {
        let new = self.recorder.frames_from(self.first + self.frames.len());
        self.cast.feed(&new);
        for f in &new {
            if f.transport == Transport::Udp && self.taken_datagrams.contains(&(f.conn, f.bytes.clone())) {
                self.taken.insert(f.seq);
            }
        }
        self.frames.extend(new);
    }

    /// Every frame recorded since the scenario began, and whose connections they are.
    pub fn finish(mut self) -> (Vec<Frame>, crate::trace::attribution::Attribution) {
        self.refresh();
        let cast = self.cast.attribution();
        (self.frames, cast)
    }

    /// The scenario's frames whose actor the wire has shown since the last call: each once,
    /// and never another scenario's.
    pub fn newly_attributed(&mut self) -> Vec<Frame> {
        self.refresh();
        let ours: Vec<Frame> = self
            .frames
            .iter()
            .filter(|f| !self.handed.contains(&f.seq) && self.cast.is_ours(f.conn))
            .cloned()
            .collect();
        self.handed.extend(ours.iter().map(|f| f.seq));
        ours
    }

    /// Frames a tap forwarded to `actor` on `wire` that no `receives` took yet.
    fn arrivals<'a>(&'a self, actor: &'a str, wire: Wire, from: usize) -> impl Iterator<Item = &'a Frame> + 'a {
        self.frames[from.min(self.frames.len())..]
            .iter()
            .filter(move |f| delivered(f, wire) && !self.taken.contains(&f.seq) && self.cast.actor_of(f.conn) == Some(actor))
    }

    /// The first untaken arrival matching that this wait has not tested yet, if any (after
    /// looking at new frames). A frame whose connection is not attributed yet is left for a
    /// later look: its account may still show.
    pub fn find(&mut self, actor: &str, wire: Wire, pattern: &Pattern, cursor: &mut Cursor) -> Option<Frame> {
        self.refresh();
        let from = cursor.0;
        let found = self.arrivals(actor, wire, from).find(|f| pattern.test(f).is_ok()).cloned();
        // Tested up to the first delivered frame still without an actor (it may yet be ours).
        cursor.0 = self.frames[from.min(self.frames.len())..]
            .iter()
            .position(|f| delivered(f, wire) && self.cast.actor_of(f.conn).is_none())
            .map_or(self.frames.len(), |p| from + p);
        found
    }

    /// The next arrival for `actor` on `wire`: the first untaken one after the last frame a
    /// `receives` took there and after the actor's connect. What the client does by itself is
    /// passed over: stream negotiation, requests it answers (an iq get or set) and results to
    /// its own requests, unless the pattern is an iq; the echo of its own presence, unless the
    /// pattern is a presence. None while there is none yet, or while a frame before it has no
    /// actor yet (it may be the actor's).
    pub fn next_arrival(&mut self, actor: &str, wire: Wire, pattern: &Pattern) -> Option<Frame> {
        self.refresh();
        let key = (actor.to_string(), wire == Wire::Sip);
        let after = self.last_taken.get(&key).copied().unwrap_or(0).max(self.connected.get(actor).copied().unwrap_or(0));
        let wanted = match pattern {
            Pattern::Xml(e) => e.local_name().to_string(),
            Pattern::Sip(_) | Pattern::Any => String::new(),
        };
        for f in self.frames.iter().filter(|f| f.seq > after && delivered(f, wire) && !self.taken.contains(&f.seq)) {
            match self.cast.actor_of(f.conn) {
                None => return None,
                Some(a) if a != actor => continue,
                Some(_) if f.proto == Proto::Xmpp && self.by_the_client(f, actor, &wanted) => continue,
                Some(_) => return Some(f.clone()),
            }
        }
        None
    }

    /// Whether an XMPP arrival is the client's own business, which `order: next` passes over
    /// unless the pattern asks for that kind of element (`wanted`).
    fn by_the_client(&self, f: &Frame, actor: &str, wanted: &str) -> bool {
        let Ok(e) = xml::parse(&f.bytes, &xml::client_stream_scope(), true) else { return false };
        let name = e.local_name();
        if name == wanted {
            return false;
        }
        match name {
            "message" => false,
            "iq" => true,
            "presence" => e.attr("from").and_then(|j| self.cast.actor_of_jid(j)) == Some(actor),
            // Stream features, SASL, TLS: negotiation.
            _ => true,
        }
    }

    /// The actor's connect step ended: what arrived until now was its business, not the
    /// scenario's (`order: next` starts after it).
    pub fn connected(&mut self, actor: &str) {
        self.refresh();
        let last = self.frames.last().map_or(0, |f| f.seq);
        self.connected.insert(actor.to_string(), last);
    }

    /// When (on the frames' clock) the latest frame of the scenario's actors was recorded.
    pub fn last_ours_at(&mut self) -> Option<std::time::Duration> {
        self.refresh();
        self.frames.iter().rev().find(|f| self.cast.is_ours(f.conn)).map(|f| f.at)
    }

    /// The actors of `still` that saw `gone`'s presence and have not yet been told it went
    /// (its unavailable presence, which the server sends everyone it sent presence to), on
    /// an XMPP stream still open. Teardown waits for them, so that who hears of a departure
    /// before closing does not depend on how busy the server is.
    pub fn not_told_of_departure(&mut self, gone: &str, still: &[&str]) -> Vec<String> {
        self.refresh();
        let mut out = Vec::new();
        for &b in still {
            let mut waiting = false;
            for f in self.frames.iter().filter(|f| f.proto == Proto::Xmpp && self.cast.actor_of(f.conn) == Some(b)) {
                match (&f.kind, f.dir) {
                    (FrameKind::XmppClose | FrameKind::Closed(_), _) => waiting = false,
                    (FrameKind::XmppElement, Direction::ToClient) => {
                        let Ok(e) = xml::parse(&f.bytes, &xml::client_stream_scope(), true) else { continue };
                        if e.local_name() == "presence" && e.attr("from").and_then(|j| self.cast.actor_of_jid(j)) == Some(gone) && e.attr("type").is_none_or(|t| t == "unavailable") {
                            waiting = e.attr("type").is_none();
                        }
                    }
                    _ => {}
                }
            }
            if waiting {
                out.push(b.to_string());
            }
        }
        out
    }

    /// Mark an arrival as taken by a `receives` step, and its retransmissions with it.
    pub fn take(&mut self, f: &Frame) {
        if let Some(actor) = self.cast.actor_of(f.conn) {
            let key = (actor.to_string(), f.proto == Proto::Sip);
            let last = self.last_taken.entry(key).or_insert(0);
            *last = (*last).max(f.seq);
        }
        self.taken.insert(f.seq);
        if f.transport == Transport::Udp {
            for g in self.frames.iter().filter(|g| g.conn == f.conn && g.bytes == f.bytes) {
                self.taken.insert(g.seq);
            }
            self.taken_datagrams.insert((f.conn, f.bytes.clone()));
        }
    }

    /// What the wire showed of an actor so far, as `${…}` values: `full_jid` (the JID its
    /// server bound), `contact` (the Contact URI of its latest REGISTER), `sip_addr` (its SIP
    /// leg's address).
    pub fn wire_values(&mut self, actor: &str) -> Vec<(&'static str, String)> {
        self.refresh();
        let (mut full_jid, mut contact, mut sip_addr) = (None, None, None);
        for f in self.frames.iter().filter(|f| self.cast.actor_of(f.conn) == Some(actor)) {
            match (f.proto, f.dir) {
                (Proto::Xmpp, Direction::ToClient) => {
                    let text = String::from_utf8_lossy(&f.bytes);
                    if text.contains("urn:ietf:params:xml:ns:xmpp-bind") {
                        if let Some((jid, _)) = text.split_once("<jid>").and_then(|(_, r)| r.split_once("</jid>")) {
                            full_jid = Some(jid.to_string());
                        }
                    }
                }
                (Proto::Sip, Direction::ToServer) => {
                    sip_addr = Some(f.client.to_string());
                    if let Ok(m) = SipMessage::parse(&f.bytes) {
                        if m.method() == Some("REGISTER") {
                            if let Some(c) = m.header("Contact") {
                                contact = Some(crate::sip::message::addr_uri(&c).to_string());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        [("full_jid", full_jid), ("contact", contact), ("sip_addr", sip_addr)].into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
    }

    /// The `seq` of the latest untaken arrivals, which a failure message shows.
    pub fn near_miss_seqs(&self, actor: &str, wire: Wire) -> Vec<u64> {
        let all: Vec<&Frame> = self.arrivals(actor, wire, 0).collect();
        all.iter().rev().take(3).map(|f| f.seq).collect()
    }

    /// The latest untaken arrivals and why each does not match, for a failure message.
    pub fn near_misses(&self, actor: &str, wire: Wire, pattern: &Pattern) -> String {
        let all: Vec<&Frame> = self.arrivals(actor, wire, 0).collect();
        let lines: Vec<String> = all
            .iter()
            .rev()
            .take(3)
            .map(|f| format!("  {} -- {}", summary(f), pattern.test(f).err().unwrap_or_default()))
            .collect();
        if lines.is_empty() {
            " Nothing else arrived.".into()
        } else {
            format!(" Latest unmatched arrivals:\n{}", lines.join("\n"))
        }
    }
}

/// Whether a frame is a message a tap forwarded to a client on `wire`.
fn delivered(f: &Frame, wire: Wire) -> bool {
    let proto = match wire {
        Wire::Sip => Proto::Sip,
        Wire::Xmpp => Proto::Xmpp,
    };
    f.dir == Direction::ToClient && f.proto == proto && matches!(f.kind, FrameKind::Sip | FrameKind::XmppElement)
}

/// One line that names a frame: a SIP start line, or the XML as received (shortened).
pub fn summary(f: &Frame) -> String {
    let text = String::from_utf8_lossy(&f.bytes);
    let text = text.trim();
    match f.proto {
        Proto::Sip => text.lines().next().unwrap_or("").trim_end().to_string(),
        Proto::Xmpp if text.chars().count() > 300 => format!("{}…", text.chars().take(300).collect::<String>()),
        Proto::Xmpp => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::frame::Origin;

    fn origin(conn: u64, proto: Proto, transport: Transport) -> Origin {
        let addr = |p: u16| format!("127.0.0.1:{p}").parse().unwrap();
        Origin { server: "s".into(), proto, transport, conn, client: addr(40000 + conn as u16), tap: addr(5060), upstream: None }
    }

    const REG: &str = "REGISTER sip:d SIP/2.0\r\nFrom: <sip:alice_1@d>;tag=1\r\nTo: <sip:alice_1@d>\r\nCall-ID: r\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
    const MSG: &str = "MESSAGE sip:alice_1@127.0.0.1:5 SIP/2.0\r\nFrom: <sip:bob_2@d>;tag=2\r\nTo: <sip:alice_1@d>\r\nCall-ID: m\r\nCSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi";

    #[test]
    fn a_receive_takes_an_arrival_once_with_its_retransmissions_and_only_for_its_actor() {
        let rec = Arc::new(Recorder::new());
        let mut ev = Evidence::new(rec.clone(), vec![("alice_1".into(), "alice".into()), ("bob_2".into(), "bob".into())], Vec::new());
        let o = origin(1, Proto::Sip, Transport::Udp);
        rec.record(&o, Direction::ToServer, FrameKind::Sip, REG.as_bytes().to_vec());
        rec.record(&o, Direction::ToClient, FrameKind::Sip, MSG.as_bytes().to_vec());
        rec.record(&o, Direction::ToClient, FrameKind::Sip, MSG.as_bytes().to_vec());
        let p = Pattern::new(Wire::Sip, "MESSAGE {any} SIP/2.0").unwrap();
        assert!(ev.find("bob", Wire::Sip, &p, &mut Cursor::default()).is_none(), "alice's connection is not bob's");
        let f = ev.find("alice", Wire::Sip, &p, &mut Cursor::default()).expect("arrived");
        ev.take(&f);
        assert!(ev.find("alice", Wire::Sip, &p, &mut Cursor::default()).is_none(), "the retransmission went with it");
        assert!(ev.near_misses("alice", Wire::Sip, &p).contains("Nothing else arrived"));
        // What the client sent is not an arrival.
        assert!(ev.find("alice", Wire::Sip, &Pattern::new(Wire::Sip, "REGISTER {any} SIP/2.0").unwrap(), &mut Cursor::default()).is_none());
    }

    #[test]
    fn another_scenarios_connection_is_neither_awaited_nor_ours() {
        let rec = Arc::new(Recorder::new());
        // carol_3 is another scenario's account; alice_1 is this one's (and in both lists).
        let mut ev = Evidence::new(rec.clone(), vec![("alice_1".into(), "alice".into())], vec!["alice_1".into(), "carol_3".into()]);
        let bind = |user: &str| format!("<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{user}@d/r</jid></bind></iq>").into_bytes();
        let (theirs, ours) = (origin(1, Proto::Xmpp, Transport::Tcp), origin(2, Proto::Xmpp, Transport::Tcp));
        rec.record(&theirs, Direction::ToClient, FrameKind::XmppElement, bind("carol_3"));
        rec.record(&theirs, Direction::ToClient, FrameKind::XmppElement, b"<message type='chat'><body>not yours</body></message>".to_vec());
        rec.record(&ours, Direction::ToClient, FrameKind::XmppElement, bind("alice_1"));
        rec.record(&ours, Direction::ToClient, FrameKind::XmppElement, b"<message type='chat'><body>yours</body></message>".to_vec());
        let any_chat = Pattern::new(Wire::Xmpp, "<message type='chat'/>").unwrap();
        // The other scenario's frames come first and do not hold up `order: next`.
        let next = ev.next_arrival("alice", Wire::Xmpp, &any_chat).expect("alice's own chat");
        assert!(String::from_utf8_lossy(&next.bytes).contains("yours") && !String::from_utf8_lossy(&next.bytes).contains("not yours"));
        let handed: Vec<u64> = ev.newly_attributed().iter().map(|f| f.conn).collect();
        assert_eq!(handed, [2, 2], "only this scenario's frames are told");
        let (_, cast) = ev.finish();
        assert_eq!(cast.legs.iter().map(|l| l.actor.as_str()).collect::<Vec<_>>(), ["alice"]);
    }

    #[test]
    fn xmpp_arrivals_match_as_stanzas_of_the_client_stream() {
        let rec = Arc::new(Recorder::new());
        let mut ev = Evidence::new(rec.clone(), vec![("alice_1".into(), "alice".into())], Vec::new());
        let o = origin(2, Proto::Xmpp, Transport::Tcp);
        rec.record(&o, Direction::ToClient, FrameKind::XmppElement, b"<iq type='result' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>alice_1@d/r</jid></bind></iq>".to_vec());
        rec.record(&o, Direction::ToClient, FrameKind::XmppElement, b"<message from='bob_2@d/x' type='chat'><body>hi</body></message>".to_vec());
        let p = Pattern::new(Wire::Xmpp, "<message type='chat'><body>hi</body></message>").unwrap();
        assert!(ev.find("alice", Wire::Xmpp, &p, &mut Cursor::default()).is_some());
        let wrong = Pattern::new(Wire::Xmpp, "<message type='chat'><body>bye</body></message>").unwrap();
        assert!(ev.find("alice", Wire::Xmpp, &wrong, &mut Cursor::default()).is_none());
        assert!(ev.near_misses("alice", Wire::Xmpp, &wrong).contains("<body>hi</body>"));
    }
}
