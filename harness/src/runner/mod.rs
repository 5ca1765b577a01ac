//! Running scenarios: accounts, actors, steps with deadlines, trace comparison, verdicts.

pub mod actor;
pub mod binding;
pub mod drive;
pub mod driver;
pub mod event;
pub mod evidence;
pub mod intent;
pub mod suite;

use crate::ids::{new_branch, token};
use crate::scenario::{Action, Scenario, Wire};
use crate::servers::ServerSet;
use crate::trace::frame::{Frame, Proto, Transport};
use crate::trace::attribution;
use crate::trace::normalize::{normalize, AddrName, NormalizeContext};
use actor::{Account, Actor, Endpoints, StepError};
use binding::Binding;
use driver::{ClientFile, Driver};
use event::{Event, StepRecord, StepStatus};
use intent::{Intent, Peer, Setup, Taps};
use evidence::{Cursor, Evidence, Pattern};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// How one scenario on one profile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Inconclusive,
    Fail,
    Error,
}

impl Verdict {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Error => "error",
        }
    }
}

/// Deadline for `connect` (REGISTER with challenge, then SASL and bind).
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// Deadline for a high-level step (a MESSAGE's 2xx, an answer's ACK, a BYE's 200).
pub const STEP_DEADLINE: Duration = Duration::from_secs(10);
/// How long a server may take to answer a liveness probe after a failed step.
pub const LIVENESS_DEADLINE: Duration = Duration::from_secs(2);
/// Deadline for closing streams at the end of a scenario.
pub const CLOSE_DEADLINE: Duration = Duration::from_secs(3);

/// The result of one scenario × profile.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: String,
    pub title: String,
    pub profile: String,
    pub requirements: Vec<String>,
    pub verdict: Verdict,
    pub message: String,
    pub diff: Option<String>,
    pub duration: Duration,
    /// When the scenario began (wall clock, to line it up with outside captures).
    pub started: std::time::SystemTime,
    pub frames: Vec<Frame>,
    pub normalized: String,
    pub expected_path: PathBuf,
    /// Actors played by a client under test, and which (`name version`).
    pub clients: std::collections::BTreeMap<String, String>,
    /// Each such client's log (its events and its driver's stderr).
    pub client_logs: std::collections::BTreeMap<String, String>,
    /// The client whose expected traces apply, when not the reference client's.
    pub trace_owner: Option<String>,
    /// Whether the normalized trace was compared with an expected one.
    pub trace_compared: bool,
    /// A server died or stopped answering: the profile's remaining scenarios cannot run.
    pub servers_gone: bool,
    /// Each step as it ran (steps after the one that ended the scenario are `Skipped`).
    pub steps: Vec<StepRecord>,
    /// Every address the frames show, named: actor legs (`alice.sip`), their taps' upstream
    /// sockets (`alice.sip~tap`), taps (`kamailio.tap`), servers (`kamailio`).
    pub cast: Vec<AddrName>,
    /// The frames' time zero, in microseconds since the Unix epoch.
    pub clock_unix_us: u64,
    /// The `seq` of the frame behind each numbered block of the normalized trace.
    pub normalized_seqs: Vec<u64>,
}

impl Outcome {
    /// The matrix column it belongs to: its profile, and the clients under test that played
    /// in it (`prosody+kamailio · alice=baresip 1.0.0`).
    pub fn column(&self) -> String {
        column(&self.profile, &self.clients)
    }

    /// How its files are named in the report: `<scenario with dots>.<profile>`.
    pub fn file_base(&self) -> String {
        file_base(&self.scenario, &self.profile)
    }

    /// A passing outcome with nothing recorded yet, to be filled in by the run.
    pub fn new(sc: &Scenario, profile: &str) -> Outcome {
        Outcome {
            scenario: sc.id.clone(),
            title: sc.title.clone(),
            profile: profile.into(),
            requirements: sc.requirements.clone(),
            verdict: Verdict::Pass,
            message: String::new(),
            diff: None,
            duration: Duration::ZERO,
            started: std::time::SystemTime::now(),
            frames: Vec::new(),
            normalized: String::new(),
            expected_path: sc.expected_trace_path(profile),
            clients: Default::default(),
            client_logs: Default::default(),
            trace_owner: None,
            trace_compared: true,
            servers_gone: false,
            steps: sc
                .steps
                .iter()
                .map(|st| StepRecord { label: st.label.clone(), actor: st.actor.clone(), line: st.line, column: st.column, status: StepStatus::Skipped, start: 0.0, end: 0.0, frames: Vec::new() })
                .collect(),
            cast: Vec::new(),
            clock_unix_us: 0,
            normalized_seqs: Vec::new(),
        }
    }
}

