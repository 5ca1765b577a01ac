//! The terminal reporter: progress lines on stderr as the run goes, the table and the matrix
//! on stdout at the end.

use crate::catalog::Requirement;
use crate::runner::event::{Event, Reporter};
use crate::runner::Verdict;

/// A progress line on stderr, always; in sixpac.log too (it is not repeated on stderr by -v).
pub fn note(msg: &str) {
    eprintln!("sixpac: {msg}");
    tracing::info!(target: "sixpac::progress", "{msg}");
}

/// Progress and the end-of-run summary.
pub struct Terminal<'a> {
    catalog: &'a [Requirement],
    /// `[n/total] scenario` of the scenario running now.
    current: String,
}

impl<'a> Terminal<'a> {
    /// A reporter that prints the matrix of `catalog` at the end.
    pub fn new(catalog: &'a [Requirement]) -> Terminal<'a> {
        Terminal { catalog, current: String::new() }
    }
}

impl Reporter for Terminal<'_> {
    fn on(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::Note(m) => note(m),
            Event::ScenarioStarted { scenario, index, total, .. } => self.current = format!("[{index}/{total}] {scenario}"),
            Event::StepStarted { index, of, label, .. } => note(&format!("{} step {index}/{of}: {label}", self.current)),
            Event::ToldUser { actor, notice, .. } => note(&format!("{} {actor} tells its user: {notice}", self.current)),
            Event::ScenarioFinished { index, total, outcome: o } => {
                note(&format!("[{index}/{total}] {} on {}: {} ({:.2} s)", o.scenario, o.profile, o.verdict.as_str(), o.duration.as_secs_f64()));
                if o.verdict != Verdict::Pass {
                    eprintln!("  {}", o.message.replace('\n', "\n  "));
                    if let Some(d) = &o.diff {
                        eprintln!("{d}");
                    }
                }
            }
            Event::RunFinished { outcomes, servers, .. } => {
                print!("{}", super::summary_table(outcomes, servers));
                print!("{}", super::matrix::to_text(self.catalog, outcomes));
            }
            Event::ServersReady { .. } | Event::StepFinished { .. } | Event::FrameRecorded { .. } | Event::ServersStopped { .. } => {}
        }
        Ok(())
    }
}
