//! Reports: the run directory with JUnit, summary.json, traces and server logs; terminal output.

pub mod html;
pub mod junit;
pub mod ladder;
pub mod ladder_text;
pub mod matrix;
pub mod merge;
pub mod pcapng;
pub mod run_dir;
pub mod terminal;

use crate::runner::event::{Event, Reporter};
use crate::runner::{Outcome, Verdict};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub use crate::servers::{ServerFacts, Socket};

/// A trace pair's files, opened ahead of writing.
pub struct TraceFiles {
    raw: std::fs::File,
    trace: std::fs::File,
    redact: bool,
}

impl TraceFiles {
    /// Write the raw frames (credentials masked if the run asked) and the normalized trace.
    pub fn write(mut self, frames: &[crate::trace::Frame], normalized: &str) -> std::io::Result<()> {
        use std::io::Write;
        write_raw(&mut self.raw, frames, self.redact)?;
        self.trace.write_all(normalized.as_bytes())
    }
}

/// The raw trace of `frames` into `file`, credentials masked when `redact`.
fn write_raw(file: &mut std::fs::File, frames: &[crate::trace::Frame], redact: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut raw = std::io::BufWriter::new(file);
    if redact {
        crate::trace::raw::write_redacted(frames, &mut raw)?;
    } else {
        crate::trace::raw::write(frames, &mut raw)?;
    }
    raw.flush()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

/// UTC `YYYYMMDDTHHMMSSZ` without a date crate (days-from-civil inverse, H. Hinnant).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// The report directory of one run; as a reporter, it writes each scenario's files when the
/// scenario ends and the run's (JUnit, summary.json, index.html) when the run does.
pub struct RunReport {
    pub id: String,
    pub dir: PathBuf,
    /// Write raw traces with their credentials masked (`--redact-raw`).
    pub redact_raw: bool,
    /// The requirements the matrix lists.
    pub catalog: Vec<crate::catalog::Requirement>,
    /// Each running scenario's trace files (by file base), opened when it started.
    pending: std::collections::HashMap<String, std::io::Result<TraceFiles>>,
    /// A file of the run could not be written: the run cannot be trusted to CI (exit 3).
    pub write_failed: bool,
    /// Which suite this run is of, and which shard.
    pub suite: Option<SuiteId>,
}

/// What a merge checks runs against: the suite's cases and scenario files, by hash, and the
/// shard a run is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuiteId {
    /// SHA-256 of every case (scenario and profile) and every scenario file's bytes.
    pub id: String,
    /// The suite's (scenario, profile) cases, in run order.
    pub cases: Vec<(String, String)>,
    /// `i/n`, for a shard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
}

impl SuiteId {
    /// The identity of the suite made of `cases` from `scenarios`, and the shard taken of it.
    pub fn of(cases: &[(String, String)], scenarios: &[crate::scenario::Scenario], shard: Option<(usize, usize)>) -> SuiteId {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for (s, p) in cases {
            h.update(format!("{s}\t{p}\n"));
        }
        for sc in scenarios {
            h.update(sc.id.as_bytes());
            h.update(std::fs::read(&sc.path).unwrap_or_default());
        }
        let id = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        SuiteId { id, cases: cases.to_vec(), shard: shard.map(|(i, n)| format!("{i}/{n}")) }
    }

    /// A case's place in the suite.
    pub fn index(&self, scenario: &str, profile: &str) -> Option<usize> {
        self.cases.iter().position(|(s, p)| s == scenario && p == profile)
    }
}

impl Reporter for RunReport {
    fn on(&mut self, event: &Event) -> std::io::Result<()> {
        let r = self.write_for(event);
        self.write_failed |= r.is_err();
        r
    }
}