/// Run options that change verdict handling.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions<'a> {
    /// Write the expected traces instead of comparing.
    pub accept: bool,
    /// Make the reference client break a CUSAX rule on purpose.
    pub misbehave: Option<actor::cusax::Misbehaviour>,
    /// Actors played by clients under test: (actor name, or `all`; its client file).
    pub clients: &'a [(String, ClientFile)],
}

impl RunOptions<'_> {
    /// The client file that plays `actor`, if any (a binding by name wins over `all`).
    pub fn client_for(&self, actor: &str) -> Option<&ClientFile> {
        self.clients.iter().find(|(a, _)| a == actor).or_else(|| self.clients.iter().find(|(a, _)| a == "all")).map(|(_, c)| c)
    }
}

fn fresh(kind: &str) -> String {
    match kind {
        "branch" => new_branch(),
        "tag" => token(10),
        "call_id" => token(20),
        _ => token(8),
    }
}

/// Fresh, unique accounts for a scenario's actors, in declaration order; an actor that shares
/// another's account (`account: juliet`) gets that one.
pub fn plan_accounts(sc: &Scenario, domain: &str) -> Vec<Account> {
    let own: Vec<Account> = sc.actors.iter().map(|a| Account { user: format!("{}_{}", a.name, token(8)), password: token(16), domain: domain.into() }).collect();
    share_accounts(sc, own)
}

/// `accounts` (one per actor) with each sharing actor given its owner's.
pub fn share_accounts(sc: &Scenario, accounts: Vec<Account>) -> Vec<Account> {
    sc.account_owners().into_iter().map(|o| accounts[o].clone()).collect()
}

/// How the wire names each actor's account, for attribution: `user` for an account's owner and
/// `user/resource` for every actor, so that a bound JID tells two resources of one account apart.
fn account_keys(sc: &Scenario, accounts: &[Account]) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    for (d, a) in sc.actors.iter().zip(accounts) {
        keys.push((format!("{}/{}", a.user, d.resource.as_deref().unwrap_or(crate::runner::actor::RESOURCE)), d.name.clone()));
    }
    for (d, a) in sc.actors.iter().zip(accounts).filter(|(d, _)| d.account_of.is_none()) {
        keys.push((a.user.clone(), d.name.clone()));
    }
    keys
}

