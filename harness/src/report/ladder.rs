//! The ladder of a trace: lifelines (actor legs, taps, servers) and one arrow per frame, in
//! recorded order across both protocols. Plain data, drawn by the text ladder (`show`) and by
//! the HTML report.

use crate::runner::event::{StepRecord, StepStatus};
use crate::sip::message::{SipMessage, StartLine};
use crate::trace::frame::{Direction, Fault, Frame, FrameKind};
use crate::trace::normalize::AddrName;
use crate::wire::Proto;

/// What a lifeline stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LaneKind {
    /// One protocol leg of an actor (`alice.sip`), or a client address no actor owns.
    Leg,
    Tap,
    Server,
}

/// One lifeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lane {
    pub name: String,
    pub kind: LaneKind,
}

/// How an arrow is drawn: what kind of thing crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    Message,
    /// The same bytes again on the same datagram flow: a retransmission.
    Retransmission,
    /// Not forwarded by the tap (fault injection, or no socket towards the server).
    Dropped,
    /// A TLS handshake the tap terminated (its account, not wire bytes).
    Tls,
    /// Bytes the parsers could not make a message of.
    Unparsed,
    /// One side closed its half of the connection.
    Closed,
    /// Datagrams the kernel dropped at the tap.
    Lost,
    /// A fault the tap injected into a connection (reset, stall).
    Fault,
    /// Whitespace keepalives and other bytes between messages.
    Filler,
}

/// One frame as an arrow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Arrow {
    pub seq: u64,
    /// Seconds on the frames' clock.
    pub at: f64,
    pub proto: Proto,
    /// Lane indexes: where it starts and where it ends, and the tap it crossed.
    pub from: usize,
    pub to: usize,
    pub tap: usize,
    pub label: String,
    pub style: Style,
    /// What the tap did to it (`delayed-800ms`), or that it was TLS on the wire.
    pub note: Option<String>,
    /// The bytes were TLS on the wire; these are the plaintext the tap saw.
    pub tls: bool,
    /// Recorded while the step that ended the scenario ran, or judged by it.
    pub in_failed_step: bool,
    /// The step (from 1) whose `receives` matched it.
    pub matched_by: Option<usize>,
}

/// A step, placed in time among the arrows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mark {
    pub at: f64,
    pub label: String,
    pub status: StepStatus,
}

/// A whole ladder.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ladder {
    pub lanes: Vec<Lane>,
    pub arrows: Vec<Arrow>,
    pub marks: Vec<Mark>,
}

/// The name the cast gives an address in a protocol's port space, if any.
fn named(cast: &[AddrName], addr: std::net::SocketAddr, f: &Frame) -> Option<String> {
    let carrier = f.transport.carrier();
    cast.iter()
        .find(|n| n.addr == addr && n.carrier == carrier && n.proto == f.proto)
        .or_else(|| cast.iter().find(|n| n.addr == addr && n.carrier == carrier))
        .map(|n| n.name.clone())
}

/// Where lanes go: the first actor's legs on the left, then the taps and servers, then everyone
/// else, so that most arrows are short.
fn lane_order(lanes: &[Lane], first_actor: Option<&str>) -> Vec<usize> {
    let actor = |l: &Lane| l.name.split('.').next().unwrap_or("").to_string();
    let leg_rank = |l: &Lane| if l.name.ends_with(".sip") { 0 } else { 1 };
    let mut idx: Vec<usize> = (0..lanes.len()).collect();
    let group = |l: &Lane| match l.kind {
        LaneKind::Leg if Some(actor(l).as_str()) == first_actor => 0,
        LaneKind::Tap | LaneKind::Server => 1,
        LaneKind::Leg => 2,
    };
    // Stable: within a group, first appearance, except legs of one actor stay together.
    let first_seen: Vec<String> = {
        let mut v: Vec<String> = Vec::new();
        for l in lanes.iter().filter(|l| l.kind == LaneKind::Leg) {
            if !v.contains(&actor(l)) {
                v.push(actor(l));
            }
        }
        v
    };
    idx.sort_by_key(|&i| {
        let l = &lanes[i];
        let g = group(l);
        let within = match l.kind {
            LaneKind::Leg => (first_seen.iter().position(|a| *a == actor(l)).unwrap_or(0), leg_rank(l), i),
            // A server's tap sits just left of it; servers keep their order of appearance.
            _ => (0, 0, i),
        };
        (g, within)
    });
    idx
}

