//! The tokio shell of a load run. Each user is one task owning a reference SIP leg (UDP) and
//! an XMPP leg: it joins, then reads both legs' events and settles the operations it sees
//! end, then leaves. The run's own loop paces joins and operations, counts, sweeps what timed
//! out and reports every second. Operations are keyed where their end shows up (a transaction
//! of a user, a chat id, a call of its caller) in one map of pending starts.

use super::plan::{due, pick, LoadPlan, Op};
use super::stats::{LoadStats, Outcome};
use crate::account::Account;
use crate::client::sip::endpoint::SipEndpoint;
use crate::client::sip::ua::{SipEvent, TxId};
use crate::client::xmpp::connection::XmppConnection;
use crate::client::xmpp::session::{XmppConfig, XmppEvent};
use crate::sip::message::StartLine;
use crate::wire::Transport;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Where the users connect: the taps (recording) or the servers themselves.
#[derive(Debug, Clone)]
pub struct Target {
    pub xmpp: SocketAddr,
    pub sip: SocketAddr,
    pub domain: String,
}

/// Where an operation's end will show up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A client transaction of user `.0` (REGISTER, MESSAGE).
    Tx(usize, TxId),
    /// The k-th operation's chat message, by its stanza id.
    Chat(u64),
    /// A call, at its caller `.0`.
    Call(usize, String),
}

type Pending = Arc<Mutex<HashMap<Key, (Op, Instant)>>>;

/// An operation's end, told to the run's loop.
struct Done {
    op: Op,
    at: Instant,
    outcome: Outcome,
}

/// Tell the run's loop that an operation ended now with `outcome`.
fn tell(done: &mpsc::UnboundedSender<Done>, op: Op, outcome: Outcome) {
    let _ = done.send(Done { op, at: Instant::now(), outcome });
}

/// Settle `key` if it is still pending (a late answer to what was swept is dropped); the
/// operation it was, if it was.
fn settle(pending: &Pending, done: &mpsc::UnboundedSender<Done>, key: &Key, ok: Result<(), String>) -> Option<Op> {
    let (op, started) = pending.lock().expect("pending lock").remove(key)?;
    let at = Instant::now();
    let outcome = match ok {
        Ok(()) => Outcome::Ok(at - started),
        Err(why) => Outcome::Failed(why),
    };
    let _ = done.send(Done { op, at, outcome });
    Some(op)
}

/// One user's two legs, shared by its task and the loop that issues operations.
struct Legs {
    idx: usize,
    /// A REGISTER is in flight: RFC 3261 §10.2 allows one at a time per binding, and Kamailio
    /// answers an overlapping one 400 ("invalid cseq").
    registering: std::sync::atomic::AtomicBool,
    account: Account,
    sip: SipEndpoint,
    xmpp: XmppConnection,
}

/// The run's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ramp,
    Steady,
    Drain,
    Leave,
}

impl Phase {
    /// For the terminal.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Ramp => "joining",
            Phase::Steady => "steady",
            Phase::Drain => "draining",
            Phase::Leave => "leaving",
        }
    }
}

/// What the loop tells once a second.
pub struct Tick<'a> {
    pub phase: Phase,
    /// Whole seconds since the run began (the index of the second just ended).
    pub second: usize,
    pub stats: &'a LoadStats,
    pub joined: usize,
    pub issued: u64,
}

/// A finished load run.
pub struct LoadResult {
    pub stats: LoadStats,
    pub joined: usize,
    pub issued: u64,
    pub interrupted: bool,
    /// Seconds since the run began at which the steady phase began and ended.
    pub steady: (f64, f64),
    pub wall: Duration,
}

