//! Reading scenario files: YAML with spans, then checks that name file:line:column.

use super::interpolate::{check_reference, references, ACTOR_FIELDS};
use super::matching::{lint_sip_pattern, lint_xml_pattern, parse_xml_pattern};
use super::model::{Action, ActorDecl, ActorKind, Behaviour, Capture, Scenario, Step, Wire, DEFAULT_QUIET, DEFAULT_WITHIN};
use crate::trace::frame::Transport;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A scenario file problem, located.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{path}:{line}:{column}: {message}")]
pub struct ScenarioError {
    pub path: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    #[source_code]
    src: miette::NamedSource<String>,
    #[label("here")]
    span: Option<miette::SourceSpan>,
    #[help]
    help: Option<String>,
}

/// Where in the file a problem is.
#[derive(Debug, Clone, Copy)]
struct At {
    line: u64,
    column: u64,
    offset: Option<usize>,
}

/// A YAML reader's message in the project's words: no type names of the reader or of sixpac's
/// internals, and no second location (the error already starts with `file:line:column`).
pub(crate) fn in_our_words(msg: &str) -> String {
    let msg = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(", column ") => &msg[..i],
        _ => msg,
    };
    if msg.contains("untagged enum RawActor") {
        return "an actor is a kind (`dual`, `xmpp+tls`), or a mapping `{ kind: …, account: …, resource: …, presence: false, roster: false, priority: 5, caps: [...], answers: false }`".into();
    }
    if msg.contains("untagged enum RawValue") {
        return "a step's value must be text, or a `{ match: …, within: … }` mapping".into();
    }
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return format!("`{key}` is given twice");
    }
    if msg.starts_with("invalid u") || msg.starts_with("invalid i") {
        return "expected a whole number (0 or more)".into();
    }
    if msg.contains("budget breached") {
        return "the file is too large, or nests too deeply, to be a scenario".into();
    }
    msg.to_string()
}

/// Where a top-level key is written (its line, column 1), or the file's start.
fn top_level_key(source: &str, key: &str) -> At {
    let mut offset = 0;
    for (i, line) in source.lines().enumerate() {
        if line.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':')) {
            return At { line: i as u64 + 1, column: 1, offset: Some(offset) };
        }
        offset += line.len() + 1;
    }
    At { line: 1, column: 1, offset: None }
}

impl At {
    fn of(loc: &serde_saphyr::Location) -> At {
        At {
            line: loc.line(),
            column: loc.column(),
            offset: loc.span().byte_offset().map(|o| o as usize),
        }
    }
}

struct Ctx<'a> {
    path: &'a str,
    source: &'a str,
}

impl Ctx<'_> {
    fn error(&self, at: At, message: impl Into<String>, help: Option<String>) -> ScenarioError {
        let offset = at.offset.or_else(|| offset_of(self.source, at.line, at.column));
        ScenarioError {
            path: self.path.to_string(),
            line: at.line,
            column: at.column,
            message: message.into(),
            src: miette::NamedSource::new(self.path, self.source.to_string()),
            span: offset.map(|o| miette::SourceSpan::from((o, 1))),
            help,
        }
    }
}

fn offset_of(source: &str, line: u64, column: u64) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let start: usize = source.split_inclusive('\n').take(line as usize - 1).map(str::len).sum();
    Some((start + column.saturating_sub(1) as usize).min(source.len()))
}