/// Build the ladder of `frames` with the addresses named by `cast`, steps placed among them.
pub fn build(frames: &[Frame], cast: &[AddrName], steps: &[StepRecord]) -> Ladder {
    let mut lanes: Vec<Lane> = Vec::new();
    let lane = |name: String, kind: LaneKind, lanes: &mut Vec<Lane>| -> usize {
        match lanes.iter().position(|l| l.name == name) {
            Some(i) => i,
            None => {
                lanes.push(Lane { name, kind });
                lanes.len() - 1
            }
        }
    };
    let failed = steps.iter().find(|s| !matches!(s.status, StepStatus::Done | StepStatus::Skipped));
    let mut tls_conns: Vec<u64> = Vec::new();
    let mut seen_datagrams: std::collections::HashSet<(u64, bool, &[u8])> = Default::default();
    // Lane indexes in order of creation here; renumbered into display order below.
    let mut raw: Vec<Arrow> = Vec::new();
    for f in frames {
        let client = named(cast, f.client, f).unwrap_or_else(|| f.client.to_string());
        let c = lane(client, LaneKind::Leg, &mut lanes);
        let tap_name = named(cast, f.tap, f).filter(|n| n.ends_with(".tap")).unwrap_or_else(|| format!("{}.tap", f.server));
        // The tap's lane is made before its server's, so that it sorts to its left.
        let t = lane(tap_name, LaneKind::Tap, &mut lanes);
        let s = lane(f.server.to_string(), LaneKind::Server, &mut lanes);
        if f.kind == FrameKind::TlsHandshake && !tls_conns.contains(&f.conn) {
            tls_conns.push(f.conn);
        }
        let tls = f.transport == crate::wire::Transport::Tls || (tls_conns.contains(&f.conn) && f.kind != FrameKind::TlsHandshake);
        let (mut label, mut style) = describe(f);
        if style == Style::Message && f.transport == crate::wire::Transport::Udp && !seen_datagrams.insert((f.conn, f.dir == Direction::ToServer, &f.bytes)) {
            style = Style::Retransmission;
            label.push_str(" (retransmission)");
        }
        if matches!(f.fault, Some(Fault::Dropped | Fault::NoUpstream)) {
            style = Style::Dropped;
        }
        let note = f.fault.map(|x| format!("{} by the tap", x.name())).or_else(|| tls.then(|| "TLS on the wire: the plaintext the tap saw".to_string()));
        let in_failed_step = failed.is_some_and(|st| (f.at.as_secs_f64() >= st.start && f.at.as_secs_f64() <= st.end) || st.frames.contains(&f.seq));
        let matched_by = steps.iter().position(|st| st.status == StepStatus::Done && st.frames.contains(&f.seq)).map(|i| i + 1);
        let (from, to) = match f.dir {
            Direction::ToServer => (c, s),
            Direction::ToClient => (s, c),
        };
        raw.push(Arrow { seq: f.seq, at: f.at.as_secs_f64(), proto: f.proto, from, to, tap: t, label, style, note, tls, in_failed_step, matched_by });
    }
    let first_actor = lanes.iter().find(|l| l.kind == LaneKind::Leg).map(|l| l.name.split('.').next().unwrap_or("").to_string());
    let order = lane_order(&lanes, first_actor.as_deref());
    let position = |i: usize| order.iter().position(|&o| o == i).expect("every lane is ordered");
    let arrows = raw
        .into_iter()
        .map(|mut a| {
            a.from = position(a.from);
            a.to = position(a.to);
            a.tap = position(a.tap);
            a
        })
        .collect();
    let lanes = order.iter().map(|&i| lanes[i].clone()).collect();
    let marks = steps
        .iter()
        .filter(|s| s.status != StepStatus::Skipped)
        .map(|s| {
            let what = s.label.strip_prefix(&format!("{}:", s.actor)).or_else(|| s.label.strip_prefix(&s.actor)).unwrap_or(&s.label).trim();
            Mark { at: s.start, label: format!("{}: {what}", s.actor), status: s.status }
        })
        .collect();
    Ladder { lanes, arrows, marks }
}

