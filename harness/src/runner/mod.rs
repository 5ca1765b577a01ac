//! Running scenarios: accounts, actors, steps with deadlines, trace comparison, verdicts.

pub mod actor;
pub mod evidence;

use crate::client::sip::ua::{new_branch, token};
use crate::scenario::{Action, ActorKind, Scenario, Wire};
use crate::servers::ServerSet;
use crate::trace::frame::{Frame, Proto, Transport};
use crate::trace::attribution;
use crate::trace::normalize::{normalize, NormalizeContext};
use actor::{Account, Actor, Endpoints, StepError};
use evidence::{Evidence, Pattern};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

/// How one scenario on one profile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
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
}

impl Outcome {
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
        }
    }
}

/// Run options that change verdict handling.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Write the expected traces instead of comparing.
    pub accept: bool,
    /// Make the reference client break a CUSAX rule on purpose.
    pub misbehave: Option<actor::cusax::Misbehaviour>,
}

fn fresh(kind: &str) -> String {
    match kind {
        "branch" => new_branch(),
        "tag" => token(10),
        "call_id" => token(20),
        _ => token(8),
    }
}

/// Fresh, unique accounts for a scenario's actors, in declaration order.
pub fn plan_accounts(sc: &Scenario, domain: &str) -> Vec<Account> {
    sc.actors
        .iter()
        .map(|a| Account { user: format!("{}_{}", a.name, token(8)), password: token(16), domain: domain.into() })
        .collect()
}

