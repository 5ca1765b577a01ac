//! An actor bound to the reference client: its legs, its inboxes, and the waits on them.

pub mod cusax;
mod perform;
mod roster;

use crate::client::sip::ua::{SipEvent, SipUa, UaError};
use crate::client::sip::SipEndpoint;
use crate::client::xmpp::{XmppConfig, XmppConnection, XmppEvent};
use crate::scenario::matching::{match_sip, match_xml, parse_xml_pattern};
use crate::scenario::{ActorKind, Wire};
pub use crate::servers::Account;
use crate::sip::SipMessage;
use crate::trace::frame::Transport;
use crate::xml::Element;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::time::Instant;

/// Why a step did not succeed.
#[derive(Debug, Clone)]
pub enum StepError {
    /// The system under test did wrong (verdict `fail`).
    Fail(String),
    /// The harness or infrastructure broke (verdict `error`).
    Error(String),
    /// The step cannot be carried out by what is there (verdict `inconclusive`), e.g. the
    /// reference client lacks the feature.
    Inconclusive(String),
}

/// Where the actor's legs connect (the taps), and whom an XMPP leg under TLS trusts.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub xmpp: Option<SocketAddr>,
    pub sip: Option<SocketAddr>,
    pub sip_tcp: Option<SocketAddr>,
    /// SIP over TLS; None where the servers' certificates are not the run's (external).
    pub sip_tls: Option<SocketAddr>,
    /// The run's test CA; None where the servers' certificates are not the run's (external).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// One participant driven by the reference client.
pub struct Actor {
    pub name: String,
    pub kind: ActorKind,
    /// The SIP leg's transport.
    pub sip_transport: crate::trace::frame::Transport,
    /// Its vCard types the SIP URI as video-capable.
    pub video: bool,
    /// The XMPP leg negotiates STARTTLS.
    pub xmpp_tls: bool,
    /// What the XMPP leg's TLS handshake settled, once secured.
    pub xmpp_secured: Option<String>,
    /// What the client told its user and the run has not shown yet.
    /// What about (`protection`: RFC 7081 §7; `caution`: §5), and what it said.
    notices: Vec<(&'static str, String)>,
    /// What the client told its user before its last vCard-driven call (RFC 7081 §5), if anything.
    pub call_caution: Option<String>,
    /// The XMPP leg asked for the roster, so the server sends it roster pushes.
    roster_requested: bool,
    /// What the client told its user about its legs' protection (RFC 7081 §7), if anything.
    pub protection_warning: Option<String>,
    /// A CUSAX rule the client breaks on purpose, if any.
    pub misbehave: Option<cusax::Misbehaviour>,
    iq_seq: u64,
    /// SIP events taken in but not yet handed out (see `next_sip`).
    sip_backlog: std::collections::VecDeque<SipEvent>,
    /// The "on the phone" activity is published (see `cusax::on_the_phone`).
    on_phone: bool,
    /// The actor follows sixpac's own "on the phone" profile.
    on_phone_profile: bool,
    /// What the client does by itself (initial presence, roster, priority, caps, answers).
    behaviour: crate::scenario::model::Behaviour,
    /// The XMPP resource it binds.
    resource: String,
    /// What the last incoming call's Call-Info came to: the confirmed JID, or why not.
    caller_identity: Option<Result<String, String>>,
    /// The bare JID this actor chatted with last (what `escalate` calls).
    last_chat: Option<String>,
    /// The latest presence from each bare JID, kept even after a step consumed it.
    last_presence: HashMap<String, Element>,
    pub account: Account,
    sip: Option<SipEndpoint>,
    xmpp: Option<XmppConnection>,
    full_jid: Option<String>,
    sip_inbox: Vec<SipMessage>,
    xmpp_inbox: Vec<Element>,
    xmpp_closed: bool,
    sip_registered: bool,
    /// Call events (incoming, confirmed, ended) not yet consumed by a step.
    call_events: Vec<SipEvent>,
    /// The call the actor's call steps act on.
    current_call: Option<String>,
}

pub(crate) fn gone() -> StepError {
    StepError::Error("the SIP leg's task has ended".into())
}

/// The XMPP resource the reference client binds unless the actor names one.
pub const RESOURCE: &str = "sixpac";

fn fail<T>(msg: impl Into<String>) -> Result<T, StepError> {
    Err(StepError::Fail(msg.into()))
}

impl Actor {
    /// A disconnected actor.
    pub fn new(decl: &crate::scenario::model::ActorDecl, account: Account, misbehave: Option<cusax::Misbehaviour>) -> Actor {
        Actor {
            name: decl.name.clone(),
            kind: decl.kind,
            sip_transport: decl.sip_transport,
            video: decl.video,
            xmpp_tls: decl.xmpp_tls,
            xmpp_secured: None,
            protection_warning: None,
            roster_requested: false,
            call_caution: None,
            notices: Vec::new(),
            misbehave,
            iq_seq: 0,
            last_presence: HashMap::new(),
            last_chat: None,
            caller_identity: None,
            on_phone: false,
            on_phone_profile: decl.on_phone_profile,
            behaviour: decl.behaviour.clone(),
            resource: decl.resource.clone().unwrap_or_else(|| RESOURCE.to_string()),
            sip_backlog: Default::default(),
            account,
            sip: None,
            xmpp: None,
            full_jid: None,
            sip_inbox: Vec::new(),
            xmpp_inbox: Vec::new(),
            xmpp_closed: false,
            sip_registered: false,
            call_events: Vec::new(),
            current_call: None,
        }
    }