/// The last segment of a namespace: `disco#info`, `roster`, `xmpp-sasl`.
fn ns_short(ns: &str) -> &str {
    ns.rsplit([':', '/']).next().unwrap_or(ns)
}

/// An arrow's label and style from its frame.
pub fn describe(f: &Frame) -> (String, Style) {
    let text = || String::from_utf8_lossy(&f.bytes).trim().chars().take(60).collect::<String>();
    match &f.kind {
        FrameKind::Sip => match SipMessage::parse(&f.bytes) {
            Ok(m) => {
                let cseq = m.cseq();
                let label = match m.start_line() {
                    StartLine::Request { method, .. } => match cseq {
                        Some((n, _)) => format!("{method} · CSeq {n}"),
                        None => method.clone(),
                    },
                    StartLine::Response { code, reason, .. } => match cseq {
                        Some((n, method)) => format!("{code} {reason} · CSeq {n} {method}"),
                        None => format!("{code} {reason}"),
                    },
                };
                (label, Style::Message)
            }
            Err(e) => (format!("unparsed SIP: {e}"), Style::Unparsed),
        },
        FrameKind::XmppHeader => ("<stream:stream>".into(), Style::Message),
        FrameKind::XmppClose => ("</stream:stream>".into(), Style::Message),
        FrameKind::XmppElement => match crate::xml::parse(&f.bytes, &crate::xml::client_stream_scope(), false) {
            Ok(e) => (xmpp_label(&e), Style::Message),
            Err(e) => (format!("unparsed XML: {e}"), Style::Unparsed),
        },
        FrameKind::Whitespace => ("whitespace".into(), Style::Filler),
        FrameKind::Opaque => (format!("{} opaque bytes", f.bytes.len()), Style::Filler),
        FrameKind::TlsHandshake => (format!("TLS handshake: {}", text()), Style::Tls),
        FrameKind::Unparsed(why) => (format!("unparsed: {why}"), Style::Unparsed),
        FrameKind::Closed(how) => (format!("closed: {how}"), Style::Closed),
        FrameKind::Lost { datagrams, why } if why.is_empty() => (format!("lost {datagrams} datagrams"), Style::Lost),
        FrameKind::Lost { datagrams, why } => (format!("lost {datagrams} datagrams: {why}"), Style::Lost),
        FrameKind::Fault(what) => (format!("fault: {what}"), Style::Fault),
    }
}