/// Run one scenario against a started server set, with the accounts planned for it.
pub async fn run_scenario(
    sc: &Scenario,
    accounts: &[Account],
    set: &mut ServerSet,
    opts: RunOptions,
    mut progress: impl FnMut(&str),
) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome::new(sc, &set.profile.name);
    if let Some(why) = set.profile.cannot_serve(&sc.needs) {
        outcome.verdict = Verdict::Inconclusive;
        outcome.message = why;
        return outcome;
    }
    let ep = Endpoints {
        xmpp: set.endpoint(Proto::Xmpp, Transport::Tcp),
        sip: set.endpoint(Proto::Sip, Transport::Udp),
        sip_tcp: set.endpoint(Proto::Sip, Transport::Tcp),
        sip_tls: set.endpoint(Proto::Sip, Transport::Tls),
        tls: set.pki.as_ref().map(|p| p.client.clone()),
    };
    let mut actors: Vec<Actor> = sc
        .actors
        .iter()
        .zip(accounts)
        .map(|(decl, account)| Actor::new(decl, account.clone(), opts.misbehave))
        .collect();

    if let Err(e) = set.reset_accounts(accounts, Instant::now() + CONNECT_DEADLINE).await {
        outcome.verdict = Verdict::Error;
        outcome.message = e.to_string();
        return outcome;
    }
    set.set_faults(&sc.faults);
    let users: Vec<(String, String)> = sc.actors.iter().zip(accounts).map(|(d, a)| (a.user.clone(), d.name.clone())).collect();
    let mut evidence = Evidence::new(set.recorder.clone(), users.clone());
    let mut failure: Option<(usize, StepError)> = None;
    for (i, step) in sc.steps.iter().enumerate() {
        progress(&format!("step {}/{}: {}", i + 1, sc.steps.len(), step.label));
        let values: HashMap<String, String> = actors.iter().flat_map(|a| a.values()).collect();
        let idx = actors.iter().position(|a| a.name == step.actor).expect("parser checked actors");
        let actor = &mut actors[idx];
        let interp = |t: &str| crate::scenario::interpolate::interpolate(t, &values, fresh).map_err(StepError::Fail);
        // An actor's value (`sip`, `jid`) and kind, for the high-level actions.
        let value = |who: &str, field: &str| values[&format!("{who}.{field}")].clone();
        let kind_of = |who: &str| sc.actors.iter().find(|a| a.name == who).map(|a| a.kind);
        let deadline = Instant::now() + STEP_DEADLINE;
        let result = match &step.action {
            Action::Connect => actor.connect(&ep, Instant::now() + CONNECT_DEADLINE).await,
            Action::Wait { duration } => {
                tokio::time::sleep(*duration).await;
                Ok(())
            }
            Action::Register => actor.register(&ep, Instant::now() + CONNECT_DEADLINE).await,
            Action::Unregister => actor.unregister(deadline).await,
            Action::Message { to, text } => actor.message(value(to, "sip"), text.clone(), deadline).await,
            // Dual to dual is a CUSAX call: the SIP URI comes from the callee's vCard. An
            // XMPP-only callee would need Jingle (RFC 7081 §3.4), which the client lacks.
            Action::Call { to, video } => match (actor.kind, kind_of(to)) {
                (_, Some(ActorKind::Xmpp)) => Err(StepError::Inconclusive(format!(
                    "{to} is XMPP-only: RFC 7081 §3.4 (CUSAX-8) asks for a Jingle call, and the reference client offers no Jingle"
                ))),
                (ActorKind::Dual, Some(ActorKind::Dual)) => actor.call_contact(&value(to, "jid"), deadline).await,
                _ => actor.call(value(to, "sip"), *video).await,
            },
            Action::CallClaiming { to, claimed } => actor.call_claiming(&value(to, "jid"), &value(claimed, "jid"), deadline).await,
            Action::ExpectCaller { actor: who } => actor.expect_caller(who.as_ref().map(|w| value(w, "jid")).as_deref()),
            Action::Escalate => actor.escalate(deadline).await,
            Action::SetPresence { show, status } => actor.set_presence(show, status).await,
            Action::VerifyCaps { of } => actor.verify_caps(&value(of, "jid"), deadline).await,
            // A SIP-only peer gets its messages over SIP (RFC 7081 §3.4).
            Action::Chat { to, text } if kind_of(to) == Some(ActorKind::Sip) => actor.message(value(to, "sip"), text.clone(), deadline).await,
            Action::Chat { to, text } => actor.chat(value(to, "jid"), value(to, "sip"), text.clone(), deadline).await,
            Action::Answer => actor.answer(deadline).await,
            Action::Reject { code } => actor.reject(*code, deadline).await,
            Action::Cancel => actor.cancel(deadline).await,
            Action::HangUp => actor.hang_up(deadline).await,
            Action::PublishPresence { open, note } => actor.publish_presence(*open, note.clone(), deadline).await,
            Action::RefreshPresence => actor.refresh_presence(false, deadline).await,
            Action::WithdrawPresence => actor.refresh_presence(true, deadline).await,
            Action::Subscribe { to } => actor.subscribe(value(to, "sip"), 3600, deadline).await,
            Action::Unsubscribe { to } => actor.subscribe(value(to, "sip"), 0, deadline).await,
            Action::AddContact { jid_of } => actor.add_contact(&value(jid_of, "jid"), deadline).await,
            Action::ApproveContact { jid_of } => actor.approve_contact(&value(jid_of, "jid"), deadline).await,
            Action::DenyContact { jid_of } => actor.deny_contact(&value(jid_of, "jid"), deadline).await,
            Action::PreApproveContact { jid_of } => actor.pre_approve_contact(&value(jid_of, "jid"), deadline).await,
            Action::CancelSubscription { jid_of } => actor.cancel_subscription(&value(jid_of, "jid"), deadline).await,
            Action::ExpectProtectionWarning { warned } => actor.expect_protection_warning(*warned),
            Action::ExpectCallCaution { warned } => actor.expect_call_caution(*warned),
            Action::Disconnect => actor.disconnect(Instant::now() + CLOSE_DEADLINE).await,
            Action::Send { wire, text } => match interp(text) {
                Ok(t) => actor.send(*wire, t).await,
                Err(e) => Err(e),
            },
            Action::Receive { wire, pattern, within } => match interp(pattern) {
                Ok(p) => expect_arrival(&mut evidence, actor, *wire, &p, Instant::now() + *within).await,
                Err(e) => Err(e),
            },
            Action::ReceiveNothing { wire, pattern, within } => match interp(pattern) {
                Ok(p) => expect_no_arrival(&mut evidence, actor, *wire, &p, Instant::now() + *within).await,
                Err(e) => Err(e),
            },
        };
        for notice in actor.take_notices() {
            progress(&format!("{} tells its user: {notice}", actor.name));
        }
        if let Err(e) = result {
            failure = Some((i, e));
            break;
        }
    }
    set.set_faults(&[]);
    for a in &mut actors {
        let _ = a.disconnect(Instant::now() + CLOSE_DEADLINE).await;
    }
    let crashed = set.check_alive().err();

    let mut ctx = NormalizeContext {
        // The title, not the path: moving a scenario file does not change its trace.
        title: format!("{} on {}", sc.title, set.profile.name),
        addr_names: Vec::new(),
        ..Default::default()
    };
    drop(actors);
    set.forget_clients();
    // Whose each connection is comes from the wire (the account it authenticated as), not
    // from what the client says about itself: the same evidence for every client.
    let recorded = set.recorder.frames_from(evidence.first_frame());
    let cast = attribution::attribute(&recorded, &users);
    let mut names: Vec<(std::net::SocketAddr, String, Proto)> = set.addr_names();
    for (decl, account) in sc.actors.iter().zip(accounts) {
        let legs: Vec<&attribution::Leg> = cast.legs.iter().filter(|l| l.actor == decl.name).collect();
        for l in &legs {
            let leg = l.proto.name();
            names.push((l.client, format!("{}.{leg}", decl.name), l.proto));
            if let Some(up) = l.upstream {
                names.push((up, format!("{}.{leg}~tap", decl.name), l.proto));
            }
        }
        ctx.literals.push((account.user.clone(), decl.name.clone()));
        ctx.literals.push((account.password.clone(), "{password}".into()));
        ctx.actors.push((decl.name.clone(), legs.iter().map(|l| (l.client, l.proto)).collect()));
    }
    ctx.addr_names = first_names_first(names);
    outcome.frames = cast.frames(&recorded).into_iter().cloned().collect();
    outcome.normalized = normalize(&outcome.frames, &ctx).text;
    outcome.duration = started.elapsed();

    if let Some(e) = crashed {
        outcome.verdict = Verdict::Error;
        outcome.message = e.to_string();
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
        outcome.message = format!("step {} `{}` ({at}): {m}", i + 1, step.label);
        return outcome;
    }
    compare_with_expected(&mut outcome, opts);
    outcome
}

