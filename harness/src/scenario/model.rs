//! What a scenario file means, once read.

use std::path::PathBuf;
use std::time::Duration;

/// Default deadline of an expectation.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(5);
/// Default window of `receives nothing`.
pub const DEFAULT_QUIET: Duration = Duration::from_secs(1);

/// Which legs an actor has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// SIP and XMPP (CUSAX).
    Dual,
    /// XMPP only.
    Xmpp,
    /// SIP only.
    Sip,
}

/// A participant.
#[derive(Debug, Clone)]
pub struct ActorDecl {
    pub name: String,
    pub kind: ActorKind,
    /// The SIP leg's transport: UDP, or TCP (`sip/tcp`, `dual/tcp`), or TLS (`dual/tls`).
    pub sip_transport: crate::trace::frame::Transport,
    /// A dual actor whose vCard types its SIP URI as video-capable (`dual+video`).
    pub video: bool,
    /// A dual actor that follows sixpac's own "on the phone" profile (`dual+onphone`).
    pub on_phone_profile: bool,
    /// The XMPP leg negotiates STARTTLS with the run's test CA (`dual+tls`, `xmpp+tls`).
    pub xmpp_tls: bool,
    /// What the reference client does by itself for this actor.
    pub behaviour: Behaviour,
    /// The actor whose account this one shares, as another resource (`account: juliet`).
    pub account_of: Option<String>,
    /// The XMPP resource it binds (the reference client's is `sixpac`).
    pub resource: Option<String>,
}

/// What the reference client does by itself when it plays an actor, set by the actor's
/// mapping form (`romeo: { kind: xmpp, presence: false, answers: false }`): a scenario can
/// then do these things itself, as scansion's scripts do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// Send initial presence at `connect` (and wait for its reflection).
    pub initial_presence: bool,
    /// Fetch the roster at `connect`.
    pub roster: bool,
    /// The priority in initial presence (RFC 6121 §4.7.2.3), if any.
    pub priority: Option<i8>,
    /// The disco#info features it answers with and hashes into its caps `ver` (XEP-0115);
    /// None: the reference client's own.
    pub features: Option<Vec<String>>,
    /// Answer requests addressed to the client (disco#info, caps queries, ping, roster
    /// pushes; service-unavailable to the rest) by itself.
    pub answers: bool,
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour { initial_presence: true, roster: true, priority: None, features: None, answers: true }
    }
}

/// Which protocol a raw step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wire {
    Sip,
    Xmpp,
}