/// `iq get · disco#info`, `message chat · body`, `presence dnd · caps`, `auth · xmpp-sasl`.
fn xmpp_label(e: &crate::xml::Element) -> String {
    let name = e.local_name();
    let own_ns = e.ns.as_deref();
    // What the stanza carries: a chat's body, else its first child of another namespace.
    let payload = e.child("body").map(|_| "body".to_string()).or_else(|| {
        e.elements().find(|c| c.ns.as_deref() != own_ns).or_else(|| e.elements().next()).map(|c| match c.ns.as_deref() {
            Some(ns) if Some(ns) != own_ns => ns_short(ns).to_string(),
            _ => c.local_name().to_string(),
        })
    });
    let mut head = name.to_string();
    if let Some(t) = e.attr("type") {
        head = format!("{head} {t}");
    }
    if let Some(show) = e.child("show").filter(|_| name == "presence") {
        head = format!("{head} {}", show.text().trim());
    }
    match (name, payload) {
        ("message" | "presence" | "iq", Some(p)) => format!("{head} · {p}"),
        ("message" | "presence" | "iq", None) => head,
        _ => match own_ns {
            Some(ns) if ns != "jabber:client" => format!("{head} · {}", ns_short(ns)),
            _ => head,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Carrier;

    fn cast() -> Vec<AddrName> {
        let n = |port: u16, proto, carrier, name: &str| AddrName { addr: ([127, 0, 0, 1], port).into(), proto, carrier, name: name.into() };
        vec![
            n(40001, Proto::Sip, Carrier::Stream, "alice.sip"),
            n(40002, Proto::Xmpp, Carrier::Stream, "alice.xmpp"),
            n(40003, Proto::Sip, Carrier::Stream, "bob.sip"),
            n(5222, Proto::Xmpp, Carrier::Stream, "s.tap"),
        ]
    }

    #[test]
    fn arrows_are_labelled_and_lanes_put_the_first_actor_left() {
        let frames = vec![
            Frame::for_test(1, 2, Proto::Xmpp, Direction::ToServer, "<message type='chat' to='b'><body>hi</body></message>"),
            Frame::for_test(2, 1, Proto::Sip, Direction::ToServer, "INVITE sip:b@d SIP/2.0\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n"),
            Frame::for_test(3, 3, Proto::Sip, Direction::ToClient, "INVITE sip:b@d SIP/2.0\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
            Frame::for_test(4, 3, Proto::Sip, Direction::ToServer, "SIP/2.0 180 Ringing\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"),
            Frame::for_test(5, 2, Proto::Xmpp, Direction::ToClient, "<iq type='result' id='1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
        ];
        let l = build(&frames, &cast(), &[]);
        let names: Vec<&str> = l.lanes.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["alice.sip", "alice.xmpp", "s.tap", "s", "bob.sip"]);
        let labels: Vec<&str> = l.arrows.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(labels, ["message chat · body", "INVITE · CSeq 7", "INVITE · CSeq 1", "180 Ringing · CSeq 1 INVITE", "iq result · disco#info"]);
        assert_eq!((l.arrows[0].from, l.arrows[0].to), (1, 3));
        assert_eq!((l.arrows[2].from, l.arrows[2].to), (3, 4), "to the client: from the server");
    }

    #[test]
    fn retransmissions_drops_and_the_failed_step_show() {
        let invite = "INVITE sip:b@d SIP/2.0\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let mut frames = vec![
            Frame::for_test(1, 1, Proto::Sip, Direction::ToServer, invite),
            Frame::for_test(2, 1, Proto::Sip, Direction::ToServer, invite),
            Frame::for_test(3, 1, Proto::Sip, Direction::ToServer, invite),
        ];
        for (i, f) in frames.iter_mut().enumerate() {
            f.transport = crate::wire::Transport::Udp;
            f.at = std::time::Duration::from_millis(100 * i as u64 + 100);
        }
        frames[2].fault = Some(Fault::Dropped);
        let steps = [
            StepRecord { label: "alice: call bob".into(), actor: "alice".into(), line: 3, column: 5, status: StepStatus::Done, start: 0.0, end: 0.15, frames: vec![] },
            StepRecord { label: "bob receives sip".into(), actor: "bob".into(), line: 4, column: 5, status: StepStatus::Fail, start: 0.25, end: 0.4, frames: vec![1] },
        ];
        let l = build(&frames, &[], &steps);
        let styles: Vec<Style> = l.arrows.iter().map(|a| a.style).collect();
        assert_eq!(styles, [Style::Message, Style::Retransmission, Style::Dropped]);
        assert_eq!(l.arrows.iter().map(|a| a.in_failed_step).collect::<Vec<_>>(), [true, false, true], "judged by it, or recorded while it ran");
        assert_eq!(l.arrows[2].note.as_deref(), Some("dropped by the tap"));
        assert_eq!(l.marks[1].label, "bob: receives sip");
    }
}