/// Run `plan` with `accounts` (one per user) against `target`, until done or `stop` resolves.
pub async fn run(
    plan: &LoadPlan,
    target: &Target,
    accounts: &[Account],
    stop: impl std::future::Future<Output = ()>,
    mut on_second: impl FnMut(&Tick),
) -> LoadResult {
    tokio::pin!(stop);
    let began = Instant::now();
    let second_of = |t: Instant| t.saturating_duration_since(began).as_secs() as usize;
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let (legs_tx, mut legs_rx) = mpsc::unbounded_channel::<Arc<Legs>>();
    let (leave_tx, leave_rx) = watch::channel(false);
    let mut stats = LoadStats::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut joined: Vec<Arc<Legs>> = Vec::new();
    let (mut spawned, mut joins_ended, mut leaves_ended) = (0usize, 0usize, 0usize);
    let (mut issued, total) = (0u64, plan.total_ops());
    let mut phase = Phase::Ramp;
    let mut interrupted = false;
    let (mut steady_began, mut phase_began) = (began, began);
    let mut steady = (0.0, 0.0);
    let mut last_second = 0usize;
    let mut last_sweep = began;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop, if !interrupted => {
                interrupted = true;
                if matches!(phase, Phase::Ramp | Phase::Steady) {
                    phase = Phase::Drain;
                    phase_began = Instant::now();
                }
            }
        }
        while let Ok(l) = legs_rx.try_recv() {
            joined.push(l);
        }
        while let Ok(d) = done_rx.try_recv() {
            match d.op {
                Op::Join => joins_ended += 1,
                Op::Leave => leaves_ended += 1,
                _ => {}
            }
            stats.finish(d.op, second_of(d.at), d.outcome);
        }
        let now = Instant::now();
        if now - last_sweep >= Duration::from_millis(100) {
            last_sweep = now;
            let expired: Vec<Key> = pending
                .lock()
                .expect("pending lock")
                .iter()
                .filter(|(_, (_, t))| now - *t > plan.timeout)
                .map(|(k, _)| k.clone())
                .collect();
            let why = format!("no answer within {} s", plan.timeout.as_secs_f64());
            for k in expired {
                if let (Some(Op::Register), Key::Tx(idx, _)) = (settle(&pending, &done_tx, &k, Err(why.clone())), &k) {
                    if let Ok(i) = joined.binary_search_by_key(idx, |l| l.idx) {
                        joined[i].registering.store(false, Ordering::Release);
                    }
                }
            }
        }
        match phase {
            Phase::Ramp => {
                let want = due(now - began, plan.ramp, plan.users as u64) as usize;
                while spawned < want.max(1).min(plan.users) {
                    let account = accounts[spawned].clone();
                    stats.attempt(Op::Join, second_of(now));
                    tasks.spawn(user(spawned, account, target.clone(), pending.clone(), done_tx.clone(), legs_tx.clone(), leave_rx.clone(), plan.timeout));
                    spawned += 1;
                }
                if spawned == plan.users && joins_ended == plan.users {
                    while let Ok(l) = legs_rx.try_recv() {
                        joined.push(l);
                    }
                    joined.sort_by_key(|l| l.idx);
                    phase = if joined.is_empty() { Phase::Drain } else { Phase::Steady };
                    steady_began = Instant::now();
                    phase_began = steady_began;
                    steady.0 = (steady_began - began).as_secs_f64();
                }
            }
            Phase::Steady => {
                let want = due(now - steady_began, plan.rate, total);
                // A late tick catches up over the next ones, at most twice the rate's share
                // of a millisecond each: issued at once, the backlog arrived at the server as
                // one burst, which overflowed Kamailio's socket (each drop a retransmission
                // 500 ms later) at rates SIPp, pacing evenly, kept.
                let most = issued + 2 * (plan.rate / 1000).max(1) as u64;
                while issued < want.min(most) {
                    let (op, mut from, to) = pick(issued, joined.len(), &plan.mix);
                    if op == Op::Register {
                        // The next user without a REGISTER in flight takes it.
                        let n = joined.len();
                        from = (0..n).map(|d| (from + d) % n).find(|&i| !joined[i].registering.load(Ordering::Acquire)).unwrap_or(from);
                    }
                    stats.attempt(op, second_of(now));
                    issue(issued, op, &joined[from], &joined[to], &target.domain, &pending, &done_tx, now);
                    issued += 1;
                }
                if issued == total {
                    phase = Phase::Drain;
                    phase_began = now;
                }
            }
            Phase::Drain => {
                // Joins still under way (an interrupted ramp) end first, within their own timeout,
                // so that every joined user is told to leave and counted once.
                // Outstanding, not pending: an operation whose task has not yet reached its
                // user's UA is in no map yet.
                let settled = joins_ended == spawned && stats.outstanding() == 0;
                if settled || now - phase_began > plan.timeout + Duration::from_secs(1) {
                    steady.1 = (now - began).as_secs_f64();
                    if steady.0 == 0.0 {
                        steady.0 = steady.1;
                    }
                    for _ in &joined {
                        stats.attempt(Op::Leave, second_of(now));
                    }
                    let _ = leave_tx.send(true);
                    phase = Phase::Leave;
                    phase_began = now;
                }
            }
            Phase::Leave => {
                // Users that never joined end on their own; the joined ones each tell their leave.
                if leaves_ended >= joined.len() || now - phase_began > plan.timeout + Duration::from_secs(1) {
                    break;
                }
            }
        }
        let s = second_of(Instant::now());
        if s > last_second {
            on_second(&Tick { phase, second: last_second, stats: &stats, joined: joined.len(), issued });
            last_second = s;
        }
    }
    // Leaves that did not end in time are failures; then every leg is closed.
    while let Ok(d) = done_rx.try_recv() {
        stats.finish(d.op, second_of(d.at), d.outcome);
    }
    let end = second_of(Instant::now());
    for _ in leaves_ended..joined.len() {
        stats.finish(Op::Leave, end, Outcome::Failed("not left before the run ended".into()));
    }
    // Whatever else never ended is a failure too, so that attempts always add up.
    stats.fail_outstanding(end, "still in flight when the run ended");
    drop(joined);
    tasks.shutdown().await;
    LoadResult { stats, joined: joins_ended, issued, interrupted, steady, wall: began.elapsed() }
}

