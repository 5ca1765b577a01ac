//! A whole run: every profile's servers started side by side, each profile's scenarios run
//! side by side against them (at most `jobs` at a time in all), the servers stopped; every
//! step of it told to the reporters as events.
//!
//! Scenarios share a profile's servers and taps, not accounts: each has its own, and the
//! taps' frames are told apart by the account a connection authenticates as (see
//! `trace::attribution`). What the servers and taps cannot keep apart runs alone: scenarios
//! with faults (the taps inject them for every connection), the ones a profile names as
//! `serial`, scenarios played by a client under test, and runs on external servers (whose
//! accounts are reused).

use super::event::{emit, Event, Reporter};
use super::{plan_accounts, run_scenario, Outcome, RunOptions, Verdict};
use crate::scenario::Scenario;
use crate::servers::profile::Profile;
use crate::servers::{Account, Backend, ServerFacts, ServerSet};
use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::Instant;

/// How a run ended, for the exit code: the worst that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Passed,
    Failed,
    /// A server could not start or died, or a scenario's verdict is `error`.
    Broken,
}

impl RunResult {
    /// The process exit code docs/cli.md documents: 0 passed, 1 a verdict failed, 3 broken.
    pub fn exit_code(self) -> u8 {
        match self {
            RunResult::Passed => 0,
            RunResult::Failed => 1,
            RunResult::Broken => 3,
        }
    }
}

/// How many scenarios run at once by default: they mostly wait on the wire, so more than
/// the cores; measured on 2 cores (docs/cli.md gives the figures).
pub const DEFAULT_JOBS: usize = 8;

/// What a run needs: the profiles it may use (each with the scenarios that name it), and how.
pub struct Suite<'a> {
    pub profiles: Vec<&'a Profile>,
    pub scenarios: &'a [Scenario],
    pub fixtures: &'a Path,
    pub backend: &'a Backend,
    pub options: RunOptions<'a>,
    /// Only these (scenario, profile) cases, for a shard; None: all.
    pub only: Option<&'a std::collections::HashSet<(String, String)>>,
    /// At most this many scenarios at once, over all profiles (1: one after another).
    pub jobs: usize,
}

/// Every (scenario, profile) case of a suite in the order the run takes them: profile by
/// profile, scenarios in file order. A shard is a slice of this list, and a merge puts the
/// results back in its order.
pub fn cases(profiles: &[&Profile], scenarios: &[Scenario]) -> Vec<(String, String)> {
    profiles.iter().flat_map(|p| scenarios.iter().filter(|s| s.profiles.contains(&p.name)).map(|s| (s.id.clone(), p.name.clone()))).collect()
}

/// Shard `i` of `n` (from 1): every n-th case, starting at the i-th.
pub fn shard(cases: &[(String, String)], i: usize, n: usize) -> std::collections::HashSet<(String, String)> {
    cases.iter().enumerate().filter(|(k, _)| k % n == i - 1).map(|(_, c)| c.clone()).collect()
}

/// What every profile's run shares: the reporters, the job limit, the count of ended scenarios.
struct Shared<'r, 'e> {
    reporters: RefCell<&'r mut [&'e mut dyn Reporter]>,
    jobs: tokio::sync::Semaphore,
    started: Cell<usize>,
    ended: Cell<usize>,
    total: usize,
}

impl Shared<'_, '_> {
    fn tell(&self, e: &Event) {
        emit(&mut self.reporters.borrow_mut(), e);
    }

    /// Tell that a scenario ended, counted among the ended ones.
    fn ended(&self, o: &Outcome) {
        self.ended.set(self.ended.get() + 1);
        self.tell(&Event::ScenarioFinished { index: self.ended.get(), total: self.total, outcome: o });
    }
}

/// What one profile's part of the run gave: each outcome with its place in the run's order,
/// its servers' facts, and whether its servers could not be had.
struct ProfileRun {
    outcomes: Vec<(usize, Outcome)>,
    facts: Vec<ServerFacts>,
    infra_failed: bool,
}