/// Run one scenario against a started server set, with the accounts planned for it;
/// `foreign` names the accounts of scenarios that may run beside it on the same servers (its
/// own may be among them).
pub async fn run_scenario(
    sc: &Scenario,
    accounts: &[Account],
    foreign: &[String],
    set: &ServerSet,
    opts: RunOptions<'_>,
    mut emit: impl FnMut(&Event),
) -> Outcome {
    let started = Instant::now();
    let profile = set.profile.name.as_str();
    let mut outcome = Outcome::new(sc, profile);
    outcome.clock_unix_us = set.recorder.epoch_unix_us();
    if let Some(why) = set.profile.cannot_serve(&sc.needs) {
        outcome.verdict = Verdict::Inconclusive;
        outcome.message = why;
        return outcome;
    }
    if !sc.unconverted.is_empty() {
        outcome.verdict = Verdict::Inconclusive;
        outcome.message = format!("imported with parts that could not be converted, so not run:\n  {}", sc.unconverted.join("\n  "));
        return outcome;
    }
    let ep = Endpoints {
        xmpp: set.endpoint(Proto::Xmpp, Transport::Tcp),
        sip: set.endpoint(Proto::Sip, Transport::Udp),
        sip_tcp: set.endpoint(Proto::Sip, Transport::Tcp),
        sip_tls: set.endpoint(Proto::Sip, Transport::Tls),
        tls: set.pki.as_ref().map(|p| p.client.clone()),
    };
    let taps = Taps { xmpp: ep.xmpp, sip_udp: ep.sip, sip_tcp: ep.sip_tcp, sip_tls: ep.sip_tls.filter(|_| ep.tls.is_some()) };
    let setups: Vec<Setup> = sc.actors.iter().zip(accounts).map(|(d, a)| Setup::new(d, a.clone(), taps.clone(), set.ca_file.clone())).collect();
    let peers: Vec<Peer> = sc
        .actors
        .iter()
        .zip(accounts)
        .map(|(d, a)| Peer { name: d.name.clone(), kind: d.kind, jid: format!("{}@{}", a.user, a.domain), sip: format!("sip:{}@{}", a.user, a.domain) })
        .collect();
    if let Err(e) = set.reset_accounts(accounts, Instant::now() + CONNECT_DEADLINE).await {
        outcome.verdict = Verdict::Error;
        outcome.message = e.to_string();
        return outcome;
    }
    let mut bindings: Vec<Binding> = Vec::new();
    for (decl, account) in sc.actors.iter().zip(accounts) {
        match opts.client_for(&decl.name) {
            None => bindings.push(Binding::Reference(Box::new(Actor::new(decl, account.clone(), opts.misbehave)))),
            // The mapping form's switches are the reference client's; a driver is not told them.
            Some(file) if decl.behaviour != crate::scenario::model::Behaviour::default() => {
                outcome.verdict = Verdict::Inconclusive;
                outcome.message = format!(
                    "{} is declared with presence, roster, priority, caps or answers switches, which only the reference client takes; {} cannot be given them",
                    decl.name, file.name
                );
                return outcome;
            }
            Some(file) => match Driver::start(file, &decl.name).await {
                Ok(d) => {
                    outcome.clients.insert(decl.name.clone(), d.label.clone());
                    bindings.push(Binding::Driver(Box::new(d)));
                }
                Err(e) => {
                    outcome.verdict = Verdict::Error;
                    outcome.message = format!("{} could not be played: {}", decl.name, step_message(e));
                    return outcome;
                }
            },
        }
    }
    outcome.expected_path = expected_path(sc, &set.profile.name, &opts);
    outcome.trace_owner = sc.actors.iter().find_map(|a| opts.client_for(&a.name).filter(|c| c.traces.is_some())).map(|c| c.name.clone());
    // Faults are the taps', so a scenario with faults runs alone on its profile (see suite).
    if !sc.faults.is_empty() {
        set.set_faults(&sc.faults);
    }
    let users = account_keys(sc, accounts);
    let mut evidence = Evidence::new(set.recorder.clone(), users, foreign.to_vec());
    let mut failure: Option<(usize, StepError)> = None;
    // What `capture:` took, as `actor.name` for `${…}`.
    let mut captures: HashMap<String, String> = HashMap::new();
    for (i, step) in sc.steps.iter().enumerate() {
        emit(&Event::StepStarted { scenario: &sc.id, profile, index: i + 1, of: sc.steps.len(), label: &step.label });
        let step_start = set.recorder.elapsed();
        let mut judged: Vec<u64> = Vec::new();
        // Only raw text and patterns hold `${…}`; the wire is read for them alone.
        let mut values: HashMap<String, String> = HashMap::new();
        if matches!(step.action, Action::Send { .. } | Action::Receive { .. } | Action::ReceiveNothing { .. }) {
            for (decl, account) in sc.actors.iter().zip(accounts) {
                values.extend(actor_values(&decl.name, account, &evidence.wire_values(&decl.name)));
            }
            values.extend(captures.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let idx = sc.actors.iter().position(|a| a.name == step.actor).expect("parser checked actors");
        let binding = &mut bindings[idx];
        let interp = |t: &str| crate::scenario::interpolate::interpolate(t, &values, fresh).map_err(StepError::Fail);
        let result = match &step.action {
            Action::Wait { duration } => {
                tokio::time::sleep(*duration).await;
                Ok(())
            }
            Action::Receive { wire, pattern, within, next, capture } => match interp(pattern) {
                Ok(p) => {
                    let how = Arrival { wire: *wire, pattern: &p, deadline: Instant::now() + *within, next: *next };
                    match expect_arrival(&mut evidence, binding, &step.actor, how, &mut judged).await {
                        Ok(f) => take_captures(&f, *wire, capture).map(|got| {
                            captures.extend(got.into_iter().map(|(k, v)| (format!("{}.{k}", step.actor), v)));
                        }),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            Action::ReceiveNothing { wire, pattern, within } => match interp(pattern) {
                Ok(p) => expect_no_arrival(&mut evidence, binding, &step.actor, *wire, &p, Instant::now() + *within, &mut judged).await,
                Err(e) => Err(e),
            },
            action => match intent_of(action, &peers, interp) {
                Ok(intent) => {
                    let within = if matches!(intent, Intent::Connect | Intent::Register) { CONNECT_DEADLINE } else { STEP_DEADLINE };
                    binding.perform(&intent, &setups[idx], &ep, within).await
                }
                Err(e) => Err(e),
            },
        };
        for notice in binding.take_notices() {
            emit(&Event::ToldUser { scenario: &sc.id, profile, actor: &step.actor, notice: &notice });
        }
        let record = &mut outcome.steps[i];
        record.start = step_start.as_secs_f64();
        record.end = set.recorder.elapsed().as_secs_f64();
        record.frames = judged;
        if result.is_ok() && matches!(step.action, Action::Connect) {
            evidence.connected(&step.actor);
        }
        record.status = match &result {
            Ok(()) => StepStatus::Done,
            Err(StepError::Fail(_)) => StepStatus::Fail,
            Err(StepError::Error(_)) => StepStatus::Error,
            Err(StepError::Inconclusive(_)) => StepStatus::Inconclusive,
        };
        emit(&Event::StepFinished { scenario: &sc.id, profile, step: record });
        for frame in evidence.newly_attributed() {
            emit(&Event::FrameRecorded { scenario: &sc.id, profile, frame: &frame });
        }
        match &result {
            Ok(()) => tracing::debug!(scenario = %sc.id, step = i + 1, "step done"),
            Err(e) => tracing::info!(scenario = %sc.id, step = i + 1, error = %redact(&step_message(e.clone()), accounts), "step did not succeed"),
        }
        if let Err(e) = result {
            failure = Some((i, e));
            break;
        }
    }
    if !sc.faults.is_empty() {
        set.set_faults(&[]);
    }
    // A step that failed may be the servers' doing: one that died or hangs is an error that
    // names it, not a failure of the client. Asked before the actors log out, which a hung
    // server would only make wait; the probe goes to the servers' own ports, in no trace.
    let crashed = match set.check_alive() {
        Err(e) => Some(e),
        // Not after an inconclusive step: the client could not do something, the servers are fine.
        Ok(()) if matches!(failure, Some((_, StepError::Fail(_) | StepError::Error(_)))) => set.check_answering(LIVENESS_DEADLINE).await.err(),
        Ok(()) => None,
    };
    if crashed.is_none() {
        await_quiet(&mut evidence, &set.recorder).await;
    }
    for (i, (b, setup)) in bindings.iter_mut().zip(&setups).enumerate() {
        match crashed {
            None => {
                b.finish(setup).await;
                let still: Vec<&str> = sc.actors[i + 1..].iter().map(|a| a.name.as_str()).collect();
                await_departure_told(&mut evidence, &sc.actors[i].name, &still).await;
            }
            Some(_) => b.abandon().await,
        }
    }
    for (b, decl) in bindings.iter().zip(&sc.actors) {
        if let Some(log) = b.log() {
            outcome.client_logs.insert(decl.name.clone(), log);
        }
    }

    let mut ctx = NormalizeContext {
        // The title, not the path: moving a scenario file does not change its trace.
        title: format!("{} on {}", sc.title, set.profile.name),
        addr_names: Vec::new(),
        caps_node: Some(crate::client::xmpp::features::CAPS_NODE.to_string()),
        ..Default::default()
    };
    drop(bindings);
    // Whose each connection is comes from the wire (the account it authenticated as), not
    // from what the client says about itself: the same evidence for every client.
    let (recorded, cast) = evidence.finish();
    let udp_clients: Vec<std::net::SocketAddr> = cast.legs.iter().filter(|l| l.transport == Transport::Udp).map(|l| l.client).collect();
    set.forget_clients(&udp_clients);
    let mut names = set.addr_names();
    for (decl, account) in sc.actors.iter().zip(accounts) {
        let legs: Vec<&attribution::Leg> = cast.legs.iter().filter(|l| l.actor == decl.name).collect();
        for l in &legs {
            let named = |addr, suffix: &str| AddrName {
                addr,
                proto: l.proto,
                carrier: l.transport.carrier(),
                name: format!("{}.{}{suffix}", decl.name, l.proto.name()),
            };
            names.push(named(l.client, ""));
            if let Some(up) = l.upstream {
                names.push(named(up, "~tap"));
            }
        }
        // A shared account's user is named after its owner.
        if decl.account_of.is_none() {
            ctx.literals.push((account.user.clone(), decl.name.clone()));
        }
        ctx.literals.push((account.password.clone(), "{password}".into()));
        ctx.actors.push((decl.name.clone(), legs.iter().map(|l| (l.client, l.proto)).collect()));
    }
    ctx.addr_names = first_names_first(names);
    outcome.frames = cast.frames(&recorded).into_iter().cloned().collect();
    let normalized = normalize(&outcome.frames, &ctx);
    outcome.normalized = normalized.text;
    outcome.normalized_seqs = normalized.seqs;
    outcome.cast = ctx.addr_names;
    outcome.duration = started.elapsed();

    if let Some(e) = crashed.or_else(|| set.check_alive().err()) {
        outcome.verdict = Verdict::Error;
        outcome.message = e.to_string();
        outcome.servers_gone = true;
        return outcome;
    }
    if let Some((i, e)) = failure {
        let step = &sc.steps[i];
        let at = format!("{}:{}:{}", sc.path.display(), step.line, step.column);
        let (v, m) = match e {
            StepError::Fail(m) => (Verdict::Fail, m),
            StepError::Error(m) => (Verdict::Error, m),
            StepError::Inconclusive(m) => (Verdict::Inconclusive, m),
        };
        outcome.verdict = v;
        // A pattern may hold `${alice.password}`: no report may show it.
        outcome.message = redact(&format!("step {} `{}` ({at}): {m}", i + 1, step.label), accounts);
        return outcome;
    }
    if sc.compare_trace {
        compare_with_expected(&mut outcome, opts);
        // A trace cut short can be a server that hung while the actors logged out (a
        // scenario beside this one may have seen it first): that is the server's, not the
        // client's.
        if outcome.verdict == Verdict::Fail {
            if let Err(e) = set.check_answering(LIVENESS_DEADLINE).await {
                outcome.verdict = Verdict::Error;
                outcome.message = format!("{e} (and the trace differs: {})", outcome.message);
                outcome.servers_gone = true;
            }
        }
    } else {
        outcome.trace_compared = false;
        outcome.message = "trace not compared (trace: none): the steps decided".into();
    }
    outcome
}

/// A matrix column: the profile, and the clients under test that played (actor → client).
pub fn column(profile: &str, clients: &std::collections::BTreeMap<String, String>) -> String {
    if clients.is_empty() {
        return profile.to_string();
    }
    let who: Vec<String> = clients.iter().map(|(a, c)| format!("{a}={c}")).collect();
    format!("{profile} · {}", who.join(", "))
}

/// How a scenario's files on a profile are named in the report (`sip.call-answered.ejabberd`).
pub fn file_base(scenario: &str, profile: &str) -> String {
    format!("{}.{profile}", scenario.replace('/', "."))
}

/// `text` with every account's password shown as `{password}`, as in the normalized trace.
fn redact(text: &str, accounts: &[Account]) -> String {
    accounts.iter().filter(|a| !a.password.is_empty()).fold(text.to_string(), |t, a| t.replace(&a.password, "{password}"))
}

/// The text of a step error, whatever its verdict.
fn step_message(e: StepError) -> String {
    match e {
        StepError::Fail(m) | StepError::Error(m) | StepError::Inconclusive(m) => m,
    }
}

/// Where the expected trace of a scenario lives for the clients that play it: beside the
/// scenario for the reference client, under the client file's `traces` folder for another.
fn expected_path(sc: &Scenario, profile: &str, opts: &RunOptions) -> PathBuf {
    let dir = sc.actors.iter().find_map(|a| opts.client_for(&a.name).and_then(|c| c.traces.clone()));
    match dir {
        Some(dir) => dir.join(format!("{}.{profile}.trace", sc.id)),
        None => sc.expected_trace_path(profile),
    }
}

/// An actor's values for `${…}`: from its account, and what the wire showed of it (its bound
/// JID, the Contact it registered, its SIP leg's address), whichever client plays it.
fn actor_values(name: &str, a: &Account, wire: &[(&'static str, String)]) -> Vec<(String, String)> {
    let mut v = vec![
        ("user", a.user.clone()),
        ("password", a.password.clone()),
        ("domain", a.domain.clone()),
        ("jid", format!("{}@{}", a.user, a.domain)),
        ("sip", format!("sip:{}@{}", a.user, a.domain)),
    ];
    v.extend(wire.iter().cloned());
    v.into_iter().map(|(k, val)| (format!("{name}.{k}"), val)).collect()
}

/// The intent behind a scenario action: the other actors named become peers with addresses.
fn intent_of(action: &Action, peers: &[Peer], interp: impl Fn(&str) -> Result<String, StepError>) -> Result<Intent, StepError> {
    let peer = |name: &str| peers.iter().find(|p| p.name == name).cloned().expect("the parser checked actor names");
    Ok(match action {
        Action::Connect => Intent::Connect,
        Action::Disconnect => Intent::Disconnect,
        Action::Register => Intent::Register,
        Action::Unregister => Intent::Unregister,
        Action::Message { to, text } => Intent::Message { to: peer(to), text: text.clone() },
        Action::Call { to, video } => Intent::Call { to: peer(to), video: *video },
        Action::CallClaiming { to, claimed } => Intent::CallClaiming { to: peer(to), claimed: peer(claimed) },
        Action::ExpectCaller { actor } => Intent::ExpectCaller { caller: actor.as_deref().map(peer) },
        Action::Escalate => Intent::Escalate,
        Action::SetPresence { show, status } => Intent::SetPresence { show: show.clone(), status: status.clone() },
        Action::VerifyCaps { of } => Intent::VerifyCaps { of: peer(of) },
        Action::Chat { to, text } => Intent::Chat { to: peer(to), text: text.clone() },
        Action::Answer => Intent::Answer,
        Action::Reject { code } => Intent::Reject { code: *code },
        Action::Cancel => Intent::Cancel,
        Action::HangUp => Intent::HangUp,
        Action::PublishPresence { open, note } => Intent::PublishPresence { open: *open, note: note.clone() },
        Action::RefreshPresence => Intent::RefreshPresence,
        Action::WithdrawPresence => Intent::WithdrawPresence,
        Action::Subscribe { to } => Intent::Subscribe { to: peer(to) },
        Action::Unsubscribe { to } => Intent::Unsubscribe { to: peer(to) },
        Action::AddContact { jid_of } => Intent::AddContact { to: peer(jid_of) },
        Action::ApproveContact { jid_of } => Intent::ApproveContact { to: peer(jid_of) },
        Action::DenyContact { jid_of } => Intent::DenyContact { to: peer(jid_of) },
        Action::PreApproveContact { jid_of } => Intent::PreApproveContact { to: peer(jid_of) },
        Action::CancelSubscription { jid_of } => Intent::CancelSubscription { to: peer(jid_of) },
        Action::ExpectCallCaution { warned } => Intent::ExpectCallCaution { warned: *warned },
        Action::ExpectProtectionWarning { warned } => Intent::ExpectProtectionWarning { warned: *warned },
        Action::Send { wire, text } => Intent::SendRaw { wire: *wire, text: interp(text)? },
        Action::Wait { .. } | Action::Receive { .. } | Action::ReceiveNothing { .. } => unreachable!("the runner does these itself"),
    })
}

/// How often a wait on the wire looks at the recorder again.
const WIRE_POLL: Duration = Duration::from_millis(5);

/// What a `receives` step waits for: a pattern on a wire, by a deadline; any matching
/// arrival, or (`next`) the next one.
struct Arrival<'a> {
    wire: Wire,
    pattern: &'a str,
    deadline: Instant,
    next: bool,
}

/// A `receives` step: wait until a tap has forwarded a matching frame to the actor, and take it.
async fn expect_arrival(ev: &mut Evidence, client: &mut Binding, actor: &str, how: Arrival<'_>, judged: &mut Vec<u64>) -> Result<Frame, StepError> {
    let Arrival { wire, pattern, deadline, next } = how;
    let start = Instant::now();
    let compiled = Pattern::new(wire, pattern).map_err(StepError::Fail)?;
    let mut cursor = Cursor::default();
    tracing::debug!(actor, ?wire, next, within_ms = deadline.saturating_duration_since(start).as_millis() as u64, "waiting for a frame (the step's label says which)");
    loop {
        let found = if next {
            match ev.next_arrival(actor, wire, &compiled) {
                Some(f) => match compiled.test(&f) {
                    Ok(()) => Some(f),
                    Err(why) => {
                        judged.push(f.seq);
                        return Err(StepError::Fail(format!(
                            "the next frame did not match; wanted:\n  {}\n got:\n  {} -- {why}",
                            pattern.trim(),
                            evidence::summary(&f)
                        )));
                    }
                },
                None => None,
            }
        } else {
            ev.find(actor, wire, &compiled, &mut cursor)
        };
        if let Some(f) = found {
            tracing::debug!(actor, after_ms = start.elapsed().as_millis() as u64, frame = f.seq, "matched");
            judged.push(f.seq);
            ev.take(&f);
            client.caught_up(wire, pattern).await;
            return Ok(f);
        }
        if Instant::now() >= deadline {
            let waited = start.elapsed().as_secs_f64();
            judged.extend(ev.near_miss_seqs(actor, wire));
            return Err(StepError::Fail(format!(
                "no matching frame within {waited:.1} s; wanted:\n  {}\n{}",
                pattern.trim(),
                ev.near_misses(actor, wire, &compiled)
            )));
        }
        client.pump(deadline.min(Instant::now() + WIRE_POLL)).await?;
    }
}

/// How long the scenario's connections must have been silent before teardown begins, and
/// how long that wait may take at most.
const QUIET: Duration = Duration::from_millis(50);
const QUIET_DEADLINE: Duration = Duration::from_secs(1);

/// Before teardown: wait until nothing has come or gone on the actors' connections for a
/// moment, so that what the servers still had in flight after the last step (a presence
/// broadcast, the subject after a room join) is in the trace whether or not they are busy,
/// rather than crossing the actors' logout.
async fn await_quiet(ev: &mut Evidence, recorder: &crate::trace::frame::Recorder) {
    let deadline = Instant::now() + QUIET_DEADLINE;
    while Instant::now() < deadline {
        let last = ev.last_ours_at().unwrap_or_default();
        if recorder.elapsed().saturating_sub(last) >= QUIET {
            return;
        }
        tokio::time::sleep(WIRE_POLL).await;
    }
}

/// How long teardown waits for the others to hear that an actor went.
const DEPARTURE_DEADLINE: Duration = Duration::from_secs(1);

/// After `gone` logged out: wait (a while at most) until every actor of `still` that saw its
/// presence has its unavailable presence, before the next one logs out.
async fn await_departure_told(ev: &mut Evidence, gone: &str, still: &[&str]) {
    let deadline = Instant::now() + DEPARTURE_DEADLINE;
    loop {
        let waiting = ev.not_told_of_departure(gone, still);
        if waiting.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::debug!(gone, ?waiting, "teardown: not told of the departure in time; going on");
            return;
        }
        tokio::time::sleep(WIRE_POLL).await;
    }
}

/// The values a step's `capture:` takes from the frame it matched; a path that finds nothing
/// fails the step.
fn take_captures(f: &Frame, wire: Wire, capture: &[crate::scenario::Capture]) -> Result<Vec<(String, String)>, StepError> {
    use crate::scenario::capture::{from_sip, from_xml};
    capture
        .iter()
        .map(|c| {
            let value = match wire {
                Wire::Xmpp => crate::xml::parse(&f.bytes, &crate::xml::client_stream_scope(), false).map_err(|e| e.to_string()).and_then(|el| from_xml(&el, &c.path)),
                Wire::Sip => crate::sip::SipMessage::parse(&f.bytes).map_err(|e| e.to_string()).and_then(|m| from_sip(&m, &c.path)),
            };
            value.map(|v| (c.name.clone(), v)).map_err(|why| StepError::Fail(format!("capture {}: `{}` found nothing in the matched frame: {why}", c.name, c.path)))
        })
        .collect()
}

/// A `receives nothing` step: no matching frame reaches the actor before `until` (untaken
/// arrivals since the scenario began count too).
async fn expect_no_arrival(ev: &mut Evidence, client: &mut Binding, actor: &str, wire: Wire, pattern: &str, until: Instant, judged: &mut Vec<u64>) -> Result<(), StepError> {
    let compiled = Pattern::new(wire, pattern).map_err(StepError::Fail)?;
    let mut cursor = Cursor::default();
    tracing::debug!(actor, ?wire, for_ms = until.saturating_duration_since(Instant::now()).as_millis() as u64, "watching that no frame matches");
    loop {
        // `{any}`: nothing new at all, counted as `order: next` counts (after the last frame
        // taken and the actor's connect, the client's own business passed over).
        let found = match compiled {
            Pattern::Any => ev.next_arrival(actor, wire, &compiled),
            _ => ev.find(actor, wire, &compiled, &mut cursor),
        };
        if let Some(f) = found {
            judged.push(f.seq);
            return Err(StepError::Fail(format!("received what must not arrive: {}", evidence::summary(&f))));
        }
        if Instant::now() >= until {
            return Ok(());
        }
        client.pump(until.min(Instant::now() + WIRE_POLL)).await?;
    }
}

/// Address names in the order the normalizer tries them where the text does not say which
/// port space an address is in (a TCP and a UDP socket may share a port number): SIP names of
/// actors and servers first, then XMPP legs, then the taps' listeners.
fn first_names_first(mut names: Vec<AddrName>) -> Vec<AddrName> {
    names.sort_by_key(|n| (n.name.ends_with(".tap"), n.proto == Proto::Xmpp));
    names
}

fn compare_with_expected(outcome: &mut Outcome, opts: RunOptions<'_>) {
    let path = &outcome.expected_path;
    if opts.accept {
        let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(path, &outcome.normalized));
        match written {
            Ok(()) => outcome.message = format!("expected trace written to {}", path.display()),
            Err(e) => {
                outcome.verdict = Verdict::Error;
                outcome.message = format!("cannot write {}: {e}", path.display());
            }
        }
        return;
    }
    match std::fs::read_to_string(path) {
        // A client under test with no trace stored yet: the expectations alone decide.
        Err(_) if outcome.trace_owner.is_some() => {
            outcome.trace_compared = false;
            outcome.message = format!(
                "trace not compared: no expected trace for {} at {} yet (review the trace in the report; --accept writes it)",
                outcome.trace_owner.as_deref().unwrap_or_default(),
                path.display()
            );
        }
        Err(_) => {
            outcome.verdict = Verdict::Fail;
            outcome.message = format!(
                "no expected trace at {}; review the trace in the report and run with --accept",
                path.display()
            );
        }
        Ok(expected) => {
            if let Some(m) = crate::trace::diff::compare(&expected, &outcome.normalized) {
                outcome.verdict = Verdict::Fail;
                outcome.message = format!("trace differs from {} at {}", path.display(), m.frame);
                outcome.diff = Some(m.diff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Carrier;

    #[test]
    fn messages_show_no_password() {
        let a = Account { user: "alice_1".into(), password: "s3cr3t".into(), domain: "d".into() };
        assert_eq!(redact("wanted <body>s3cr3t</body> from alice_1", &[a]), "wanted <body>{password}</body> from alice_1");
    }

    #[test]
    fn a_sip_leg_wins_over_a_tap_or_an_xmpp_leg_on_the_same_port_number() {
        let a: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let named = |proto, carrier, name: &str| AddrName { addr: a, proto, carrier, name: name.into() };
        let names = vec![
            named(Proto::Sip, Carrier::Stream, "kamailio.tap"),
            named(Proto::Xmpp, Carrier::Stream, "bob.xmpp"),
            named(Proto::Sip, Carrier::Datagram, "bob.sip"),
        ];
        assert_eq!(first_names_first(names)[0].name, "bob.sip");
    }
}