/// Start the k-th operation from `from` to `to`; its end is settled by whichever user task sees it.
#[allow(clippy::too_many_arguments)]
fn issue(k: u64, op: Op, from: &Arc<Legs>, to: &Legs, domain: &str, pending: &Pending, done: &mpsc::UnboundedSender<Done>, at: Instant) {
    let uri = format!("sip:{}@{domain}", to.account.user);
    match op {
        Op::Register if from.registering.swap(true, Ordering::AcqRel) => {
            tell(done, op, Outcome::Failed("every user had a REGISTER in flight".into()));
        }
        Op::Register | Op::Message | Op::Call => {
            let (legs, p, done) = (from.clone(), pending.clone(), done.clone());
            tokio::spawn(async move {
                let idx = legs.idx;
                let started = legs
                    .sip
                    .with(move |ua, now| {
                        let key = match op {
                            Op::Register => Key::Tx(idx, ua.register(now, 3600)),
                            Op::Message => match ua.message(now, &uri, &format!("load {k}")) {
                                Ok(tx) => Key::Tx(idx, tx),
                                Err(e) => return Err(e.to_string()),
                            },
                            _ => Key::Call(idx, ua.invite(now, &uri, false)),
                        };
                        p.lock().expect("pending lock").insert(key, (op, at));
                        Ok(())
                    })
                    .await;
                match started {
                    None => tell(&done, op, Outcome::Failed("the sender's SIP leg is gone".into())),
                    Some(Err(why)) => tell(&done, op, Outcome::Failed(why)),
                    Some(Ok(())) => {}
                }
            });
        }
        Op::Chat => {
            pending.lock().expect("pending lock").insert(Key::Chat(k), (op, at));
            let stanza = format!(
                "<message to='{}@{domain}/load' id='load-{k}' type='chat'><body>load {k}</body></message>",
                to.account.user
            );
            if !from.xmpp.send_raw(stanza.into_bytes()) {
                settle(pending, done, &Key::Chat(k), Err("the sender's XMPP leg is gone".into()));
            }
        }
        Op::Join | Op::Leave => unreachable!("join and leave are not in a mix"),
    }
}

/// A SIP final response as an operation's end: 2xx succeeds, anything else is its reason.
fn final_ok(response: &crate::sip::message::SipMessage) -> Result<(), String> {
    match response.start_line() {
        StartLine::Response { code, .. } if (200..300).contains(code) => Ok(()),
        StartLine::Response { code, reason, .. } => Err(format!("{code} {reason}")),
        StartLine::Request { .. } => Err("a request where a final response was due".into()),
    }
}