/// A YAML mapping that keeps its entries in file order.
struct Ordered<K, V>(Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Ordered<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for V2<K, V> {
            type Value = Ordered<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key()? {
                    out.push((k, m.next_value()?));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V2(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawValue {
    Text(String),
    Map(BTreeMap<String, RawOption>),
}

/// An actor as written: its kind (`dual+tls`), or a mapping with the kind and what the
/// reference client does by itself.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawActor {
    Kind(String),
    Map(RawActorMap),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActorMap {
    #[serde(default)]
    kind: Option<String>,
    /// Share this actor's account, as another resource.
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    presence: Option<bool>,
    #[serde(default)]
    roster: Option<bool>,
    #[serde(default)]
    priority: Option<i8>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    answers: Option<bool>,
}

impl RawActor {
    fn kind(&self) -> &str {
        match self {
            RawActor::Kind(k) => k,
            // Another resource of an account is an XMPP client.
            RawActor::Map(m) => m.kind.as_deref().unwrap_or(if m.account.is_some() { "xmpp" } else { "" }),
        }
    }

    fn map(&self) -> Option<&RawActorMap> {
        match self {
            RawActor::Kind(_) => None,
            RawActor::Map(m) => Some(m),
        }
    }

    fn behaviour(&self) -> Behaviour {
        let d = Behaviour::default();
        match self {
            RawActor::Kind(_) => d,
            RawActor::Map(m) => Behaviour {
                initial_presence: m.presence.unwrap_or(d.initial_presence),
                roster: m.roster.unwrap_or(d.roster),
                priority: m.priority,
                features: m.caps.clone(),
                answers: m.answers.unwrap_or(d.answers),
            },
        }
    }
}

/// A step option's value: a scalar, or a mapping (`capture: { q: "iq@id" }`).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawOption {
    Scalar(Scalar),
    Map(Ordered<String, String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    title: String,
    #[serde(default)]
    requirements: Vec<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    needs: Vec<String>,
    /// `compare` (the default) or `none`.
    #[serde(default)]
    trace: Option<Spanned<String>>,
    #[serde(default)]
    unconverted: Vec<String>,
    #[serde(default)]
    faults: Vec<Spanned<RawFault>>,
    /// How `receives` steps pick their frame unless a step says: `any` or `next`.
    #[serde(default)]
    order: Option<Spanned<String>>,
    profiles: Vec<Spanned<String>>,
    actors: Ordered<Spanned<String>, Spanned<RawActor>>,
    steps: Vec<Ordered<Spanned<String>, Spanned<RawValue>>>,
}

/// One of the taps' faults, as written:
/// - `{ drop: MESSAGE, copies: 2 }`, `{ delay: MESSAGE, by: 800ms }`, `{ duplicate: MESSAGE }`,
///   `{ reorder: MESSAGE, skip: 1 }`: SIP over UDP, the first `copies` (1 unless said) client
///   requests with that method, after `skip` (0 unless said) of them went through untouched;
/// - `{ reset: xmpp, after: 400 }`, `{ stall: sip, after: 400, for: 3s }`: XMPP or SIP
///   connections (TCP, TLS), once their client has sent `after` bytes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    drop: Option<String>,
    delay: Option<String>,
    duplicate: Option<String>,
    reorder: Option<String>,
    reset: Option<String>,
    stall: Option<String>,
    copies: Option<usize>,
    skip: Option<usize>,
    by: Option<String>,
    after: Option<u64>,
    #[serde(rename = "for")]
    lasting: Option<String>,
}

impl RawFault {
    /// The rule it declares, or what is wrong with it.
    fn rule(&self) -> Result<crate::tap::FaultRule, String> {
        use crate::tap::fault::{DatagramFault, StreamFault};
        use crate::tap::FaultRule;
        let actions = [
            ("drop", &self.drop),
            ("delay", &self.delay),
            ("duplicate", &self.duplicate),
            ("reorder", &self.reorder),
            ("reset", &self.reset),
            ("stall", &self.stall),
        ];
        let named: Vec<(&str, &String)> = actions.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v))).collect();
        let [(action, what)] = named.as_slice() else {
            return Err("a fault names exactly one of drop, delay, duplicate, reorder, reset, stall".into());
        };
        let copies = self.copies.unwrap_or(1);
        let duration = |key: &str, v: &Option<String>| -> Result<Duration, String> {
            let v = v.as_deref().ok_or_else(|| format!("`{action}` needs `{key}:` (a duration such as 500ms)"))?;
            parse_duration(v).ok_or_else(|| format!("`{key}: {v}` is not a duration (500ms, 2s)"))
        };
        let unused = |keys: &[(&str, bool)]| match keys.iter().find(|(_, set)| *set) {
            Some((k, _)) => Err(format!("`{k}:` means nothing to `{action}`")),
            None => Ok(()),
        };
        if matches!(*action, "drop" | "delay" | "duplicate" | "reorder") {
            unused(&[("after", self.after.is_some()), ("for", self.lasting.is_some())])?;
            if *action != "delay" {
                unused(&[("by", self.by.is_some())])?;
            }
            let method = what.trim();
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!("`{action}: {what}` must name a SIP method (MESSAGE, INVITE)"));
            }
            let fault = match *action {
                "drop" => DatagramFault::Drop,
                "delay" => DatagramFault::Delay(duration("by", &self.by)?),
                "duplicate" => DatagramFault::Duplicate,
                _ => DatagramFault::Reorder,
            };
            return Ok(FaultRule::Datagram { prefix: format!("{method} "), skip: self.skip.unwrap_or(0), copies, action: fault });
        }
        unused(&[("by", self.by.is_some()), ("skip", self.skip.is_some())])?;
        if *action == "reset" {
            unused(&[("for", self.lasting.is_some())])?;
        }
        let proto = match what.trim() {
            "xmpp" => crate::wire::Proto::Xmpp,
            "sip" => crate::wire::Proto::Sip,
            other => return Err(format!("`{action}: {other}` must be xmpp or sip (its connections over TCP or TLS)")),
        };
        let after = self.after.ok_or_else(|| format!("`{action}` needs `after:` (client bytes before it strikes)"))?;
        let fault = if *action == "reset" { StreamFault::Reset } else { StreamFault::Stall(duration("for", &self.lasting)?) };
        Ok(FaultRule::Stream { proto, after, copies, action: fault })
    }
}

/// Parse `5s`, `500ms`, `1.5s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(p) => (&s[..p], &s[p..]),
        None => (s, "s"),
    };
    let n: f64 = num.trim().parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// The raw step verbs (`alice sends xmpp`).
pub const VERBS: &[&str] = &["sends xmpp", "sends sip", "receives xmpp", "receives sip", "receives nothing"];
/// The actions (`alice: call bob`), as the error messages and docs/scenarios.md name them.
pub const ACTIONS: &[&str] = &[
    "connect",
    "disconnect",
    "wait <duration>",
    "register",
    "unregister",
    "message <actor> <text>",
    "call <actor> [with video]",
    "answer",
    "reject [busy|decline]",
    "cancel",
    "hang up",
    "chat <actor> <text>",
    "verify caps of <actor>",
    "escalate",
    "call <actor> claiming <actor>",
    "expect caller <actor>",
    "expect unverified caller",
    "set presence <available|away|chat|dnd|xa> [status]",
    "publish presence <open|closed> [note]",
    "refresh presence",
    "withdraw presence",
    "subscribe to presence of <actor>",
    "unsubscribe from presence of <actor>",
    "add contact <actor>",
    "approve contact <actor>",
    "deny contact <actor>",
    "pre-approve contact <actor>",
    "cancel subscription to <actor>",
    "expect [no] protection warning",
    "expect [no] call caution",
];