/// How often a wait on the wire looks at the recorder again.
const WIRE_POLL: Duration = Duration::from_millis(5);

/// A `receives` step: wait until a tap has forwarded a matching frame to the actor, and take it.
/// The reference client is then given the time to take the message in too, so that its next
/// action starts from what it was sent.
async fn expect_arrival(ev: &mut Evidence, actor: &mut Actor, wire: Wire, pattern: &str, deadline: Instant) -> Result<(), StepError> {
    let start = Instant::now();
    let compiled = Pattern::new(wire, pattern).map_err(StepError::Fail)?;
    loop {
        if let Some(f) = ev.find(&actor.name, wire, &compiled) {
            ev.take(&f);
            let _ = actor.receive(wire, pattern, Instant::now() + CLIENT_CATCH_UP).await;
            return Ok(());
        }
        if Instant::now() >= deadline {
            let waited = start.elapsed().as_secs_f64();
            return Err(StepError::Fail(format!(
                "no matching frame within {waited:.1} s; wanted:\n  {}\n{}",
                pattern.trim(),
                ev.near_misses(&actor.name, wire, &compiled)
            )));
        }
        actor.pump(deadline.min(Instant::now() + WIRE_POLL)).await?;
    }
}

/// How long the reference client may take to see what its tap already forwarded.
const CLIENT_CATCH_UP: Duration = Duration::from_secs(1);

/// A `receives nothing` step: no matching frame reaches the actor before `until` (untaken
/// arrivals since the scenario began count too).
async fn expect_no_arrival(ev: &mut Evidence, actor: &mut Actor, wire: Wire, pattern: &str, until: Instant) -> Result<(), StepError> {
    let compiled = Pattern::new(wire, pattern).map_err(StepError::Fail)?;
    loop {
        if let Some(f) = ev.find(&actor.name, wire, &compiled) {
            return Err(StepError::Fail(format!("received what must not arrive: {}", evidence::summary(&f))));
        }
        if Instant::now() >= until {
            return Ok(());
        }
        actor.pump(until.min(Instant::now() + WIRE_POLL)).await?;
    }
}

/// Address names in the order the normalizer tries them. Addresses are written into SIP text
/// only, and a TCP port (an XMPP leg or server, a tap's listener) may have the same number as
/// a UDP port (a SIP leg): SIP names of actors and servers come first, so they win; tap
/// listeners come last, as SIP text never names them.
fn first_names_first(mut names: Vec<(std::net::SocketAddr, String, Proto)>) -> Vec<(std::net::SocketAddr, String)> {
    names.sort_by_key(|(_, n, p)| (n.ends_with(".tap"), *p == Proto::Xmpp));
    names.into_iter().map(|(a, n, _)| (a, n)).collect()
}

fn compare_with_expected(outcome: &mut Outcome, opts: RunOptions) {
    let path = &outcome.expected_path;
    if opts.accept {
        match std::fs::write(path, &outcome.normalized) {
            Ok(()) => outcome.message = format!("expected trace written to {}", path.display()),
            Err(e) => {
                outcome.verdict = Verdict::Error;
                outcome.message = format!("cannot write {}: {e}", path.display());
            }
        }
        return;
    }
    match std::fs::read_to_string(path) {
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

    #[test]
    fn a_sip_leg_wins_over_a_tap_or_an_xmpp_leg_on_the_same_port_number() {
        let a: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let names = vec![
            (a, "kamailio.tap".to_string(), Proto::Sip),
            (a, "bob.xmpp".to_string(), Proto::Xmpp),
            (a, "bob.sip".to_string(), Proto::Sip),
        ];
        assert_eq!(first_names_first(names)[0].1, "bob.sip");
    }
}
