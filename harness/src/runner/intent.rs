//! What the runner asks of a client: a scenario action with the other actors resolved to their
//! addresses ("call bob"), never how to do it (which URI, which channel). The client binding
//! decides. An intent is also the driver protocol's command (docs/driver-protocol.md).

use crate::scenario::model::ActorDecl;
use crate::scenario::{ActorKind, Wire};
use crate::servers::Account;
use crate::trace::frame::Transport;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Another actor of the scenario, as a client needs to address it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The actor's name in the scenario.
    pub name: String,
    /// Its legs.
    pub kind: ActorKind,
    /// Its bare JID.
    pub jid: String,
    /// Its SIP address-of-record.
    pub sip: String,
}

/// One thing the actor is to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Intent {
    /// Log in on every leg (SIP REGISTER, then XMPP with presence: RFC 7081 §2 order).
    Connect,
    /// Log out of every leg.
    Disconnect,
    /// The SIP leg only: REGISTER.
    Register,
    /// The SIP leg only: remove the registration.
    Unregister,
    /// A SIP MESSAGE to the peer's address-of-record.
    Message { to: Peer, text: String },
    /// A chat message to the peer (the client picks the channel: RFC 7081 §3).
    Chat { to: Peer, text: String },
    /// Broadcast XMPP presence: show (available, away, chat, dnd, xa) and status text.
    SetPresence { show: String, status: String },
    /// Call the peer (the client picks the URI: RFC 7081 §3.3).
    Call { to: Peer, video: bool },
    /// Call the peer claiming to be `claimed` (a spoofing caller).
    CallClaiming { to: Peer, claimed: Peer },
    /// Call the contact chatted with last.
    Escalate,
    /// Answer the incoming call.
    Answer,
    /// Reject the incoming call with this status code.
    Reject { code: u16 },
    /// Cancel the outgoing call while it rings.
    Cancel,
    /// End the established call.
    HangUp,
    /// PUBLISH presence (RFC 3903).
    PublishPresence { open: bool, note: String },
    /// Refresh the publication.
    RefreshPresence,
    /// Remove the publication.
    WithdrawPresence,
    /// SUBSCRIBE to the peer's SIP presence.
    Subscribe { to: Peer },
    /// End that subscription.
    Unsubscribe { to: Peer },
    /// RFC 6121 §3.1: ask for the peer's presence.
    AddContact { to: Peer },
    /// Approve the peer's subscription request.
    ApproveContact { to: Peer },
    /// Refuse the peer's subscription request.
    DenyContact { to: Peer },
    /// Approve the peer before it asks (§3.4).
    PreApproveContact { to: Peer },
    /// Cancel the subscription to the peer's presence.
    CancelSubscription { to: Peer },
    /// Check the XEP-0115 caps of the peer's latest presence against its disco#info.
    VerifyCaps { of: Peer },
    /// The last incoming call's Call-Info was confirmed as this peer (none: not confirmed).
    ExpectCaller { caller: Option<Peer> },
    /// RFC 7081 §5: the last vCard-driven call came with a caution to the user (or not).
    ExpectCallCaution { warned: bool },
    /// RFC 7081 §7: the client warned its user that its legs differ in protection (or not).
    ExpectProtectionWarning { warned: bool },
    /// Send these bytes as they are (the reference client's raw steps).
    SendRaw { wire: Wire, text: String },
}

impl Intent {
    /// The action's name, as the driver protocol spells it and a driver's `can` lists it.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("action").and_then(|a| a.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}

/// Where a client's legs connect: the taps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taps {
    pub xmpp: Option<SocketAddr>,
    pub sip_udp: Option<SocketAddr>,
    pub sip_tcp: Option<SocketAddr>,
    pub sip_tls: Option<SocketAddr>,
}

/// What a client needs to play an actor: its legs, account, the taps and the CA to trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    pub actor: String,
    pub kind: ActorKind,
    /// The SIP leg's transport.
    pub sip_transport: Transport,
    /// Its vCard types the SIP URI as video-capable.
    pub video: bool,
    /// It follows sixpac's own "on the phone" profile (XEP-0108 activity while a call is up).
    pub on_phone_profile: bool,
    /// Its XMPP leg negotiates STARTTLS.
    pub xmpp_tls: bool,
    pub account: Account,
    pub taps: Taps,
    /// PEM file of the CA the servers' (taps') certificates chain to; none where there is none.
    pub ca_file: Option<PathBuf>,
}

impl Setup {
    /// The setup of a declared actor with its account.
    pub fn new(decl: &ActorDecl, account: Account, taps: Taps, ca_file: Option<PathBuf>) -> Setup {
        Setup {
            actor: decl.name.clone(),
            kind: decl.kind,
            sip_transport: decl.sip_transport,
            video: decl.video,
            on_phone_profile: decl.on_phone_profile,
            xmpp_tls: decl.xmpp_tls,
            account,
            taps,
            ca_file,
        }
    }