/// Read a high-level action (`call bob`, `reject decline`); the error says what is wrong.
fn parse_action(text: &str, actors: &[String]) -> Result<Action, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let actor = |w: Option<&&str>| -> Result<String, String> {
        let name = w.ok_or("this action names an actor")?;
        if actors.iter().any(|a| a == name) {
            Ok(name.to_string())
        } else {
            Err(format!("unknown actor `{name}` (declared: {})", actors.join(", ")))
        }
    };
    Ok(match words.as_slice() {
        ["connect"] => Action::Connect,
        ["disconnect"] => Action::Disconnect,
        ["wait", d] => Action::Wait { duration: parse_duration(d).ok_or_else(|| format!("`{d}` is not a duration (e.g. 500ms, 2s)"))? },
        ["register"] => Action::Register,
        ["unregister"] => Action::Unregister,
        ["message", to, rest @ ..] if !rest.is_empty() => {
            // The text keeps its own spacing: everything after the actor name.
            let after = text.trim_start()["message".len()..].trim_start()[to.len()..].trim_start();
            Action::Message { to: actor(Some(to))?, text: after.to_string() }
        }
        ["chat", to, rest @ ..] if !rest.is_empty() => {
            let after = text.trim_start()["chat".len()..].trim_start()[to.len()..].trim_start();
            Action::Chat { to: actor(Some(to))?, text: after.to_string() }
        }
        ["escalate"] => Action::Escalate,
        ["call", to, "claiming", claimed] => Action::CallClaiming { to: actor(Some(to))?, claimed: actor(Some(claimed))? },
        ["expect", "caller", who] => Action::ExpectCaller { actor: Some(actor(Some(who))?) },
        ["expect", "unverified", "caller"] => Action::ExpectCaller { actor: None },
        ["set", "presence", show, status @ ..] if ["available", "away", "chat", "dnd", "xa"].contains(show) => {
            Action::SetPresence { show: show.to_string(), status: status.join(" ") }
        }
        ["verify", "caps", "of", of] => Action::VerifyCaps { of: actor(Some(of))? },
        ["call", to] => Action::Call { to: actor(Some(to))?, video: false },
        ["call", to, "with", "video"] => Action::Call { to: actor(Some(to))?, video: true },
        ["answer"] => Action::Answer,
        ["reject"] | ["reject", "busy"] => Action::Reject { code: 486 },
        ["reject", "decline"] => Action::Reject { code: 603 },
        ["cancel"] => Action::Cancel,
        ["hang", "up"] => Action::HangUp,
        ["publish", "presence", state, note @ ..] if *state == "open" || *state == "closed" => {
            Action::PublishPresence { open: *state == "open", note: note.join(" ") }
        }
        ["refresh", "presence"] => Action::RefreshPresence,
        ["withdraw", "presence"] => Action::WithdrawPresence,
        ["subscribe", "to", "presence", "of", to] => Action::Subscribe { to: actor(Some(to))? },
        ["unsubscribe", "from", "presence", "of", to] => Action::Unsubscribe { to: actor(Some(to))? },
        ["add", "contact", who] => Action::AddContact { jid_of: actor(Some(who))? },
        ["approve", "contact", who] => Action::ApproveContact { jid_of: actor(Some(who))? },
        ["deny", "contact", who] => Action::DenyContact { jid_of: actor(Some(who))? },
        ["pre-approve", "contact", who] => Action::PreApproveContact { jid_of: actor(Some(who))? },
        ["cancel", "subscription", "to", who] => Action::CancelSubscription { jid_of: actor(Some(who))? },
        ["expect", "call", "caution"] => Action::ExpectCallCaution { warned: true },
        ["expect", "no", "call", "caution"] => Action::ExpectCallCaution { warned: false },
        ["expect", "protection", "warning"] => Action::ExpectProtectionWarning { warned: true },
        ["expect", "no", "protection", "warning"] => Action::ExpectProtectionWarning { warned: false },
        _ => return Err(format!("unknown action `{}`", text.trim())),
    })
}