    /// Values for `${name.field}` interpolation.
    pub fn values(&self) -> HashMap<String, String> {
        let a = &self.account;
        let mut v = HashMap::new();
        let mut put = |k: &str, val: String| {
            v.insert(format!("{}.{k}", self.name), val);
        };
        put("user", a.user.clone());
        put("password", a.password.clone());
        put("domain", a.domain.clone());
        put("jid", format!("{}@{}", a.user, a.domain));
        put("sip", format!("sip:{}@{}", a.user, a.domain));
        if let Some(j) = &self.full_jid {
            put("full_jid", j.clone());
        }
        if let Some(s) = &self.sip {
            put("contact", s.contact().to_string());
            put("sip_addr", s.local_addr().to_string());
        }
        v
    }

    /// Log in: SIP REGISTER first, then XMPP with initial presence (CUSAX order, RFC 7081 §2).
    pub async fn connect(&mut self, ep: &Endpoints, deadline: Instant) -> Result<(), StepError> {
        if self.xmpp_tls && ep.tls.is_none() {
            return Err(StepError::Inconclusive(
                "this actor's XMPP leg needs STARTTLS, and the servers file names no `tls_ca` to check the servers' certificates with".into(),
            ));
        }
        if matches!(self.kind, ActorKind::Dual | ActorKind::Sip) {
            self.register(ep, deadline).await?;
        }
        if matches!(self.kind, ActorKind::Dual | ActorKind::Xmpp) {
            let server = ep.xmpp.ok_or_else(|| StepError::Error("profile has no XMPP server".into()))?;
            let cfg = XmppConfig {
                starttls: self.xmpp_tls,
                features: self.features(),
                answers: self.behaviour.answers,
                ..XmppConfig::for_account(&self.account, &self.resource)
            };
            let conn = XmppConnection::start(server, cfg, ep.tls.clone())
                .await
                .map_err(|e| StepError::Error(format!("XMPP connect to {server}: {e}")))?;
            self.xmpp = Some(conn);
            loop {
                match self.next_xmpp(deadline).await? {
                    Some(XmppEvent::Online { jid }) => {
                        self.full_jid = Some(jid);
                        break;
                    }
                    Some(XmppEvent::Secured(facts)) => self.xmpp_secured = Some(facts),
                    Some(XmppEvent::Failed(why)) => return fail(format!("XMPP login: {why}")),
                    Some(XmppEvent::Closed) => return fail("XMPP stream closed during login"),
                    Some(_) => {}
                    None => return fail("XMPP login did not finish before the deadline"),
                }
            }
            if self.behaviour.roster {
                self.fetch_roster(deadline).await?;
            }
            if self.kind == ActorKind::Dual {
                self.check_protection();
                self.link_identity(deadline).await?;
            }
            if self.behaviour.initial_presence {
                self.send_xmpp(self.initial_presence())?;
                // RFC 6121 §4.2.2: the server reflects initial presence to the sending resource.
                let own = self.full_jid.clone().unwrap_or_default();
                let pattern = format!("<presence from='{own}'/>");
                self.receive(Wire::Xmpp, &pattern, deadline).await?;
            }
        }
        Ok(())
    }

