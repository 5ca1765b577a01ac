//! What the runner tells reporters while it runs, in order: the seam between running a suite
//! and showing it (the terminal, the run directory's files).

use super::Outcome;
use crate::servers::ServerFacts;
use crate::trace::Frame;
use std::time::Duration;

/// One thing that happened in a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// A line of progress that belongs to no scenario (a server starting, an image building).
    Note(&'a str),
    /// A profile's servers answer on every port; their facts.
    ServersReady { profile: &'a str, servers: &'a [ServerFacts] },
    /// A scenario begins on a profile (`index` of `total`, from 1).
    ScenarioStarted { scenario: &'a str, profile: &'a str, index: usize, total: usize },
    /// A step begins.
    StepStarted { scenario: &'a str, profile: &'a str, index: usize, of: usize, label: &'a str },
    /// A step ended, however it did.
    StepFinished { scenario: &'a str, profile: &'a str, step: &'a StepRecord },
    /// A tap recorded a frame of the scenario's actors (delivered when a step ends after the
    /// wire showed whose it is).
    FrameRecorded { scenario: &'a str, profile: &'a str, frame: &'a Frame },
    /// A client under test told its user something (a warning, a caution).
    ToldUser { scenario: &'a str, profile: &'a str, actor: &'a str, notice: &'a str },
    /// A scenario ended, with everything it recorded: `index` scenarios of `total` have ended
    /// (scenarios running side by side end in any order).
    ScenarioFinished { index: usize, total: usize, outcome: &'a Outcome },
    /// The profile's servers were stopped; their logs are in `logs`.
    ServersStopped { profile: &'a str },
    /// Every scenario has ended.
    RunFinished { outcomes: &'a [Outcome], servers: &'a [ServerFacts], backend: &'a str, result: super::suite::RunResult, wall: Duration },
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Done,
    Fail,
    Error,
    Inconclusive,
    /// An earlier step ended the scenario.
    Skipped,
}

/// One step as it ran: what, where in the file, when on the frames' clock, how it ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub label: String,
    pub actor: String,
    pub line: u64,
    pub column: u64,
    pub status: StepStatus,
    /// Start and end on the frames' clock (`Frame::at`), in seconds.
    pub start: f64,
    pub end: f64,
    /// The frames a `receives` step judged (`seq`): the one it matched, or the arrivals that
    /// did not match when it failed, or the one that must not have come.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<u64>,
}

/// Something that takes the runner's events: a reporter.
pub trait Reporter {
    /// Take one event. An error ends nothing: the run goes on and the error is shown.
    fn on(&mut self, event: &Event) -> std::io::Result<()>;
}

/// Hand an event to every reporter; a reporter's error is printed, not fatal.
pub fn emit(reporters: &mut [&mut dyn Reporter], event: &Event) {
    for r in reporters.iter_mut() {
        if let Err(e) = r.on(event) {
            eprintln!("error: reporting: {e}");
        }
    }
}