/// Read and check one scenario file. `id` is its path below the scenarios root.
pub fn parse_scenario(
    path: &Path,
    id: &str,
    source: &str,
    known_profiles: &[String],
    known_requirements: Option<&[String]>,
) -> Result<Scenario, ScenarioError> {
    let shown = path.display().to_string();
    let ctx = Ctx { path: &shown, source };
    let raw: RawScenario = serde_saphyr::from_str(source).map_err(|e| {
        let at = e.location().map(|l| At::of(&l)).unwrap_or(At { line: 1, column: 1, offset: None });
        let msg = in_our_words(&e.without_snippet().to_string());
        let help = msg.contains("unknown field").then(|| {
            "top-level keys: title, requirements, tags, needs, faults, order, trace, unconverted, profiles, actors, steps".to_string()
        });
        ctx.error(at, msg, help)
    })?;

    if raw.profiles.is_empty() {
        // The scenario would never run, and a run of it would report nothing at all.
        return Err(ctx.error(
            top_level_key(source, "profiles"),
            "`profiles` is empty: the scenario would never run",
            Some(format!("name at least one of: {}", known_profiles.join(", "))),
        ));
    }
    for p in &raw.profiles {
        if !known_profiles.contains(&p.value) {
            return Err(ctx.error(
                At::of(&p.referenced),
                format!("unknown profile `{}`", p.value),
                Some(format!("profiles under fixtures/profiles/: {}", known_profiles.join(", "))),
            ));
        }
    }
    if let Some(known) = known_requirements {
        if let Some(r) = raw.requirements.iter().find(|r| !known.contains(&r.value)) {
            return Err(ctx.error(
                At::of(&r.referenced),
                format!("requirement `{}` is not in the catalog", r.value),
                Some("add it to fixtures/requirements.yaml, or fix the ID".into()),
            ));
        }
    }
    let mut actors = Vec::new();
    for (name, actor) in &raw.actors.0 {
        let kind_text = actor.value.kind();
        let (base, sip_transport) = match kind_text.rsplit_once('/') {
            Some((b, "tcp")) => (b, Transport::Tcp),
            Some((b, "tls")) => (b, Transport::Tls),
            Some(_) => ("?", Transport::Udp),
            None => (kind_text, Transport::Udp),
        };
        let mut parts = base.split('+');
        // An XMPP-only actor has no SIP leg to put on another transport.
        let k = match (parts.next(), sip_transport) {
            (Some("dual"), _) => Some(ActorKind::Dual),
            (Some("xmpp"), Transport::Udp) => Some(ActorKind::Xmpp),
            (Some("sip"), _) => Some(ActorKind::Sip),
            _ => None,
        };
        let mods: Vec<&str> = parts.collect();
        let allowed: &[&str] = match k {
            Some(ActorKind::Dual) => &["video", "onphone", "tls"],
            Some(ActorKind::Xmpp) => &["tls"],
            Some(ActorKind::Sip) | None => &[],
        };
        let Some(k) = k.filter(|_| mods.iter().all(|m| allowed.contains(m))) else {
            return Err(ctx.error(
                At::of(&actor.referenced),
                format!("unknown actor kind `{kind_text}`"),
                Some("one of: dual, xmpp, sip; dual takes +video, +onphone and +tls (XMPP under STARTTLS), xmpp takes +tls; add /tcp or /tls to put the SIP leg on TCP or TLS".into()),
            ));
        };
        let (video, on_phone_profile, xmpp_tls) = (mods.contains(&"video"), mods.contains(&"onphone"), mods.contains(&"tls"));
        if name.value.is_empty() || !name.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ctx.error(
                At::of(&name.referenced),
                format!("actor name `{}` must be letters, digits or _", name.value),
                None,
            ));
        }
        let behaviour = actor.value.behaviour();
        if behaviour != Behaviour::default() && k == ActorKind::Sip {
            return Err(ctx.error(At::of(&actor.referenced), "presence, roster, priority, caps and answers are for an XMPP leg; a sip actor has none", None));
        }
        let map = actor.value.map();
        let account_of = map.and_then(|m| m.account.clone());
        let resource = map.and_then(|m| m.resource.clone());
        if resource.as_deref().is_some_and(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            return Err(ctx.error(At::of(&actor.referenced), "a resource must be a word with no spaces", None));
        }
        if account_of.is_some() && k != ActorKind::Xmpp {
            return Err(ctx.error(At::of(&actor.referenced), "an actor that shares an account is another XMPP resource of it: kind xmpp", None));
        }
        actors.push(ActorDecl { name: name.value.clone(), kind: k, sip_transport, video, on_phone_profile, xmpp_tls, behaviour, account_of, resource });
    }
    // Who shares whose account: an actor declared here, one with an account of its own.
    for (a, (_, raw_actor)) in actors.iter().zip(&raw.actors.0) {
        let Some(owner) = &a.account_of else { continue };
        let ok = actors.iter().any(|b| &b.name == owner && b.account_of.is_none() && b.name != a.name && b.kind != ActorKind::Sip);
        if !ok {
            return Err(ctx.error(At::of(&raw_actor.referenced), format!("`account: {owner}` must name another actor with an XMPP account of its own"), None));
        }
        let resource = |x: &ActorDecl| x.resource.clone().unwrap_or_else(|| "sixpac".into());
        if actors.iter().any(|b| b.name != a.name && (b.name == *owner || b.account_of.as_ref() == Some(owner)) && resource(b) == resource(a)) {
            return Err(ctx.error(At::of(&raw_actor.referenced), format!("two resources of {owner}'s account are both `{}`: give each its own `resource:`", resource(a)), None));
        }
    }
    let names: Vec<String> = actors.iter().map(|a| a.name.clone()).collect();
    let next_by_default = match &raw.order {
        None => false,
        Some(o) => parse_order(&o.value).ok_or_else(|| ctx.error(At::of(&o.referenced), format!("`order: {}` is neither any nor next", o.value), Some(ORDER_HELP.into())))?,
    };
    let compare_trace = match &raw.trace {
        None => true,
        Some(t) if t.value == "compare" => true,
        Some(t) if t.value == "none" => false,
        Some(t) => return Err(ctx.error(At::of(&t.referenced), format!("`trace: {}` is neither compare nor none", t.value), Some("compare: the normalized trace must equal the expected one beside the scenario (the default); none: the steps alone decide".into()))),
    };
    let mut captured: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    for entry in &raw.steps {
        let [(key, value)] = entry.0.as_slice() else {
            let at = entry.0.first().map(|(k, _)| At::of(&k.referenced)).unwrap_or(At { line: 1, column: 1, offset: None });
            return Err(ctx.error(at, "a step is a mapping with exactly one key", Some("e.g. `- alice: connect`".into())));
        };
        steps.push(parse_step(&ctx, key, value, &names, next_by_default, &mut captured)?);
    }
    let mut faults = Vec::new();
    for f in &raw.faults {
        faults.push(f.value.rule().map_err(|e| ctx.error(At::of(&f.referenced), e, None))?);
    }
    Ok(Scenario {
        id: id.to_string(),
        path: path.to_path_buf(),
        title: raw.title,
        requirements: raw.requirements.into_iter().map(|r| r.value).collect(),
        tags: raw.tags,
        needs: raw.needs,
        compare_trace,
        unconverted: raw.unconverted,
        faults,
        profiles: raw.profiles.into_iter().map(|p| p.value).collect(),
        actors,
        steps,
    })
}

