//! A whole run: for each profile, start its servers, run its scenarios one after another,
//! stop them; every step of it told to the reporters as events.

use super::event::{emit, Event, Reporter};
use super::{plan_accounts, run_scenario, Outcome, RunOptions, Verdict};
use crate::scenario::Scenario;
use crate::servers::profile::Profile;
use crate::servers::{Account, Backend, ServerFacts, ServerSet};
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

/// What a run needs: the profiles it may use (each with the scenarios that name it), and how.
pub struct Suite<'a> {
    pub profiles: Vec<&'a Profile>,
    pub scenarios: &'a [Scenario],
    pub fixtures: &'a Path,
    pub backend: &'a Backend,
    pub options: RunOptions<'a>,
    /// Only these (scenario, profile) cases, for a shard; None: all.
    pub only: Option<&'a std::collections::HashSet<(String, String)>>,
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

/// Run the suite; `reporters` hear every event, the last one `RunFinished`. The servers'
/// logs go under `logs(profile)` before each profile's servers stop.
pub async fn run_suite(suite: Suite<'_>, reporters: &mut [&mut dyn Reporter], logs: impl Fn(&str) -> std::path::PathBuf) -> (Vec<Outcome>, RunResult) {
    let wall = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut facts: Vec<ServerFacts> = Vec::new();
    let mut infra_failed = false;
    let mine = |p: &Profile| {
        suite
            .scenarios
            .iter()
            .filter(|s| s.profiles.contains(&p.name) && suite.only.is_none_or(|o| o.contains(&(s.id.clone(), p.name.clone()))))
            .collect::<Vec<_>>()
    };
    let total: usize = suite.profiles.iter().map(|p| mine(p).len()).sum();
    let mut n = 0;
    for profile in &suite.profiles {
        let mine = mine(profile);
        if mine.is_empty() {
            continue;
        }
        let tag = profile.name.clone();
        let accounts: Result<Vec<Vec<Account>>, String> = match suite.backend {
            Backend::External(f) => mine.iter().map(|s| f.accounts_for(s.actors.len()).map(|a| super::share_accounts(s, a))).collect(),
            _ => Ok(mine.iter().map(|s| plan_accounts(s, &profile.domain)).collect()),
        };
        let failed_all = |why: String, n: &mut usize, outcomes: &mut Vec<Outcome>, reporters: &mut [&mut dyn Reporter]| {
            for s in &mine {
                *n += 1;
                let mut o = Outcome::new(s, &profile.name);
                o.verdict = Verdict::Error;
                o.message = why.clone();
                emit(reporters, &Event::ScenarioFinished { index: *n, total, outcome: &o });
                outcomes.push(o);
            }
        };
        let accounts = match accounts {
            Ok(a) => a,
            Err(e) => {
                infra_failed = true;
                failed_all(format!("[{tag}] {e}"), &mut n, &mut outcomes, reporters);
                continue;
            }
        };
        // A shared account is made once.
        let mut seen = std::collections::HashSet::new();
        let flat: Vec<Account> = accounts.iter().flatten().filter(|a| seen.insert(a.user.clone())).cloned().collect();
        let started = ServerSet::start(profile, suite.fixtures, &flat, suite.backend, |m| emit(reporters, &Event::Note(&format!("[{tag}] {m}")))).await;
        let mut set = match started {
            Ok(s) => s,
            Err(e) => {
                emit(reporters, &Event::Note(&format!("error: [{tag}] {e}")));
                infra_failed = true;
                failed_all(e.to_string(), &mut n, &mut outcomes, reporters);
                continue;
            }
        };
        let these = set.facts();
        emit(reporters, &Event::ServersReady { profile: &profile.name, servers: &these });
        facts.extend(these);
        let mut gone: Option<String> = None;
        for (sc, acc) in mine.into_iter().zip(&accounts) {
            n += 1;
            emit(reporters, &Event::ScenarioStarted { scenario: &sc.id, profile: &profile.name, index: n, total });
            // A dead or hung server ends the profile's remaining scenarios at once.
            let o = match &gone {
                Some(why) => {
                    let mut o = Outcome::new(sc, &profile.name);
                    o.verdict = Verdict::Error;
                    o.message = format!("not run: {why}");
                    o
                }
                None => run_scenario(sc, acc, &mut set, suite.options, |e| emit(reporters, e)).await,
            };
            if o.servers_gone {
                gone = Some(o.message.lines().next().unwrap_or_default().to_string());
            }
            emit(reporters, &Event::ScenarioFinished { index: n, total, outcome: &o });
            outcomes.push(o);
        }
        set.save_logs(&logs(&profile.name));
        set.stop();
        emit(reporters, &Event::ServersStopped { profile: &profile.name });
    }
    let any = |v: Verdict| outcomes.iter().any(|o| o.verdict == v);
    let result = if infra_failed || any(Verdict::Error) {
        RunResult::Broken
    } else if any(Verdict::Fail) {
        RunResult::Failed
    } else {
        RunResult::Passed
    };
    emit(reporters, &Event::RunFinished { outcomes: &outcomes, servers: &facts, backend: suite.backend.name(), result, wall: wall.elapsed() });
    (outcomes, result)
}