impl RunReport {
    /// What an event asks of the run directory.
    fn write_for(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::ScenarioStarted { scenario, profile, .. } => {
                let reserved = self.reserve_traces(scenario, profile);
                self.pending.insert(crate::runner::file_base(scenario, profile), reserved);
            }
            Event::ScenarioFinished { outcome: o, .. } => {
                if let Some(traces) = self.pending.remove(&o.file_base()) {
                    traces.and_then(|t| t.write(&o.frames, &o.normalized))?;
                    self.write_pcapng(&o.file_base(), &o.frames, o.clock_unix_us)?;
                }
                self.write_client_logs(o)?;
            }
            Event::RunFinished { outcomes, servers, backend, result, wall } => {
                self.finish(outcomes, servers, backend, result.exit_code().into(), wall.as_secs_f64())?;
                write_pages(&self.dir)?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl RunReport {
    /// Create `<parent>/<run-id>/` and point `<parent>/latest` at it.
    pub fn create(parent: &Path) -> std::io::Result<RunReport> {
        let id = format!("{}-{}", utc_stamp(SystemTime::now()), std::process::id());
        let dir = parent.join(&id);
        std::fs::create_dir_all(dir.join("traces"))?;
        crate::logging::attach(&dir.join("sixpac.log"))?;
        let latest = parent.join("latest");
        let _ = std::fs::remove_file(&latest);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&id, &latest)?;
        Ok(RunReport { id, dir, redact_raw: false, catalog: Vec::new(), pending: Default::default(), write_failed: false, suite: None })
    }

    /// Directory for a profile's server logs.
    pub fn logs_dir(&self, profile: &str) -> PathBuf {
        self.dir.join("logs").join(profile)
    }

    /// Open the trace files of a scenario on a profile before it runs: a run that runs out of
    /// file descriptors can still write what it recorded.
    pub fn reserve_traces(&self, scenario: &str, profile: &str) -> std::io::Result<TraceFiles> {
        self.reserve_trace_pair(&crate::runner::file_base(scenario, profile))
    }

    /// Each client under test's log for one outcome: `clients/<scenario>.<profile>.<actor>.log`.
    pub fn write_client_logs(&self, o: &Outcome) -> std::io::Result<()> {
        if o.client_logs.is_empty() {
            return Ok(());
        }
        let dir = self.dir.join("clients");
        std::fs::create_dir_all(&dir)?;
        for (actor, log) in &o.client_logs {
            std::fs::write(dir.join(format!("{}.{actor}.log", o.file_base())), log)?;
        }
        Ok(())
    }

    /// Write `traces/<base>.raw` and `traces/<base>.trace`.
    pub fn write_trace_pair(&self, base: &str, frames: &[crate::trace::Frame], normalized: &str) -> std::io::Result<()> {
        self.reserve_trace_pair(base)?.write(frames, normalized)
    }

    /// Open `traces/<base>.raw` and `.trace` now, to be written later: a run that ends out of
    /// file descriptors can still write what it recorded.
    pub fn reserve_trace_pair(&self, base: &str) -> std::io::Result<TraceFiles> {
        let dir = self.dir.join("traces");
        Ok(TraceFiles {
            raw: std::fs::File::create(dir.join(format!("{base}.raw")))?,
            trace: std::fs::File::create(dir.join(format!("{base}.trace")))?,
            redact: self.redact_raw,
        })
    }

    /// Write `traces/<base>.raw` alone (a load run has no normalized trace).
    pub fn write_raw_trace(&self, base: &str, frames: &[crate::trace::Frame]) -> std::io::Result<()> {
        write_raw(&mut std::fs::File::create(self.dir.join("traces").join(format!("{base}.raw")))?, frames, self.redact_raw)
    }

    /// Write `traces/<base>.pcapng`.
    pub fn write_pcapng(&self, base: &str, frames: &[crate::trace::Frame], clock_unix_us: u64) -> std::io::Result<()> {
        std::fs::write(self.dir.join("traces").join(format!("{base}.pcapng")), pcapng::render(frames, clock_unix_us))
    }

    /// Write summary.json (`write_pages` makes the rest from it).
    pub fn finish(
        &self,
        outcomes: &[Outcome],
        servers: &[ServerFacts],
        backend: &str,
        exit_code: i32,
        wall: f64,
    ) -> std::io::Result<()> {
        let catalog = &self.catalog;
        let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
        let results: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                let base = format!("traces/{}", o.file_base());
                serde_json::json!({
                    "scenario": o.scenario,
                    "title": o.title,
                    "profile": o.profile,
                    "verdict": o.verdict,
                    "message": o.message,
                    "diff": o.diff,
                    "requirements": o.requirements,
                    "duration_ms": o.duration.as_millis(),
                    "started_unix_ms": unix_ms(o.started),
                    "ended_unix_ms": unix_ms(o.started + o.duration),
                    "frames": o.frames.len(),
                    "trace": format!("{base}.trace"),
                    "raw": format!("{base}.raw"),
                    "pcapng": format!("{base}.pcapng"),
                    "tshark": tshark_command(&format!("{base}.pcapng"), &o.frames),
                    "steps": o.steps,
                    "cast": o.cast,
                    "clock_unix_ms": o.clock_unix_us as f64 / 1000.0,
                    "normalized_seqs": o.normalized_seqs,
                    "expected": o.expected_path,
                    "trace_compared": o.trace_compared && o.verdict == Verdict::Pass || o.diff.is_some(),
                    "clients": o.clients,
                    "client_logs": o.client_logs.keys().map(|a| format!("clients/{}.{a}.log", o.file_base())).collect::<Vec<_>>(),
                    "case": self.suite.as_ref().and_then(|s| s.index(&o.scenario, &o.profile)),
                })
            })
            .collect();
        let summary = serde_json::json!({
            "run_id": self.id,
            "sixpac_version": env!("CARGO_PKG_VERSION"),
            "backend": backend,
            "wall_seconds": wall,
            "exit_code": exit_code,
            "totals": {
                "pass": count(Verdict::Pass),
                "fail": count(Verdict::Fail),
                "inconclusive": count(Verdict::Inconclusive),
                "error": count(Verdict::Error),
            },
            "servers": servers,
            "clients": outcomes.iter().flat_map(|o| o.clients.clone()).collect::<std::collections::BTreeMap<_, _>>(),
            "requirements": matrix::to_json(catalog, outcomes),
            "suite": self.suite,
            "results": results,
        });
        let text = serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join("summary.json"), text)
    }
}