/// The options of a `receives` step's mapping (`receives nothing` takes the first two).
pub const RECEIVE_OPTIONS: &[&str] = &["match", "within", "order", "capture"];

/// The keys of an actor's mapping form.
pub const ACTOR_KEYS: &[&str] = &["kind", "account", "resource", "presence", "roster", "priority", "caps", "answers"];

/// What `order:` takes.
const ORDER_HELP: &str = "any: a `receives` takes any matching frame that arrived (the default); next: the next frame on the actor's connection must match";

fn parse_order(v: &str) -> Option<bool> {
    match v {
        "any" => Some(false),
        "next" => Some(true),
        _ => None,
    }
}

/// Refuse a `needs:` entry that no profile serves or lacks (a misspelt feature would make the
/// scenario inconclusive everywhere, silently), at the `needs` key.
pub fn check_needs(sc: &Scenario, source: &str, known: &[String]) -> Result<(), ScenarioError> {
    let shown = sc.path.display().to_string();
    let ctx = Ctx { path: &shown, source };
    match sc.needs.iter().find(|n| !known.contains(n)) {
        None => Ok(()),
        Some(n) => Err(ctx.error(top_level_key(source, "needs"), format!("unknown feature `{n}` in needs"), Some(format!("features the profiles serve or lack: {}", known.join(", "))))),
    }
}

fn parse_step(
    ctx: &Ctx,
    key: &Spanned<String>,
    value: &Spanned<RawValue>,
    actors: &[String],
    next_by_default: bool,
    captured: &mut Vec<String>,
) -> Result<Step, ScenarioError> {
    let kat = At::of(&key.referenced);
    let vat = At::of(&value.referenced);
    let (actor, verb) = key.value.trim().split_once(' ').unwrap_or((key.value.trim(), ""));
    let verb = verb.split_whitespace().collect::<Vec<_>>().join(" ");
    if !actors.iter().any(|a| a == actor) {
        return Err(ctx.error(kat, format!("unknown actor `{actor}`"), Some(format!("declared actors: {}", actors.join(", ")))));
    }
    if !verb.is_empty() && !VERBS.contains(&verb.as_str()) {
        return Err(ctx.error(
            kat,
            format!("unknown step `{verb}` for actor {actor}"),
            Some(format!("steps: `{actor}: <action>` ({}), or `{actor} <verb>` with verb one of: {}", ACTIONS.join(", "), VERBS.join(", "))),
        ));
    }
    let mut capture_map: Option<Vec<(String, String)>> = None;
    let (text, opts) = match &value.value {
        RawValue::Text(t) => (Some(t.clone()), BTreeMap::new()),
        RawValue::Map(m) => {
            let mut opts = BTreeMap::new();
            for (k, v) in m {
                match v {
                    RawOption::Scalar(x) => {
                        opts.insert(k.clone(), x.text());
                    }
                    RawOption::Map(map) if k == "capture" => capture_map = Some(map.0.clone()),
                    RawOption::Map(_) => return Err(ctx.error(vat, format!("`{k}` takes a value, not a mapping"), None)),
                }
            }
            if m.contains_key("capture") {
                opts.insert("capture".into(), String::new());
            }
            (None, opts)
        }
    };
    let allowed: &[&str] = match verb.as_str() {
        "receives nothing" => &RECEIVE_OPTIONS[..2],
        v if v.starts_with("receives") => RECEIVE_OPTIONS,
        _ => &[],
    };
    if let Some(bad) = opts.keys().find(|k| !allowed.contains(&k.as_str())) {
        let help = if allowed.is_empty() { "this step takes text".to_string() } else { format!("keys: {}", allowed.join(", ")) };
        return Err(ctx.error(vat, format!("unknown option `{bad}` for `{}`", key.value), Some(help)));
    }
    let within = match opts.get("within") {
        Some(w) => Some(parse_duration(w).ok_or_else(|| {
            ctx.error(vat, format!("`within: {w}` is not a duration"), Some("e.g. 500ms, 2s, 1.5s".into()))
        })?),
        None => None,
    };
    let body = text.or_else(|| opts.get("match").cloned()).ok_or_else(|| {
        ctx.error(vat, format!("`{}` needs text or `match:`", key.value), None)
    })?;
    for (_, r) in references(&body) {
        if !captured.contains(&r) {
            check_reference(&r, actors).map_err(|m| ctx.error(vat, m, None))?;
        }
    }
    let next = match opts.get("order") {
        None => next_by_default,
        Some(o) => parse_order(o).ok_or_else(|| ctx.error(vat, format!("`order: {o}` is neither any nor next"), Some(ORDER_HELP.into())))?,
    };
    if opts.contains_key("capture") && capture_map.is_none() {
        return Err(ctx.error(vat, "`capture` takes a mapping of names to paths", Some("e.g. capture: { q: \"iq@id\" } or { tag: \"To;tag\" }".into())));
    }
    let label = if verb.is_empty() { format!("{actor}: {}", body.trim()) } else { key.value.clone() };
    let wire_of = |w: &str| if w.ends_with("sip") { Wire::Sip } else { Wire::Xmpp };
    let action = match verb.as_str() {
        "" => parse_action(&body, actors).map_err(|m| ctx.error(vat, m, Some(format!("actions: {}", ACTIONS.join("; ")))))?,
        "sends xmpp" | "sends sip" => Action::Send { wire: wire_of(&verb), text: body },
        // `{any}` alone: no XMPP stanza at all (scansion's `receives: nothing`).
        "receives nothing" if body.trim() == crate::scenario::matching::ANY => {
            Action::ReceiveNothing { wire: Wire::Xmpp, pattern: body, within: within.unwrap_or(DEFAULT_QUIET) }
        }
        "receives nothing" => {
            let wire = if body.trim_start().starts_with('<') { Wire::Xmpp } else { Wire::Sip };
            check_pattern(ctx, vat, wire, &body)?;
            Action::ReceiveNothing { wire, pattern: body, within: within.unwrap_or(DEFAULT_QUIET) }
        }
        _ => {
            let wire = wire_of(&verb);
            check_pattern(ctx, vat, wire, &body)?;
            let mut capture = Vec::new();
            for (name, path) in capture_map.unwrap_or_default() {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || ACTOR_FIELDS.contains(&name.as_str()) {
                    return Err(ctx.error(vat, format!("capture name `{name}` must be letters, digits or _, and not one of {}", ACTOR_FIELDS.join(", ")), None));
                }
                crate::scenario::capture::check_path(wire, &path).map_err(|m| ctx.error(vat, m, None))?;
                captured.push(format!("{actor}.{name}"));
                capture.push(Capture { name, path });
            }
            Action::Receive { wire, pattern: body, within: within.unwrap_or(DEFAULT_WITHIN), next, capture }
        }
    };
    Ok(Step { actor: actor.to_string(), action, label, line: kat.line, column: kat.column })
}