/// One step's action.
#[derive(Debug, Clone)]
pub enum Action {
    /// Log in on every leg the actor has (SIP REGISTER first, then XMPP: CUSAX order).
    Connect,
    /// Close the actor's legs.
    Disconnect,
    /// Let time pass: for a server that finishes work asynchronously. Prefer `receives`.
    Wait { duration: Duration },
    /// SIP leg only: REGISTER (opening the leg if needed).
    Register,
    /// Remove the SIP registration (Expires: 0).
    Unregister,
    /// SIP MESSAGE (RFC 3428) to another actor's address-of-record; waits for the 2xx.
    Message { to: String, text: String },
    /// INVITE another actor (audio; video too when asked); does not wait for an answer. A dual
    /// caller calling a dual actor calls the SIP URI in that actor's vCard (RFC 7081 §3.3).
    Call { to: String, video: bool },
    /// Call `to` but claim to be `claimed` in Call-Info (a spoofing caller).
    CallClaiming { to: String, claimed: String },
    /// The last incoming call's Call-Info was confirmed as this actor (None: not confirmed).
    ExpectCaller { actor: Option<String> },
    /// Call the contact chatted with last (a chat becomes a call).
    Escalate,
    /// Broadcast presence: show (available, away, chat, dnd, xa) and status text.
    SetPresence { show: String, status: String },
    /// XEP-0115: the caps `ver` in the actor's latest presence matches its disco#info.
    VerifyCaps { of: String },
    /// Chat with another actor: XMPP `<message type='chat'>` (RFC 7081 §3: chat over XMPP).
    Chat { to: String, text: String },
    /// Wait for an incoming call, answer it with 200 and SDP, and wait for the ACK.
    Answer,
    /// Wait for an incoming call and reject it with this code (486 busy, 603 decline).
    Reject { code: u16 },
    /// CANCEL our ringing call and wait until it has ended.
    Cancel,
    /// BYE our established call and wait for the 200.
    HangUp,
    /// PUBLISH our presence (RFC 3903, PIDF): open or closed, with an optional note.
    PublishPresence { open: bool, note: String },
    /// Refresh our publication: SIP-If-Match and no body.
    RefreshPresence,
    /// Remove our publication: SIP-If-Match and Expires: 0.
    WithdrawPresence,
    /// SUBSCRIBE to another actor's presence (RFC 3856) and wait for the 2xx.
    Subscribe { to: String },
    /// End that subscription (Expires: 0) and wait for the 2xx.
    Unsubscribe { to: String },
    /// RFC 6121 §3: ask for a contact's presence, and wait for the roster push.
    AddContact { jid_of: String },
    /// Wait for a contact's subscription request and approve it.
    ApproveContact { jid_of: String },
    /// Wait for a contact's subscription request and refuse it.
    DenyContact { jid_of: String },
    /// Approve a contact's subscription before it is asked for (§3.4).
    PreApproveContact { jid_of: String },
    /// Cancel our subscription to a contact's presence (§3.3).
    CancelSubscription { jid_of: String },
    /// RFC 7081 §5: the last vCard-driven call came with a caution (or did not).
    ExpectCallCaution { warned: bool },
    /// RFC 7081 §7: the client warned (or did not) that its legs differ in protection.
    ExpectProtectionWarning { warned: bool },
    /// Send text as it is (after interpolation).
    Send { wire: Wire, text: String },
    /// Wait for a matching frame: any untaken one (the default), or with `next` the next one
    /// on the actor's connection (scansion's order; requests the client answers by itself are
    /// passed over unless the pattern is an iq). `capture` names values to take from it.
    Receive { wire: Wire, pattern: String, within: Duration, next: bool, capture: Vec<Capture> },
    /// Assert no matching frame arrives in the window.
    ReceiveNothing { wire: Wire, pattern: String, within: Duration },
}

/// A value a `receives` step takes from the frame it matched, for later steps as
/// `${actor.name}`: `iq@id` (an attribute of the top element, or of a child path like
/// `iq/query@node`), `message/body` (text), `To;tag` (a SIP header's parameter), `Call-ID` (a
/// header's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub name: String,
    pub path: String,
}

/// A step with where it came from.
#[derive(Debug, Clone)]
pub struct Step {
    pub actor: String,
    pub action: Action,
    /// What the step says, for progress and reports (`bob receives xmpp`).
    pub label: String,
    pub line: u64,
    pub column: u64,
}

/// A whole scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Path relative to the scenarios root, without extension (`basics/chat`).
    pub id: String,
    pub path: PathBuf,
    pub title: String,
    pub requirements: Vec<String>,
    pub tags: Vec<String>,
    /// Loss the SIP taps inject while the scenario runs.
    pub faults: Vec<crate::tap::FaultRule>,
    /// Server features the scenario depends on; a profile that lacks one gives `inconclusive`.
    pub needs: Vec<String>,
    /// Compare the normalized trace with an expected one (`trace: none` judges by the steps
    /// alone, as scansion does: imported scenarios have no expected traces).
    pub compare_trace: bool,
    /// What an importer could not convert (`file:line: what`): the scenario does not run and
    /// is `inconclusive` with these as the reason.
    pub unconverted: Vec<String>,
    pub profiles: Vec<String>,
    pub actors: Vec<ActorDecl>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Each actor's index of the actor whose account it uses (its own, or the one it shares).
    pub fn account_owners(&self) -> Vec<usize> {
        self.actors
            .iter()
            .enumerate()
            .map(|(i, a)| a.account_of.as_ref().and_then(|o| self.actors.iter().position(|b| &b.name == o)).unwrap_or(i))
            .collect()
    }

    /// The expected-trace file for a profile, beside the scenario file.
    pub fn expected_trace_path(&self, profile: &str) -> PathBuf {
        let stem = self.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.path.with_file_name(format!("{stem}.{profile}.trace"))
    }

    /// A file-name-safe form of the id.
    pub fn file_id(&self) -> String {
        self.id.replace(['/', '\\'], ".")
    }
}