/// What `sixpac serve` recorded, for its summary.json: one result, no verdict.
pub struct Session<'a> {
    pub base: &'a str,
    pub title: &'a str,
    pub profile: &'a str,
    pub frames: &'a [crate::trace::Frame],
    pub normalized_seqs: &'a [u64],
    pub cast: &'a [crate::trace::normalize::AddrName],
    pub clock_unix_us: u64,
    pub started: SystemTime,
    pub servers: &'a [ServerFacts],
    pub backend: &'a str,
}

impl RunReport {
    /// Write a `sixpac serve` session's summary.json, pcapng and index.html (its traces are
    /// written already).
    pub fn finish_session(&self, s: &Session) -> std::io::Result<()> {
        let base = format!("traces/{}", s.base);
        let elapsed = s.started.elapsed().unwrap_or_default();
        let summary = serde_json::json!({
            "run_id": self.id,
            "sixpac_version": env!("CARGO_PKG_VERSION"),
            "kind": "serve",
            "backend": s.backend,
            "wall_seconds": elapsed.as_secs_f64(),
            "exit_code": 0,
            "totals": { "pass": 0, "fail": 0, "inconclusive": 0, "error": 0 },
            "servers": s.servers,
            "clients": {},
            "requirements": [],
            "results": [{
                "scenario": "serve",
                "title": s.title,
                "profile": s.profile,
                "verdict": "recorded",
                "message": "",
                "requirements": [],
                "duration_ms": elapsed.as_millis(),
                "started_unix_ms": unix_ms(s.started),
                "frames": s.frames.len(),
                "trace": format!("{base}.trace"),
                "raw": format!("{base}.raw"),
                "pcapng": format!("{base}.pcapng"),
                "tshark": tshark_command(&format!("{base}.pcapng"), s.frames),
                "cast": s.cast,
                "clock_unix_ms": s.clock_unix_us as f64 / 1000.0,
                "normalized_seqs": s.normalized_seqs,
            }],
        });
        let text = serde_json::to_string_pretty(&summary).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join("summary.json"), text)?;
        self.write_pcapng(s.base, s.frames, s.clock_unix_us)?;
        write_pages(&self.dir)
    }
}

/// Write what a run directory's summary.json and traces give: junit.xml and index.html.
pub fn write_pages(dir: &Path) -> std::io::Result<()> {
    let run = run_dir::RunDir::load(dir).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("junit.xml"), junit::render(&run.results))?;
    std::fs::write(dir.join("index.html"), html::render(&run))
}

/// How to open a pcapng file of these frames with tshark, decode-as options included.
pub fn tshark_command(path: &str, frames: &[crate::trace::Frame]) -> String {
    let mut cmd = format!("tshark -r {path}");
    for d in pcapng::decode_as(frames) {
        cmd.push(' ');
        cmd.push_str(&d);
    }
    cmd
}

/// The end-of-run table for the terminal.
pub fn summary_table(outcomes: &[Outcome], servers: &[ServerFacts]) -> String {
    let w = outcomes.iter().map(|o| o.scenario.len()).max().unwrap_or(8).max(8);
    let pw = outcomes.iter().map(|o| o.profile.len()).max().unwrap_or(7).max(7);
    let mut out = format!("\n{:<w$}  {:<pw$}  {:<12}  {:>8}\n", "scenario", "profile", "verdict", "time");
    for o in outcomes {
        out.push_str(&format!(
            "{:<w$}  {:<pw$}  {:<12}  {:>7.2}s{}\n",
            o.scenario,
            o.profile,
            o.verdict.as_str(),
            o.duration.as_secs_f64(),
            if o.clients.is_empty() { String::new() } else { format!("  {}", o.column().split_once(" · ").map(|(_, c)| c).unwrap_or("")) }
        ));
    }
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    out.push_str(&format!(
        "\n{} passed, {} failed, {} inconclusive, {} errors\n",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Inconclusive),
        count(Verdict::Error)
    ));
    for s in servers {
        let ready = s.ready_ms.map(|ms| format!("ready in {ms} ms")).unwrap_or_else(|| "already up".into());
        out.push_str(&format!(
            "server {} ({}, {}, {}) {ready}; reports {}",
            s.name,
            s.kind,
            s.profile,
            s.backend,
            s.version.as_deref().unwrap_or("no version")
        ));
        if let Some(id) = &s.image {
            out.push_str(&format!("; image {}", id.trim_start_matches("sha256:").get(..12).unwrap_or(id)));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(utc_stamp(UNIX_EPOCH + Duration::from_secs(1_795_662_245)), "20261126T030405Z");
    }
}