/// Run the suite; `reporters` hear every event, the last one `RunFinished`. The servers'
/// logs go under `logs(profile)` before each profile's servers stop. The outcomes come in
/// the order of `cases`, whatever order the scenarios ended in.
pub async fn run_suite(suite: Suite<'_>, reporters: &mut [&mut dyn Reporter], logs: impl Fn(&str) -> std::path::PathBuf) -> (Vec<Outcome>, RunResult) {
    let wall = Instant::now();
    let mut order = 0;
    let mut plan: Vec<(&Profile, Vec<(usize, &Scenario)>)> = Vec::new();
    for profile in &suite.profiles {
        let mine: Vec<(usize, &Scenario)> = suite
            .scenarios
            .iter()
            .filter(|s| s.profiles.contains(&profile.name) && suite.only.is_none_or(|o| o.contains(&(s.id.clone(), profile.name.clone()))))
            .map(|s| {
                order += 1;
                (order, s)
            })
            .collect();
        if !mine.is_empty() {
            plan.push((profile, mine));
        }
    }
    let shared = Shared { reporters: RefCell::new(reporters), jobs: tokio::sync::Semaphore::new(suite.jobs.max(1)), started: Cell::new(0), ended: Cell::new(0), total: order };
    let runs = crate::side_by_side::join_all(plan.into_iter().map(|(p, mine)| run_profile(&suite, p, mine, &shared, &logs)).collect()).await;
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    let mut facts: Vec<ServerFacts> = Vec::new();
    let mut infra_failed = false;
    for r in runs {
        outcomes.extend(r.outcomes);
        facts.extend(r.facts);
        infra_failed |= r.infra_failed;
    }
    outcomes.sort_by_key(|(k, _)| *k);
    let outcomes: Vec<Outcome> = outcomes.into_iter().map(|(_, o)| o).collect();
    let any = |v: Verdict| outcomes.iter().any(|o| o.verdict == v);
    let result = if infra_failed || any(Verdict::Error) {
        RunResult::Broken
    } else if any(Verdict::Fail) {
        RunResult::Failed
    } else {
        RunResult::Passed
    };
    shared.tell(&Event::RunFinished { outcomes: &outcomes, servers: &facts, backend: suite.backend.name(), result, wall: wall.elapsed() });
    (outcomes, result)
}

/// Whether a scenario runs alone on its profile: it has faults (the taps inject them for
/// every connection), the profile lists it under `serial:`, or `everything` (a client under
/// test plays, or the servers are external and their accounts reused).
fn runs_alone(sc: &Scenario, profile: &Profile, everything: bool) -> bool {
    everything || !sc.faults.is_empty() || profile.serial.contains_key(&sc.id)
}