    /// The disco#info features this actor's client answers with and hashes into its caps.
    pub(crate) fn features(&self) -> Vec<String> {
        self.behaviour.features.clone().unwrap_or_else(crate::client::xmpp::features::own_features)
    }

    /// Leave in the reverse of CUSAX order: close the XMPP stream and wait for the server's
    /// close, then remove the SIP binding (REGISTER with Expires: 0, RFC 3261 §10.2.2), so a
    /// reused account starts the next scenario with no stale contact.
    pub async fn disconnect(&mut self, deadline: Instant) -> Result<(), StepError> {
        if let Some(x) = &self.xmpp {
            if !self.xmpp_closed {
                x.close();
                while !self.xmpp_closed {
                    if self.next_xmpp(deadline).await?.is_none() {
                        return fail("server did not close the XMPP stream");
                    }
                }
            }
        }
        if self.sip_registered {
            self.unregister(deadline).await?;
        }
        Ok(())
    }

    /// Run `f` on the SIP leg's UA, inside its task.
    async fn on_ua<R: Send + 'static>(&self, f: impl FnOnce(&mut SipUa, std::time::Instant) -> R + Send + 'static) -> Result<R, StepError> {
        self.sip_leg()?.with(f).await.ok_or_else(gone)
    }

    /// [`Self::on_ua`] for what the UA may refuse (a call in the wrong state): a refusal fails
    /// the step.
    async fn try_on_ua<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut SipUa, std::time::Instant) -> Result<R, UaError> + Send + 'static,
    ) -> Result<R, StepError> {
        self.on_ua(f).await?.map_err(|e| StepError::Fail(e.to_string()))
    }

    /// The SIP leg, or a failure naming the missing step.
    fn sip_leg(&self) -> Result<&SipEndpoint, StepError> {
        self.sip.as_ref().ok_or_else(|| StepError::Fail(format!("{} has no SIP leg (register or connect first)", self.name)))
    }

    /// Open the SIP leg if needed and REGISTER (3600 s), answering the digest challenge.
    pub async fn register(&mut self, ep: &Endpoints, deadline: Instant) -> Result<(), StepError> {
        if self.sip.is_none() {
            let proxy = match self.sip_transport {
                Transport::Udp => ep.sip,
                Transport::Tcp => ep.sip_tcp,
                Transport::Tls => ep.sip_tls,
            };
            let proxy = match (proxy, self.sip_transport, ep.sip) {
                (Some(p), _, _) => p,
                (None, Transport::Tls, Some(_)) => {
                    return Err(StepError::Inconclusive(
                        "this actor's SIP leg needs TLS: the servers file names no `sips` address, or no `tls_ca`".into(),
                    ))
                }
                _ => return Err(StepError::Error("profile has no SIP server".into())),
            };
            let a = &self.account;
            let sip = SipEndpoint::start(&a.user, &a.password, &a.domain, proxy, self.sip_transport, ep.tls.clone())
                .await
                .map_err(|e| StepError::Error(format!("SIP socket: {e}")))?;
            self.sip = Some(sip);
        }
        let tx = self.on_ua(|ua, now| ua.register(now, 3600)).await?;
        self.expect_2xx("REGISTER", tx, deadline).await?;
        self.sip_registered = true;
        Ok(())
    }

    /// Remove the registration (RFC 3261 §10.2.2: Expires: 0).
    pub async fn unregister(&mut self, deadline: Instant) -> Result<(), StepError> {
        let tx = self.on_ua(|ua, now| ua.register(now, 0)).await?;
        self.sip_registered = false;
        self.expect_2xx("un-REGISTER", tx, deadline).await.map(|_| ())
    }

    /// PUBLISH presence as PIDF (a first publication, or a modification of ours), wait for the 2xx.
    pub async fn publish_presence(&mut self, open: bool, note: String, deadline: Instant) -> Result<(), StepError> {
        let tx = self
            .on_ua(move |ua, now| {
                let doc = crate::sip::pidf::document(&ua.aor(), &ua.contact(), open, &note);
                ua.publish(now, Some(&doc), 3600)
            })
            .await?;
        self.expect_2xx("PUBLISH", tx, deadline).await.map(|_| ())
    }

    /// Refresh our publication (SIP-If-Match, no body), or with `remove` end it (Expires: 0).
    pub async fn refresh_presence(&mut self, remove: bool, deadline: Instant) -> Result<(), StepError> {
        let expires = if remove { 0 } else { 3600 };
        let tx = self.on_ua(move |ua, now| ua.publish(now, None, expires)).await?;
        self.expect_2xx("PUBLISH", tx, deadline).await.map(|_| ())
    }

    /// SUBSCRIBE to `to_uri`'s presence (`expires` 0 unsubscribes), wait for the 2xx.
    pub async fn subscribe(&mut self, to_uri: String, expires: u32, deadline: Instant) -> Result<(), StepError> {
        let tx = self.on_ua(move |ua, now| ua.subscribe(now, &to_uri, expires)).await?;
        self.expect_2xx("SUBSCRIBE", tx, deadline).await.map(|_| ())
    }

    /// Wait for a transaction's final response and fail unless it is a 2xx.
    async fn expect_2xx(&mut self, what: &str, tx: u64, deadline: Instant) -> Result<SipMessage, StepError> {
        let resp = self.wait_final(tx, deadline).await?;
        match resp.status() {
            Some(200..=299) => Ok(resp),
            _ => fail(format!("{what} answered {}", first_line(resp.raw()))),
        }
    }

    /// Send a SIP MESSAGE with a text/plain body and wait for its 2xx.
    pub async fn message(&mut self, to_uri: String, text: String, deadline: Instant) -> Result<(), StepError> {
        let tx = self.try_on_ua(move |ua, now| ua.message(now, &to_uri, &text)).await?;
        self.expect_2xx("MESSAGE", tx, deadline).await.map(|_| ())
    }

    /// Start a call; it rings, is answered or rejected in later steps.
    pub async fn call(&mut self, to_uri: String, video: bool) -> Result<(), StepError> {
        let id = self.on_ua(move |ua, now| ua.invite(now, &to_uri, video)).await?;
        self.current_call = Some(id);
        Ok(())
    }

    /// Wait for a call event matching `want`, keeping the others.
    async fn wait_call_event(&mut self, what: &str, deadline: Instant, want: impl Fn(&SipEvent) -> bool) -> Result<SipEvent, StepError> {
        loop {
            if let Some(i) = self.call_events.iter().position(&want) {
                return Ok(self.call_events.remove(i));
            }
            if self.next_sip(deadline).await.is_none() {
                let seen: Vec<String> = self.call_events.iter().map(|e| format!("{e:?}")).collect();
                return fail(format!("no {what} before the deadline{}", if seen.is_empty() { String::new() } else { format!(" (seen: {})", seen.join("; ")) }));
            }
        }
    }

    /// Wait for an incoming call and make it the current one; its offer's SDP problem, if any.
    /// A dual actor checks the caller's Call-Info against the caller's vCard while it rings.
    async fn incoming(&mut self, deadline: Instant) -> Result<(String, Option<String>), StepError> {
        match self.wait_call_event("incoming call", deadline, |e| matches!(e, SipEvent::IncomingCall { .. })).await? {
            SipEvent::IncomingCall { call_id, sdp_problem, from, call_info, .. } => {
                self.current_call = Some(call_id.clone());
                if self.kind == ActorKind::Dual && self.xmpp.is_some() {
                    self.caller_identity = Some(self.check_call_info(&from, call_info.as_deref(), deadline).await);
                }
                Ok((call_id, sdp_problem))
            }
            _ => unreachable!("matched above"),
        }
    }

    /// Answer the incoming call and wait for the caller's ACK. An INVITE whose SDP offer is not
    /// valid fails the step.
    pub async fn answer(&mut self, deadline: Instant) -> Result<(), StepError> {
        let (id, problem) = self.incoming(deadline).await?;
        if let Some(p) = problem {
            return fail(format!("the incoming INVITE: {p}"));
        }
        let c = id.clone();
        self.try_on_ua(move |ua, now| ua.answer(now, &c)).await?;
        self.wait_call_event("ACK for our 200", deadline, |e| matches!(e, SipEvent::CallConfirmed { call_id, .. } if *call_id == id)).await?;
        Ok(())
    }

    /// Reject the incoming call with `code`.
    pub async fn reject(&mut self, code: u16, deadline: Instant) -> Result<(), StepError> {
        let (id, _) = self.incoming(deadline).await?;
        self.try_on_ua(move |ua, now| ua.reject(now, &id, code)).await
    }

    fn current(&self) -> Result<String, StepError> {
        self.current_call.clone().ok_or_else(|| StepError::Fail(format!("{} has no call", self.name)))
    }

    /// CANCEL the ringing call and wait until it has ended (487).
    pub async fn cancel(&mut self, deadline: Instant) -> Result<(), StepError> {
        let id = self.current()?;
        let c = id.clone();
        self.try_on_ua(move |ua, now| ua.cancel(now, &c)).await?;
        self.wait_call_event("end of the cancelled call", deadline, |e| matches!(e, SipEvent::CallEnded { call_id, .. } if *call_id == id)).await?;
        Ok(())
    }

    /// BYE the established call and wait for the 200. An SDP answer that did not fit the
    /// offer (RFC 3264 §6) fails the step, after the call is down.
    pub async fn hang_up(&mut self, deadline: Instant) -> Result<(), StepError> {
        let id = self.current()?;
        let c = id.clone();
        let tx = self.try_on_ua(move |ua, now| ua.bye(now, &c)).await?;
        self.expect_2xx("BYE", tx, deadline).await?;
        let problem = self.call_events.iter().find_map(|e| match e {
            SipEvent::CallConfirmed { call_id, sdp_problem } if *call_id == id => sdp_problem.clone(),
            _ => None,
        });
        self.call_events.retain(|e| !matches!(e, SipEvent::CallConfirmed { call_id, .. } | SipEvent::CallEnded { call_id, .. } if *call_id == id));
        match problem {
            Some(p) => fail(format!("the call's {p}")),
            None => Ok(()),
        }
    }

    /// What the client told its user since the last call (warnings and cautions).
    pub fn take_notices(&mut self) -> Vec<String> {
        self.take_told().into_iter().map(|(_, t)| t).collect()
    }

    /// The same, with what each was about (`protection`, `caution`).
    pub fn take_told(&mut self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut self.notices)
    }

    pub(crate) fn send_xmpp(&self, text: String) -> Result<(), StepError> {
        match &self.xmpp {
            Some(x) if x.send_raw(text.into_bytes()) => Ok(()),
            Some(_) => fail(format!("{}'s XMPP stream is gone", self.name)),
            None => fail(format!("{} has no XMPP leg (connect first)", self.name)),
        }
    }

    /// Send text as it is on one leg.
    pub async fn send(&mut self, wire: Wire, text: String) -> Result<(), StepError> {
        match wire {
            Wire::Xmpp => self.send_xmpp(text),
            Wire::Sip => {
                let Some(sip) = &self.sip else { return fail(format!("{} has no SIP leg (connect first)", self.name)) };
                let bytes = crate::client::sip::ua::prepare_outgoing(&text);
                sip.send(bytes).await.map(|_| ()).map_err(|e| StepError::Fail(format!("cannot send: {e}")))
            }
        }
    }

    async fn next_xmpp(&mut self, deadline: Instant) -> Result<Option<XmppEvent>, StepError> {
        let Some(x) = self.xmpp.as_mut() else { return Ok(None) };
        match tokio::time::timeout_at(deadline, x.events.recv()).await {
            Err(_) => Ok(None),
            Ok(None) => {
                self.xmpp_closed = true;
                Ok(None)
            }
            Ok(Some(ev)) => {
                match &ev {
                    XmppEvent::Stanza(el) => {
                        // Availability only: subscription requests and answers say nothing of
                        // the contact's caps or addresses.
                        if el.local_name() == "presence" && matches!(el.attr("type"), None | Some("unavailable")) {
                            let bare = el.attr("from").unwrap_or("").split('/').next().unwrap_or("").to_string();
                            self.last_presence.insert(bare, el.clone());
                        }
                        self.xmpp_inbox.push(el.clone())
                    }
                    XmppEvent::Closed => self.xmpp_closed = true,
                    _ => {}
                }
                Ok(Some(ev))
            }
        }
    }

    /// The next SIP event. Everything the UA has already reported is taken in at once (into
    /// the inboxes, with the client's reactions such as the "on the phone" activity) and then
    /// handed out one by one, so a step that returns early leaves nothing unreacted to.
    async fn next_sip(&mut self, deadline: Instant) -> Option<SipEvent> {
        if let Some(ev) = self.sip_backlog.pop_front() {
            return Some(ev);
        }
        let s = self.sip.as_mut()?;
        let first = tokio::time::timeout_at(deadline, s.events.recv()).await.ok().flatten()?;
        let mut batch = vec![first];
        while let Ok(more) = s.events.try_recv() {
            batch.push(more);
        }
        for ev in &batch {
            match ev {
                SipEvent::Received(m) => self.sip_inbox.push(m.clone()),
                SipEvent::IncomingCall { .. } | SipEvent::CallConfirmed { .. } | SipEvent::CallEnded { .. } => {
                    self.on_the_phone(ev);
                    self.call_events.push(ev.clone())
                }
                _ => {}
            }
        }
        let mut batch = batch.into_iter();
        let first = batch.next();
        self.sip_backlog.extend(batch);
        first
    }

    async fn wait_final(&mut self, tx: u64, deadline: Instant) -> Result<SipMessage, StepError> {
        loop {
            match self.next_sip(deadline).await {
                Some(SipEvent::Final { tx: t, response }) if t == tx => return Ok(response),
                Some(SipEvent::TimedOut { tx: t }) if t == tx => return fail("no final response (Timer F)"),
                Some(_) => {}
                None => return fail("no final response before the deadline"),
            }
        }
    }

    /// Index of the first inbox entry matching, or the closest mismatch reason.
    fn find(&self, wire: Wire, pattern: &str) -> Result<Option<usize>, String> {
        match wire {
            Wire::Xmpp => {
                let want = parse_xml_pattern(pattern)?;
                Ok(self.xmpp_inbox.iter().position(|e| match_xml(&want, e).is_ok()))
            }
            Wire::Sip => Ok(self.sip_inbox.iter().position(|m| match_sip(pattern, m).is_ok())),
        }
    }

    fn near_misses(&self, wire: Wire, pattern: &str) -> String {
        let lines: Vec<String> = match wire {
            Wire::Xmpp => {
                let Ok(want) = parse_xml_pattern(pattern) else { return String::new() };
                self.xmpp_inbox.iter().rev().take(3).map(|e| {
                    format!("  {} -- {}", e.to_xml(), match_xml(&want, e).err().unwrap_or_default())
                }).collect()
            }
            Wire::Sip => self.sip_inbox.iter().rev().take(3).map(|m| {
                format!("  {} -- {}", first_line(m.raw()), match_sip(pattern, m).err().unwrap_or_default())
            }).collect(),
        };
        if lines.is_empty() {
            " Nothing else arrived.".into()
        } else {
            format!(" Latest unmatched arrivals:\n{}", lines.join("\n"))
        }
    }

    /// Wait until a frame matching `pattern` has arrived on `wire`, and consume it.
    pub async fn receive(&mut self, wire: Wire, pattern: &str, deadline: Instant) -> Result<(), StepError> {
        let start = Instant::now();
        loop {
            if let Some(i) = self.find(wire, pattern).map_err(StepError::Fail)? {
                match wire {
                    Wire::Xmpp => drop(self.xmpp_inbox.remove(i)),
                    Wire::Sip => drop(self.sip_inbox.remove(i)),
                }
                return Ok(());
            }
            let got = match wire {
                Wire::Xmpp => self.next_xmpp(deadline).await?.is_some(),
                Wire::Sip => self.next_sip(deadline).await.is_some(),
            };
            if !got {
                let waited = start.elapsed().as_secs_f64();
                return fail(format!(
                    "no matching frame within {waited:.1} s; wanted:\n  {}\n{}",
                    pattern.trim(),
                    self.near_misses(wire, pattern)
                ));
            }
        }
    }

    /// Take in whatever either leg reports until `until`, with the client's reactions to it.
    pub async fn pump(&mut self, until: Instant) -> Result<(), StepError> {
        let now = Instant::now();
        while self.next_sip(now).await.is_some() {}
        while self.next_xmpp(now).await?.is_some() {}
        tokio::time::sleep_until(until).await;
        Ok(())
    }
}

fn first_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw.split(|b| *b == b'\n').next().unwrap_or(b"")).trim_end().to_string()
}
