//! A run directory read back: summary.json and each result's raw and normalized traces. The
//! HTML report, `sixpac report` and `sixpac show` all draw from this, so a live run, an old run
//! and runs merged from CI shards get the same pages.

use crate::runner::event::StepRecord;
use crate::trace::normalize::AddrName;
use crate::trace::Frame;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One scenario × profile (× clients) of a run, with its frames.
#[derive(Debug, Clone)]
pub struct ResultView {
    pub scenario: String,
    pub title: String,
    pub profile: String,
    pub verdict: String,
    pub message: String,
    pub diff: Option<String>,
    pub duration_ms: u64,
    pub requirements: Vec<String>,
    pub clients: BTreeMap<String, String>,
    pub steps: Vec<StepRecord>,
    pub cast: Vec<AddrName>,
    /// The frames' time zero, microseconds since the Unix epoch.
    pub clock_unix_us: u64,
    pub frames: Vec<Frame>,
    /// Each frame's block of the normalized trace, by `seq`.
    pub normalized: HashMap<u64, String>,
    /// Paths relative to the run directory.
    pub raw: String,
    pub trace: String,
    pub pcapng: String,
    /// Why the traces could not be read, if they could not.
    pub trace_problem: Option<String>,
}

impl ResultView {
    /// `sip.call-answered.ejabberd`: the name of its files, and its anchor in the HTML.
    pub fn file_base(&self) -> String {
        crate::runner::file_base(&self.scenario, &self.profile)
    }

    /// The matrix column (`profile`, or `profile · alice=baresip 1.0`).
    pub fn column(&self) -> String {
        crate::runner::column(&self.profile, &self.clients)
    }

    /// The tshark command that decodes its pcapng, run from the run directory.
    pub fn tshark(&self) -> String {
        super::tshark_command(&self.pcapng, &self.frames)
    }
}

/// summary.json of a run of scenarios; a load run's (`kind: load`) is refused by name, as it
/// has no scenario results to show or merge.
pub fn suite_summary(dir: &Path) -> Result<Value, String> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let summary: Value = serde_json::from_str(&text).map_err(|e| format!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    if crate::load::summary::is_load(&summary) {
        return Err(format!("{} is a `sixpac load` run, which holds no scenario results (its page is index.html)", dir.display()));
    }
    Ok(summary)
}

/// A whole run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub dir: PathBuf,
    pub summary: Value,
    pub results: Vec<ResultView>,
}

fn string(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn parsed<T: serde::de::DeserializeOwned + Default>(v: &Value, k: &str) -> T {
    v.get(k).cloned().and_then(|x| serde_json::from_value(x).ok()).unwrap_or_default()
}

/// The blocks of a normalized trace by number: `001 alice -> kamailio` and its indented lines.
fn blocks(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let numbered = line.len() > 4 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit) && line.as_bytes()[3] == b' ';
        if numbered {
            out.extend(current.take());
            current = Some(format!("{line}\n"));
        } else if let (Some(c), Some(body)) = (current.as_mut(), line.strip_prefix("    ")) {
            c.push_str(body);
            c.push('\n');
        } else {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

impl RunDir {
    /// Read `dir/summary.json` and every result's traces. A result whose traces are missing or
    /// unreadable keeps its verdict and says why (`trace_problem`).
    pub fn load(dir: &Path) -> Result<RunDir, String> {
        let summary = suite_summary(dir)?;
        let mut results = Vec::new();
        for r in summary.get("results").and_then(Value::as_array).cloned().unwrap_or_default() {
            let raw = string(&r, "raw");
            let trace = string(&r, "trace");
            let mut problem = None;
            let frames = match std::fs::read(dir.join(&raw)) {
                Ok(b) => crate::trace::raw::read(&b).unwrap_or_else(|e| {
                    problem = Some(format!("{raw}: {e}"));
                    Vec::new()
                }),
                Err(e) if !raw.is_empty() => {
                    problem = Some(format!("{raw}: {e}"));
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            let seqs: Vec<u64> = parsed(&r, "normalized_seqs");
            let normalized = std::fs::read_to_string(dir.join(&trace))
                .map(|t| seqs.iter().copied().zip(blocks(&t)).collect())
                .unwrap_or_default();
            let started_us = r.get("started_unix_ms").and_then(Value::as_u64).unwrap_or(0) * 1000;
            // Runs from before the clock was recorded: the first frame is near the start.
            // Milliseconds with a fraction in the file (a 16-digit integer would look like a
            // secret to a scanner), microseconds here.
            let clock = r.get("clock_unix_ms").and_then(Value::as_f64).map(|ms| (ms * 1000.0).round() as u64).unwrap_or_else(|| started_us.saturating_sub(frames.first().map_or(0, |f| f.at.as_micros() as u64)));
            let pcapng = r.get("pcapng").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| raw.replace(".raw", ".pcapng"));
            results.push(ResultView {
                scenario: string(&r, "scenario"),
                title: string(&r, "title"),
                profile: string(&r, "profile"),
                verdict: string(&r, "verdict"),
                message: string(&r, "message"),
                diff: r.get("diff").and_then(Value::as_str).map(str::to_string),
                duration_ms: r.get("duration_ms").and_then(Value::as_u64).unwrap_or(0),
                requirements: parsed(&r, "requirements"),
                clients: parsed(&r, "clients"),
                steps: parsed(&r, "steps"),
                cast: parsed(&r, "cast"),
                clock_unix_us: clock,
                frames,
                normalized,
                raw,
                trace,
                pcapng,
                trace_problem: problem,
            });
        }
        Ok(RunDir { dir: dir.to_path_buf(), summary, results })
    }

    /// The results of `scenario` (its id, or its file base), on `profile` if given.
    pub fn find(&self, scenario: &str, profile: Option<&str>) -> Vec<&ResultView> {
        let scenario = scenario.trim_end_matches(".yaml");
        self.results
            .iter()
            .filter(|r| r.scenario == scenario || r.file_base() == scenario || r.scenario.replace('/', ".") == scenario)
            .filter(|r| profile.is_none_or(|p| r.profile == p))
            .collect()
    }

    /// Write every result's pcapng again from its raw trace.
    pub fn write_pcapngs(&self) -> std::io::Result<usize> {
        let mut n = 0;
        for r in self.results.iter().filter(|r| r.trace_problem.is_none() && !r.raw.is_empty()) {
            std::fs::write(self.dir.join(&r.pcapng), super::pcapng::render(&r.frames, r.clock_unix_us))?;
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_blocks_are_cut_at_their_numbers() {
        let t = "# sixpac normalized trace: x\n\n== alice sip/udp via k\n001 alice -> k\n    REGISTER sip:d SIP/2.0\n    CSeq: 1\n002 k -> alice\n    SIP/2.0 200 OK\n\n== bob\n003 bob -> k\n    X\n";
        let b = blocks(t);
        assert_eq!(b, ["001 alice -> k\nREGISTER sip:d SIP/2.0\nCSeq: 1\n", "002 k -> alice\nSIP/2.0 200 OK\n", "003 bob -> k\nX\n"]);
    }
}
