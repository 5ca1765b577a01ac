//! An actor bound to the reference client: its legs, its inboxes, and the waits on them.

use crate::client::sip::ua::SipEvent;
use crate::client::sip::SipEndpoint;
use crate::client::xmpp::{XmppConfig, XmppConnection, XmppEvent};
use crate::scenario::matching::{match_sip, match_xml, parse_xml_pattern};
use crate::scenario::{ActorKind, Wire};
pub use crate::servers::Account;
use crate::sip::SipMessage;
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
}

/// Where the actor's legs connect (the taps).
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    pub xmpp: Option<SocketAddr>,
    pub sip: Option<SocketAddr>,
}

/// One participant driven by the reference client.
pub struct Actor {
    pub name: String,
    pub kind: ActorKind,
    pub account: Account,
    sip: Option<SipEndpoint>,
    xmpp: Option<XmppConnection>,
    full_jid: Option<String>,
    sip_inbox: Vec<SipMessage>,
    xmpp_inbox: Vec<Element>,
    xmpp_closed: bool,
    sip_registered: bool,
    /// Every local address the actor's legs used (to pick its frames from the recorder).
    pub addrs: Vec<(SocketAddr, Wire)>,
}

fn fail<T>(msg: impl Into<String>) -> Result<T, StepError> {
    Err(StepError::Fail(msg.into()))
}

impl Actor {
    /// A disconnected actor.
    pub fn new(name: &str, kind: ActorKind, account: Account) -> Actor {
        Actor {
            name: name.into(),
            kind,
            account,
            sip: None,
            xmpp: None,
            full_jid: None,
            sip_inbox: Vec::new(),
            xmpp_inbox: Vec::new(),
            xmpp_closed: false,
            sip_registered: false,
            addrs: Vec::new(),
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
    pub async fn connect(&mut self, ep: Endpoints, deadline: Instant) -> Result<(), StepError> {
        if matches!(self.kind, ActorKind::Dual | ActorKind::Sip) {
            let proxy = ep.sip.ok_or_else(|| StepError::Error("profile has no SIP server".into()))?;
            let a = &self.account;
            let sip = SipEndpoint::start(&a.user, &a.password, &a.domain, proxy)
                .await
                .map_err(|e| StepError::Error(format!("SIP socket: {e}")))?;
            self.addrs.push((sip.local_addr(), Wire::Sip));
            let tx = sip.register(3600).await.ok_or_else(|| StepError::Error("SIP task ended".into()))?;
            self.sip = Some(sip);
            let resp = self.wait_final(tx, deadline).await?;
            if resp.status() != Some(200) {
                return fail(format!("REGISTER answered {}", first_line(resp.raw())));
            }
            self.sip_registered = true;
        }
        if matches!(self.kind, ActorKind::Dual | ActorKind::Xmpp) {
            let server = ep.xmpp.ok_or_else(|| StepError::Error("profile has no XMPP server".into()))?;
            let cfg = XmppConfig {
                user: self.account.user.clone(),
                domain: self.account.domain.clone(),
                password: self.account.password.clone(),
                resource: "sixpac".into(),
            };
            let conn = XmppConnection::start(server, cfg)
                .await
                .map_err(|e| StepError::Error(format!("XMPP connect to {server}: {e}")))?;
            self.addrs.push((conn.local_addr(), Wire::Xmpp));
            self.xmpp = Some(conn);
            loop {
                match self.next_xmpp(deadline).await? {
                    Some(XmppEvent::Online { jid }) => {
                        self.full_jid = Some(jid);
                        break;
                    }
                    Some(XmppEvent::Failed(why)) => return fail(format!("XMPP login: {why}")),
                    Some(XmppEvent::Closed) => return fail("XMPP stream closed during login"),
                    Some(_) => {}
                    None => return fail("XMPP login did not finish before the deadline"),
                }
            }
            self.send_xmpp("<presence/>".into())?;
            // RFC 6121 §4.2.2: the server reflects initial presence to the sending resource.
            let own = self.full_jid.clone().unwrap_or_default();
            let pattern = format!("<presence from='{own}'/>");
            self.receive(Wire::Xmpp, &pattern, deadline).await?;
        }
        Ok(())
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
            self.sip_registered = false;
            let sip = self.sip.as_ref().ok_or_else(|| StepError::Error("SIP leg gone".into()))?;
            let tx = sip.register(0).await.ok_or_else(|| StepError::Error("SIP task ended".into()))?;
            let resp = self.wait_final(tx, deadline).await?;
            if resp.status() != Some(200) {
                return fail(format!("un-REGISTER answered {}", first_line(resp.raw())));
            }
        }
        Ok(())
    }

    fn send_xmpp(&self, text: String) -> Result<(), StepError> {
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
                    XmppEvent::Stanza(el) => self.xmpp_inbox.push(el.clone()),
                    XmppEvent::Closed => self.xmpp_closed = true,
                    _ => {}
                }
                Ok(Some(ev))
            }
        }
    }

    async fn next_sip(&mut self, deadline: Instant) -> Option<SipEvent> {
        let s = self.sip.as_mut()?;
        let ev = tokio::time::timeout_at(deadline, s.events.recv()).await.ok().flatten()?;
        if let SipEvent::Received(m) = &ev {
            self.sip_inbox.push(m.clone());
        }
        Some(ev)
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

    /// Assert that nothing matching arrives before `until` (arrivals already queued count too).
    pub async fn receive_nothing(&mut self, wire: Wire, pattern: &str, until: Instant) -> Result<(), StepError> {
        loop {
            if let Some(i) = self.find(wire, pattern).map_err(StepError::Fail)? {
                let what = match wire {
                    Wire::Xmpp => self.xmpp_inbox[i].to_xml(),
                    Wire::Sip => first_line(self.sip_inbox[i].raw()),
                };
                return fail(format!("received what must not arrive: {what}"));
            }
            let got = match wire {
                Wire::Xmpp => self.next_xmpp(until).await?.is_some(),
                Wire::Sip => self.next_sip(until).await.is_some(),
            };
            if !got {
                return Ok(());
            }
        }
    }
}

fn first_line(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw.split(|b| *b == b'\n').next().unwrap_or(b"")).trim_end().to_string()
}
