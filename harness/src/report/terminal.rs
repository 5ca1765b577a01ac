//! The terminal reporter: progress lines on stderr as the run goes, with a live tally (done of
//! total, passes, failures, elapsed) kept on the last line of a terminal; the table and the
//! matrix on stdout at the end.

use crate::catalog::Requirement;
use crate::runner::event::{Event, Reporter};
use crate::runner::Verdict;
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// A progress line on stderr, always; in sixpac.log too (it is not repeated on stderr by -v).
pub fn note(msg: &str) {
    eprintln!("sixpac: {msg}");
    tracing::info!(target: "sixpac::progress", "{msg}");
}

/// How many scenarios have ended, and how.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    done: usize,
    total: usize,
    pass: usize,
    fail: usize,
    other: usize,
}

impl Tally {
    fn count(&mut self, v: Verdict) {
        self.done += 1;
        match v {
            Verdict::Pass => self.pass += 1,
            Verdict::Fail => self.fail += 1,
            Verdict::Inconclusive | Verdict::Error => self.other += 1,
        }
    }

    /// `12/62 done · 11 pass · 1 fail · 0 other · 7.2 s`
    fn line(&self, since: Instant) -> String {
        format!(
            "{}/{} done · {} pass · {} fail · {} other · {:.1} s",
            self.done,
            self.total,
            self.pass,
            self.fail,
            self.other,
            since.elapsed().as_secs_f64()
        )
    }
}

/// Progress and the end-of-run summary.
pub struct Terminal<'a> {
    catalog: &'a [Requirement],
    /// `[n/total] scenario on profile` of each scenario running now.
    running: HashMap<(String, String), String>,
    tally: Tally,
    since: Instant,
    /// Whether stderr is a terminal, where the tally stays on the last line, redrawn.
    live: bool,
}

impl<'a> Terminal<'a> {
    /// A reporter that prints the matrix of `catalog` at the end.
    pub fn new(catalog: &'a [Requirement]) -> Terminal<'a> {
        Terminal { catalog, running: HashMap::new(), tally: Tally::default(), since: Instant::now(), live: std::io::stderr().is_terminal() }
    }

    /// A progress line above the live tally.
    fn say(&self, msg: &str) {
        self.clear();
        note(msg);
        self.draw();
    }

    fn clear(&self) {
        if self.live {
            eprint!("\r\x1b[K");
        }
    }

    fn draw(&self) {
        if self.live && self.tally.total > 0 {
            eprint!("sixpac: {}", self.tally.line(self.since));
            let _ = std::io::stderr().flush();
        }
    }

    fn prefix(&self, scenario: &str, profile: &str) -> String {
        self.running.get(&(scenario.to_string(), profile.to_string())).cloned().unwrap_or_else(|| format!("{scenario} on {profile}"))
    }
}

impl Reporter for Terminal<'_> {
    fn on(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::Note(m) => self.say(m),
            Event::ScenarioStarted { scenario, profile, index, total } => {
                self.tally.total = *total;
                self.running.insert((scenario.to_string(), profile.to_string()), format!("[{index}/{total}] {scenario} on {profile}"));
            }
            Event::StepStarted { scenario, profile, index, of, label } => self.say(&format!("{} step {index}/{of}: {label}", self.prefix(scenario, profile))),
            Event::ToldUser { scenario, profile, actor, notice } => self.say(&format!("{} {actor} tells its user: {notice}", self.prefix(scenario, profile))),
            Event::ScenarioFinished { index, total, outcome: o } => {
                self.running.remove(&(o.scenario.clone(), o.profile.clone()));
                self.tally.total = *total;
                self.tally.count(o.verdict);
                self.clear();
                let line = format!("[{index}/{total}] {} on {}: {} ({:.2} s)", o.scenario, o.profile, o.verdict.as_str(), o.duration.as_secs_f64());
                // Where no line is redrawn, each ending says how the run stands.
                match self.live {
                    true => note(&line),
                    false => note(&format!("{line} · {}", self.tally.line(self.since))),
                }
                if o.verdict != Verdict::Pass {
                    eprintln!("  {}", o.message.replace('\n', "\n  "));
                    if let Some(d) = &o.diff {
                        eprintln!("{d}");
                    }
                }
                self.draw();
            }
            Event::RunFinished { outcomes, servers, .. } => {
                self.clear();
                print!("{}", super::summary_table(outcomes, servers));
                print!("{}", super::matrix::to_text(self.catalog, outcomes));
            }
            Event::ServersReady { .. } | Event::StepFinished { .. } | Event::FrameRecorded { .. } | Event::ServersStopped { .. } => {}
        }
        Ok(())
    }
}