/// A chat message seen by either end: the recipient's copy succeeds, a bounce fails.
fn chat_end(el: &crate::xml::Element) -> Option<(u64, Result<(), String>)> {
    if el.local_name() != "message" {
        return None;
    }
    let k = el.attr("id")?.strip_prefix("load-")?.parse().ok()?;
    if el.attr("type") == Some("error") {
        let why = el.child("error").and_then(|e| e.elements().next()).map(|c| c.local_name().to_string()).unwrap_or_else(|| "error".into());
        return Some((k, Err(format!("error stanza: {why}"))));
    }
    Some((k, Ok(())))
}

/// One user: join, settle what its legs see, leave when told.
#[allow(clippy::too_many_arguments)]
async fn user(
    idx: usize,
    account: Account,
    target: Target,
    pending: Pending,
    done: mpsc::UnboundedSender<Done>,
    legs_out: mpsc::UnboundedSender<Arc<Legs>>,
    mut leave: watch::Receiver<bool>,
    timeout: Duration,
) {
    let began = Instant::now();
    let report = |op: Op, outcome: Outcome| tell(&done, op, outcome);
    let fail = |op: Op, why: String| report(op, Outcome::Failed(why));
    let mut sip = match SipEndpoint::start(&account.user, &account.password, &account.domain, target.sip, Transport::Udp, None).await {
        Ok(s) => s,
        Err(e) => return fail(Op::Join, format!("SIP socket: {e}")),
    };
    let cfg = XmppConfig { answers: true, ..XmppConfig::for_account(&account, "load") };
    let mut xmpp = match XmppConnection::start(target.xmpp, cfg, None).await {
        Ok(x) => x,
        Err(e) => return fail(Op::Join, format!("XMPP connect: {e}")),
    };
    let mut sip_events = std::mem::replace(&mut sip.events, mpsc::unbounded_channel().1);
    let mut xmpp_events = std::mem::replace(&mut xmpp.events, mpsc::unbounded_channel().1);
    let legs = Arc::new(Legs { idx, registering: false.into(), account, sip, xmpp });
    let Some(reg) = legs.sip.with(|ua, now| ua.register(now, 3600)).await else { return fail(Op::Join, "SIP leg ended".into()) };
    let deadline = tokio::time::Instant::from_std(began + timeout);
    let (mut registered, mut online) = (false, false);
    while !(registered && online) {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                let what = if registered { "XMPP login" } else if online { "REGISTER" } else { "REGISTER and XMPP login" };
                return fail(Op::Join, format!("{what} not done within {} s", timeout.as_secs_f64()));
            }
            e = sip_events.recv() => match e {
                Some(SipEvent::Final { tx, response }) if tx == reg => match final_ok(&response) {
                    Ok(()) => registered = true,
                    Err(why) => return fail(Op::Join, format!("REGISTER: {why}")),
                },
                Some(SipEvent::TimedOut { tx }) if tx == reg => return fail(Op::Join, "REGISTER: no final response".into()),
                Some(_) => {}
                None => return fail(Op::Join, "SIP leg ended".into()),
            },
            e = xmpp_events.recv() => match e {
                Some(XmppEvent::Online { .. }) => {
                    online = true;
                    legs.xmpp.send_raw(b"<presence/>".to_vec());
                }
                Some(XmppEvent::Failed(why)) => return fail(Op::Join, format!("XMPP login: {why}")),
                Some(XmppEvent::Closed) | None => return fail(Op::Join, "XMPP stream closed during login".into()),
                Some(_) => {}
            },
        }
    }
    report(Op::Join, Outcome::Ok(began.elapsed()));
    let _ = legs_out.send(legs.clone());
    let idx = legs.idx;
    loop {
        tokio::select! {
            r = leave.changed() => if r.is_err() || *leave.borrow() { break },
            e = sip_events.recv() => match e {
                Some(SipEvent::Final { tx, response }) => {
                    if settle(&pending, &done, &Key::Tx(idx, tx), final_ok(&response)) == Some(Op::Register) {
                        legs.registering.store(false, Ordering::Release);
                    }
                }
                Some(SipEvent::TimedOut { tx }) => {
                    if settle(&pending, &done, &Key::Tx(idx, tx), Err("no final response (timer F)".into())) == Some(Op::Register) {
                        legs.registering.store(false, Ordering::Release);
                    }
                }
                Some(SipEvent::IncomingCall { call_id, .. }) => {
                    let l = legs.clone();
                    tokio::spawn(async move { l.sip.with(move |ua, now| ua.answer(now, &call_id)).await });
                }
                Some(SipEvent::CallConfirmed { call_id, .. }) => {
                    let key = Key::Call(idx, call_id.clone());
                    if pending.lock().expect("pending lock").contains_key(&key) {
                        settle(&pending, &done, &key, Ok(()));
                        let l = legs.clone();
                        tokio::spawn(async move { l.sip.with(move |ua, now| ua.bye(now, &call_id)).await });
                    }
                }
                Some(SipEvent::CallEnded { call_id, reason }) => drop(settle(&pending, &done, &Key::Call(idx, call_id), Err(reason.to_string()))),
                Some(_) => {}
                None => break,
            },
            e = xmpp_events.recv() => match e {
                Some(XmppEvent::Stanza(el)) => {
                    if let Some((k, ok)) = chat_end(&el) {
                        settle(&pending, &done, &Key::Chat(k), ok);
                    }
                }
                Some(XmppEvent::Closed | XmppEvent::Failed(_)) | None => break,
                Some(_) => {}
            },
        }
    }
    let began = Instant::now();
    let unreg = legs.sip.with(|ua, now| ua.register(now, 0)).await;
    legs.xmpp.close();
    let deadline = tokio::time::Instant::from_std(began + timeout);
    let (mut unregistered, mut closed) = (unreg.is_none(), false);
    let mut problem = unreg.is_none().then(|| "SIP leg ended before it could unregister".to_string());
    while !(unregistered && closed) {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                problem.get_or_insert_with(|| format!("not left within {} s", timeout.as_secs_f64()));
                break;
            }
            e = sip_events.recv(), if !unregistered => match e {
                Some(SipEvent::Final { tx, response }) if Some(tx) == unreg => {
                    unregistered = true;
                    if let Err(why) = final_ok(&response) {
                        problem.get_or_insert(format!("REGISTER Expires 0: {why}"));
                    }
                }
                Some(_) => {}
                None => unregistered = true,
            },
            e = xmpp_events.recv(), if !closed => match e {
                Some(XmppEvent::Closed) | None => closed = true,
                Some(_) => {}
            },
        }
    }
    match problem {
        None => report(Op::Leave, Outcome::Ok(began.elapsed())),
        Some(why) => fail(Op::Leave, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ends_are_told_by_id_and_bounces_fail_with_their_condition() {
        let scope = crate::xml::client_stream_scope();
        let got = crate::xml::parse(b"<message id='load-7' type='chat' from='a@x/load'><body>load 7</body></message>", &scope, false).unwrap();
        assert_eq!(chat_end(&got), Some((7, Ok(()))));
        let bounce = crate::xml::parse(
            b"<message id='load-9' type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
            &scope,
            false,
        )
        .unwrap();
        assert_eq!(chat_end(&bounce), Some((9, Err("error stanza: service-unavailable".into()))));
        let other = crate::xml::parse(b"<message id='x1' type='chat'/>", &scope, false).unwrap();
        assert_eq!(chat_end(&other), None);
        let presence = crate::xml::parse(b"<presence id='load-1'/>", &scope, false).unwrap();
        assert_eq!(chat_end(&presence), None);
    }

    #[test]
    fn final_responses_succeed_only_when_2xx() {
        let parse = |s: &str| crate::sip::message::SipMessage::parse(s.as_bytes()).unwrap();
        assert_eq!(final_ok(&parse("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")), Ok(()));
        assert_eq!(final_ok(&parse("SIP/2.0 202 Accepted\r\nContent-Length: 0\r\n\r\n")), Ok(()));
        assert_eq!(final_ok(&parse("SIP/2.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")), Err("404 Not Found".into()));
        assert!(final_ok(&parse("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")).is_err());
    }
}