fn check_pattern(ctx: &Ctx, at: At, wire: Wire, pattern: &str) -> Result<(), ScenarioError> {
    match wire {
        Wire::Xmpp => {
            let el = parse_xml_pattern(pattern).map_err(|e| ctx.error(at.clone(), format!("XML pattern does not parse: {e}"), None))?;
            lint_xml_pattern(&el).map_err(|e| ctx.error(at, format!("XML pattern can never be judged: {e}"), None))
        }
        Wire::Sip if pattern.trim().is_empty() => Err(ctx.error(at, "SIP pattern needs a start line", None)),
        Wire::Sip => lint_sip_pattern(pattern).map_err(|e| ctx.error(at, format!("SIP pattern: {e}"), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Scenario, ScenarioError> {
        parse_scenario(Path::new("t.yaml"), "t", src, &["p".to_string()], Some(&["R-1".to_string()]))
    }

    #[test]
    fn actors_take_switches_and_share_accounts_and_bad_ones_are_refused_where_written() {
        let sc = |actors: &str| format!("title: T\nprofiles: [p]\nactors:\n{actors}steps:\n  - juliet: connect\n");
        let ok = sc("  juliet: { kind: xmpp, presence: false, roster: false, answers: false, caps: [urn:x] }\n  juliet_phone: { account: juliet, resource: phone, priority: -1 }\n");
        let s = parse_scenario(Path::new("t.yaml"), "t", &ok, &["p".to_string()], None).unwrap();
        let b = &s.actors[0].behaviour;
        assert!(!b.initial_presence && !b.roster && !b.answers && b.features == Some(vec!["urn:x".to_string()]));
        assert_eq!((s.actors[1].account_of.as_deref(), s.actors[1].resource.as_deref(), s.actors[1].behaviour.priority), (Some("juliet"), Some("phone"), Some(-1)));
        assert_eq!(s.actors[1].kind, ActorKind::Xmpp);
        assert_eq!(s.account_owners(), [0, 0]);
        for (actors, want) in [
            ("  juliet: xmpp\n  p: { account: nobody, resource: x }\n", "`account: nobody` must name another actor"),
            ("  juliet: xmpp\n  p: { account: juliet }\n", "both `sixpac`"),
            ("  juliet: xmpp\n  p: { account: juliet, resource: x, kind: dual }\n", "kind xmpp"),
            ("  juliet: { kind: sip, presence: false }\n", "a sip actor has none"),
            ("  juliet: { kind: xmpp, presense: false }\n", "an actor is a kind"),
            ("  juliet: xmpp\n  p: { account: juliet, resource: \"a b\" }\n", "no spaces"),
        ] {
            let e = parse_scenario(Path::new("t.yaml"), "t", &sc(actors), &["p".to_string()], None).unwrap_err();
            assert!(e.message.contains(want), "{want}: got {}", e.message);
            assert!(e.line > 1, "located");
        }
    }

    #[test]
    fn order_and_capture_parse_and_bad_ones_are_refused_where_written() {
        let sc = |extra: &str, step: &str| {
            format!("title: T\nprofiles: [p]\n{extra}actors:\n  alice: dual\n  bob: dual\nsteps:\n  - alice: connect\n{step}")
        };
        let ok = sc("order: next\n", "  - bob receives xmpp: { match: \"<iq/>\", capture: { q: \"iq@id\" } }\n  - bob receives xmpp: { match: \"<iq id='${bob.q}'/>\", order: any }\n  - alice sends xmpp: \"<x a='${bob.q}'/>\"\n");
        let s = parse_scenario(Path::new("t.yaml"), "t", &ok, &["p".to_string()], None).unwrap();
        let Action::Receive { next, capture, .. } = &s.steps[1].action else { panic!() };
        assert!(*next, "the scenario's order");
        assert_eq!(capture, &[Capture { name: "q".into(), path: "iq@id".into() }]);
        let Action::Receive { next, .. } = &s.steps[2].action else { panic!() };
        assert!(!*next, "the step's own order wins");
        for (text, want) in [
            (sc("order: sometimes\n", ""), "`order: sometimes` is neither any nor next"),
            (sc("", "  - bob receives xmpp: { match: \"<iq/>\", order: first }\n"), "neither any nor next"),
            (sc("", "  - bob receives xmpp: { match: \"<iq/>\", capture: { q: \"iq@\" } }\n"), "capture path `iq@`"),
            (sc("", "  - bob receives xmpp: { match: \"<iq/>\", capture: { jid: \"iq@id\" } }\n"), "capture name `jid`"),
            (sc("", "  - bob receives xmpp: { match: \"<iq/>\", capture: iq@id }\n"), "`capture` takes a mapping"),
            (sc("", "  - bob receives nothing: { match: \"<iq/>\", capture: { q: \"iq@id\" } }\n"), "unknown option `capture`"),
            (sc("", "  - alice sends xmpp: \"<x a='${bob.q}'/>\"\n  - bob receives xmpp: { match: \"<iq/>\", capture: { q: \"iq@id\" } }\n"), "unknown field `q`"),
        ] {
            let e = parse_scenario(Path::new("t.yaml"), "t", &text, &["p".to_string()], None).unwrap_err();
            assert!(e.message.contains(want), "{want}: got {}", e.message);
            assert!(e.line > 1, "located: {}:{}", e.line, e.column);
        }
    }

    #[test]
    fn faults_parse_into_rules_and_bad_ones_are_refused_where_written() {
        use crate::tap::fault::{DatagramFault, StreamFault};
        use crate::tap::FaultRule;
        let with = |faults: &str| {
            format!("title: T\nprofiles: [p]\nfaults:\n{faults}\nactors:\n  alice: dual\nsteps:\n  - alice: connect\n")
        };
        let sc = parse(&with("  - { delay: MESSAGE, by: 800ms, skip: 1 }\n  - { stall: xmpp, after: 300, for: 2s, copies: 2 }")).unwrap();
        assert_eq!(
            sc.faults,
            [
                FaultRule::Datagram { prefix: "MESSAGE ".into(), skip: 1, copies: 1, action: DatagramFault::Delay(Duration::from_millis(800)) },
                FaultRule::Stream { proto: crate::wire::Proto::Xmpp, after: 300, copies: 2, action: StreamFault::Stall(Duration::from_secs(2)) },
            ]
        );
        for (fault, says) in [
            ("  - { delay: MESSAGE }", "`delay` needs `by:`"),
            ("  - { drop: MESSAGE, reset: xmpp }", "exactly one of"),
            ("  - { reset: irc, after: 3 }", "must be xmpp or sip"),
            ("  - { reset: xmpp }", "needs `after:`"),
            ("  - { reset: xmpp, after: 3, for: 2s }", "`for:` means nothing to `reset`"),
            ("  - { drop: 'MESSAGE sip:x' }", "must name a SIP method"),
            ("  - { stall: sip, after: 3, for: soon }", "not a duration"),
        ] {
            let e = parse(&with(fault)).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("t.yaml:4:"), "{fault}: {e}");
        }
    }

    #[test]
    fn reader_errors_are_in_the_projects_words_with_one_location() {
        let base = "title: T\nprofiles: [p]\nactors:\n  alice: dual\nsteps:\n  - alice: connect\n";
        for (src, says) in [
            (base.replace("- alice: connect", "- alice: [connect]"), "a step's value must be text"),
            (format!("title: U\n{base}"), "`title` is given twice"),
            (base.replace("steps:", "faults:\n  - { drop: MESSAGE, copies: many }\nsteps:"), "expected a whole number"),
        ] {
            let e = parse(&src).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            for internal in ["RawValue", "DuplicateKeyPolicy", "u64", "budget", " at line "] {
                assert!(!e.contains(internal), "{internal:?} in {e}");
            }
        }
        let huge = format!("{base}tags: [{}]\n", vec!["t"; 2_000_000].join(","));
        let e = parse(&huge).unwrap_err().to_string();
        assert!(!e.contains("budget") && !e.contains("Nodes"), "{e}");
    }

    #[test]
    fn patterns_that_can_never_match_are_refused_where_written() {
        let step = |s: &str| format!("title: T\nprofiles: [p]\nactors:\n  alice: dual\nsteps:\n  - alice: connect\n{s}");
        for (bad, says) in [
            ("  - alice receives sip: SIP/2.0 OK\n", "three digits"),
            ("  - alice receives sip: |\n      MESSAGE {any} SIP/2.0\n      Contact: x\n      !Contact\n", "both absent and present"),
            ("  - alice receives sip: |\n      MESSAGE {any} SIP/2.0\n      Content-Type text/plain\n", "has no `Name: value` colon"),
            ("  - alice receives xmpp: <{any}/>\n", "cannot stand for one"),
            ("  - alice receives nothing: \"<{any}/>\"\n", "cannot stand for one"),
            ("  - alice receives xmpp: <iq><q foo:bar='1'/></iq>\n", "prefix `foo` is not bound"),
            ("  - alice receives xmpp: <foo:message/>\n", "prefix `foo` is not bound"),
            ("  - alice receives xmpp: <message><x:y xmlns:z='u'/></message>\n", "prefix `x` is not bound"),
            ("  - alice receives xmpp: <iq sixpac:strikt='true'/>\n", "unknown directive"),
        ] {
            let e = parse(&step(bad)).unwrap_err();
            assert!(e.message.contains(says), "{says}: got {}", e.message);
            assert!(e.line == 7 || e.line == 8, "{}: at the step, line {}", e.message, e.line);
            assert!(e.to_string().contains(&format!("t.yaml:{}:", e.line)), "{bad}: {e}");
        }
        assert!(parse(&step("  - alice receives sip: |\n      MESSAGE {any} SIP/2.0\n      !Contact\n")).is_ok());
        assert!(parse(&step("  - alice receives xmpp: <p:x xmlns:p='urn:p'/>\n")).is_ok());
    }

    #[test]
    fn an_empty_profile_list_is_refused_where_it_is_written() {
        let src = "title: T\nactors:\n  alice: dual\nprofiles: []\nsteps:\n  - alice: connect\n";
        let e = parse_scenario(Path::new("s.yaml"), "s", src, &["p".into()], None).unwrap_err().to_string();
        assert!(e.contains("s.yaml:4:1") && e.contains("`profiles` is empty"), "{e}");
    }

    const GOOD: &str = "title: T\nprofiles: [p]\nactors:\n  alice: dual\n  bob: xmpp\nsteps:\n  - alice: connect\n  - alice sends xmpp: <message to='${bob.jid}'/>\n  - bob receives xmpp: { match: \"<message/>\", within: 2s }\n  - bob receives nothing: \"<presence/>\"\n";

    #[test]
    fn reads_a_good_file() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.actors.len(), 2);
        assert_eq!(s.actors[0].name, "alice");
        assert_eq!(s.steps.len(), 4);
        assert!(matches!(s.steps[2].action, Action::Receive { within, .. } if within == Duration::from_secs(2)));
        assert_eq!((s.steps[1].line, s.steps[1].column), (8, 5));
    }

    #[test]
    fn actor_kinds_carry_their_transports_and_modifiers() {
        let kinds = |a: &str, b: &str| parse(&GOOD.replace("alice: dual", &format!("alice: {a}")).replace("bob: xmpp", &format!("bob: {b}")));
        let s = kinds("dual+tls/tls", "xmpp+tls").unwrap();
        assert!(s.actors[0].xmpp_tls && s.actors[0].sip_transport == Transport::Tls);
        assert!(s.actors[1].xmpp_tls && s.actors[1].kind == ActorKind::Xmpp);
        let s = kinds("dual+video/tcp", "sip/tls").unwrap();
        assert!(s.actors[0].video && !s.actors[0].xmpp_tls && s.actors[0].sip_transport == Transport::Tcp);
        assert_eq!((s.actors[1].kind, s.actors[1].sip_transport), (ActorKind::Sip, Transport::Tls));
        for (a, b) in [("dual/udp", "xmpp"), ("dual", "xmpp/tls"), ("dual", "sip+tls"), ("dual+fast", "xmpp")] {
            let e = kinds(a, b).unwrap_err();
            assert!(e.to_string().contains("unknown actor kind"), "{a} {b}: {e}");
        }
    }

    #[test]
    fn misspelled_step_key_is_located() {
        let bad = GOOD.replace("alice sends xmpp", "alice sennds xmpp");
        let e = parse(&bad).unwrap_err();
        assert_eq!((e.line, e.column), (8, 5));
        assert!(e.to_string().starts_with("t.yaml:8:5: unknown step `sennds xmpp`"), "{e}");
    }

    #[test]
    fn other_mistakes_are_located() {
        let e = parse(&GOOD.replace("title", "titel")).unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        let e = parse(&GOOD.replace("${bob.jid}", "${bob.jdi}")).unwrap_err();
        assert_eq!(e.line, 8);
        assert!(e.message.contains("unknown field `jdi`"));
        let e = parse(&GOOD.replace("within: 2s", "within: soon")).unwrap_err();
        assert_eq!(e.line, 9);
        let e = parse(&GOOD.replace("[p]", "[nope]")).unwrap_err();
        assert_eq!((e.line, e.column), (2, 12));
        let e = parse(&GOOD.replace("alice: connect", "alice: conect")).unwrap_err();
        assert!(e.message.contains("unknown action"));
        let e = parse(&GOOD.replace("\"<message/>\"", "\"<message>\"")).unwrap_err();
        assert!(e.message.contains("XML pattern"));
        assert!(parse("title: [").is_err());
        let e = parse(&GOOD.replace("title: T\n", "title: T\nrequirements: [R-1, R-9]\n")).unwrap_err();
        assert_eq!((e.line, e.column), (2, 21), "{e}");
        assert!(e.message.contains("`R-9` is not in the catalog"));
    }

    #[test]
    fn high_level_actions() {
        let actors = ["alice".to_string(), "bob".to_string()];
        let a = |t: &str| parse_action(t, &actors);
        assert!(matches!(a("call bob with video"), Ok(Action::Call { video: true, .. })));
        assert!(matches!(a("reject decline"), Ok(Action::Reject { code: 603 })));
        assert!(matches!(a("hang  up"), Ok(Action::HangUp)));
        assert!(matches!(a("message bob Hello  there"), Ok(Action::Message { text, .. }) if text == "Hello  there"));
        assert!(matches!(a("publish presence closed On a call"), Ok(Action::PublishPresence { open: false, note }) if note == "On a call"));
        assert_eq!(a("call carol").unwrap_err(), "unknown actor `carol` (declared: alice, bob)");
        assert!(a("dance").unwrap_err().contains("unknown action"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1h"), None);
    }
}