    /// The declaration it came from (the reference client is built from one).
    pub fn decl(&self) -> ActorDecl {
        ActorDecl {
            name: self.actor.clone(),
            kind: self.kind,
            sip_transport: self.sip_transport,
            video: self.video,
            on_phone_profile: self.on_phone_profile,
            xmpp_tls: self.xmpp_tls,
            behaviour: Default::default(),
            account_of: None,
            resource: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_read_back_as_written_and_name_their_action() {
        let bob = Peer { name: "bob".into(), kind: ActorKind::Dual, jid: "bob@d".into(), sip: "sip:bob@d".into() };
        let intents = vec![
            Intent::Connect,
            Intent::Call { to: bob.clone(), video: true },
            Intent::ExpectCaller { caller: None },
            Intent::SendRaw { wire: Wire::Xmpp, text: "<presence/>".into() },
        ];
        for i in &intents {
            let text = serde_json::to_string(i).unwrap();
            assert_eq!(&serde_json::from_str::<Intent>(&text).unwrap(), i, "{text}");
        }
        assert_eq!(intents[1].name(), "call");
        assert_eq!(Intent::HangUp.name(), "hang-up");
        assert!(serde_json::from_str::<Intent>(r#"{"action":"call","to":null}"#).is_err());
    }

    /// One intent of every kind; the match makes a new variant fail to compile here until
    /// it is added to the list (and so to the schema check below).
    fn one_of_each() -> Vec<Intent> {
        let p = Peer { name: "bob".into(), kind: ActorKind::Sip, jid: "b@d".into(), sip: "sip:b@d".into() };
        let all = vec![
            Intent::Connect,
            Intent::Disconnect,
            Intent::Register,
            Intent::Unregister,
            Intent::Message { to: p.clone(), text: "t".into() },
            Intent::Chat { to: p.clone(), text: "t".into() },
            Intent::SetPresence { show: "dnd".into(), status: "s".into() },
            Intent::Call { to: p.clone(), video: false },
            Intent::CallClaiming { to: p.clone(), claimed: p.clone() },
            Intent::Escalate,
            Intent::Answer,
            Intent::Reject { code: 486 },
            Intent::Cancel,
            Intent::HangUp,
            Intent::PublishPresence { open: true, note: "n".into() },
            Intent::RefreshPresence,
            Intent::WithdrawPresence,
            Intent::Subscribe { to: p.clone() },
            Intent::Unsubscribe { to: p.clone() },
            Intent::AddContact { to: p.clone() },
            Intent::ApproveContact { to: p.clone() },
            Intent::DenyContact { to: p.clone() },
            Intent::PreApproveContact { to: p.clone() },
            Intent::CancelSubscription { to: p.clone() },
            Intent::VerifyCaps { of: p.clone() },
            Intent::ExpectCaller { caller: Some(p.clone()) },
            Intent::ExpectCallCaution { warned: true },
            Intent::ExpectProtectionWarning { warned: false },
            Intent::SendRaw { wire: Wire::Sip, text: "x".into() },
        ];
        for i in &all {
            match i {
                Intent::Connect | Intent::Disconnect | Intent::Register | Intent::Unregister | Intent::Message { .. }
                | Intent::Chat { .. } | Intent::SetPresence { .. } | Intent::Call { .. } | Intent::CallClaiming { .. }
                | Intent::Escalate | Intent::Answer | Intent::Reject { .. } | Intent::Cancel | Intent::HangUp
                | Intent::PublishPresence { .. } | Intent::RefreshPresence | Intent::WithdrawPresence | Intent::Subscribe { .. }
                | Intent::Unsubscribe { .. } | Intent::AddContact { .. } | Intent::ApproveContact { .. } | Intent::DenyContact { .. }
                | Intent::PreApproveContact { .. } | Intent::CancelSubscription { .. } | Intent::VerifyCaps { .. }
                | Intent::ExpectCaller { .. } | Intent::ExpectCallCaution { .. } | Intent::ExpectProtectionWarning { .. }
                | Intent::SendRaw { .. } => {}
            }
        }
        all
    }

    fn schema() -> serde_json::Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/driver-protocol.schema.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    #[test]
    fn the_json_schema_lists_every_action_with_its_fields_and_every_setup_field() {
        let schema = schema();
        let listed = schema["$defs"]["intent"]["oneOf"].as_array().unwrap();
        let all = one_of_each();
        assert_eq!(listed.len(), all.len(), "one schema entry per action");
        for i in all {
            let v = serde_json::to_value(&i).unwrap();
            let entry = listed.iter().find(|e| e["properties"]["action"]["const"] == v["action"]).unwrap_or_else(|| panic!("schema lacks {}", i.name()));
            assert_eq!(keys(&entry["properties"]), keys(&v), "{}", i.name());
        }
        let setup = Setup::new(
            &ActorDecl { name: "a".into(), kind: ActorKind::Dual, sip_transport: Transport::Udp, video: false, on_phone_profile: false, xmpp_tls: false, behaviour: Default::default(), account_of: None, resource: None },
            Account { user: "u".into(), password: "p".into(), domain: "d".into() },
            Taps::default(),
            None,
        );
        let v = serde_json::to_value(&setup).unwrap();
        assert_eq!(keys(&schema["$defs"]["setup"]["properties"]), keys(&v));
        assert_eq!(keys(&schema["$defs"]["setup"]["properties"]["taps"]["properties"]), keys(&v["taps"]));
        assert_eq!(serde_json::from_value::<Setup>(v).unwrap(), setup);
    }
}