/// One profile's part: its servers, then its scenarios side by side, then teardown.
async fn run_profile(suite: &Suite<'_>, profile: &Profile, mine: Vec<(usize, &Scenario)>, shared: &Shared<'_, '_>, logs: &impl Fn(&str) -> std::path::PathBuf) -> ProfileRun {
    let tag = profile.name.clone();
    let mut run = ProfileRun { outcomes: Vec::new(), facts: Vec::new(), infra_failed: false };
    let accounts: Result<Vec<Vec<Account>>, String> = match suite.backend {
        Backend::External(f) => mine.iter().map(|(_, s)| f.accounts_for(s.actors.len()).map(|a| super::share_accounts(s, a))).collect(),
        _ => Ok(mine.iter().map(|(_, s)| plan_accounts(s, &profile.domain)).collect()),
    };
    let failed_all = |why: String, run: &mut ProfileRun| {
        run.infra_failed = true;
        for (k, s) in &mine {
            let mut o = Outcome::new(s, &profile.name);
            o.verdict = Verdict::Error;
            o.message = why.clone();
            shared.ended(&o);
            run.outcomes.push((*k, o));
        }
    };
    let accounts = match accounts {
        Ok(a) => a,
        Err(e) => {
            failed_all(format!("[{tag}] {e}"), &mut run);
            return run;
        }
    };
    // A shared account is made once.
    let mut seen = std::collections::HashSet::new();
    let flat: Vec<Account> = accounts.iter().flatten().filter(|a| seen.insert(a.user.clone())).cloned().collect();
    let started = ServerSet::start(profile, suite.fixtures, &flat, suite.backend, |m| shared.tell(&Event::Note(&format!("[{tag}] {m}")))).await;
    let servers = match started {
        Ok(s) => s,
        Err(e) => {
            shared.tell(&Event::Note(&format!("error: [{tag}] {e}")));
            failed_all(e.to_string(), &mut run);
            return run;
        }
    };
    run.facts = servers.facts();
    shared.tell(&Event::ServersReady { profile: &profile.name, servers: &run.facts });
    let everything_alone = !suite.options.clients.is_empty() || matches!(suite.backend, Backend::External(_));
    let alone = |s: &Scenario| runs_alone(s, profile, everything_alone);
    let lane = tokio::sync::RwLock::new(());
    let gone: RefCell<Option<String>> = RefCell::new(None);
    let set = &servers;
    // Every account of the profile: to a scenario the others' are foreign, its own are its own.
    let users: Vec<String> = flat.iter().map(|a| a.user.clone()).collect();
    let scenarios = mine.iter().zip(&accounts).map(|((k, sc), acc)| {
        let (lane, gone, alone, foreign) = (&lane, &gone, alone(sc), &users);
        async move {
            let _job = shared.jobs.acquire().await.expect("the semaphore is never closed");
            let (_read, _write) = match alone {
                true => (None, Some(lane.write().await)),
                false => (Some(lane.read().await), None),
            };
            // A dead or hung server ends the profile's remaining scenarios at once.
            let why = gone.borrow().clone();
            let o = match why {
                Some(why) => {
                    let mut o = Outcome::new(sc, &profile.name);
                    o.verdict = Verdict::Error;
                    o.message = format!("not run: {why}");
                    o
                }
                None => {
                    shared.started.set(shared.started.get() + 1);
                    let index = shared.started.get();
                    shared.tell(&Event::ScenarioStarted { scenario: &sc.id, profile: &profile.name, index, total: shared.total });
                    run_scenario(sc, acc, foreign, set, suite.options, |e| shared.tell(e)).await
                }
            };
            if o.servers_gone {
                *gone.borrow_mut() = Some(o.message.lines().next().unwrap_or_default().to_string());
            }
            shared.ended(&o);
            (*k, o)
        }
    });
    run.outcomes = crate::side_by_side::join_all(scenarios.collect()).await;
    servers.save_logs(&logs(&profile.name));
    servers.stop();
    shared.tell(&Event::ServersStopped { profile: &profile.name });
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_a_profiles_serial_list_or_a_whole_run_make_a_scenario_run_alone() {
        let scenario = |id: &str, extra: &str| {
            let src = format!("title: T\nprofiles: [p]\nactors:\n  alice: sip\n{extra}steps:\n  - alice: register\n");
            crate::scenario::parse_scenario(Path::new("t.yaml"), id, &src, &["p".to_string()], None).unwrap()
        };
        let profile: Profile = serde_saphyr::from_str("name: p\ndomain: d\nservers: []\nserial:\n  listed: the agent's state leaks\n").unwrap();
        let plain = scenario("plain", "");
        let faulted = scenario("faulted", "faults:\n  - { duplicate: MESSAGE, skip: 1 }\n");
        assert!(!runs_alone(&plain, &profile, false));
        assert!(runs_alone(&scenario("listed", ""), &profile, false));
        assert!(runs_alone(&faulted, &profile, false), "{:?}", faulted.faults);
        assert!(runs_alone(&plain, &profile, true));
    }
}
