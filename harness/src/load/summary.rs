//! A load run's summary.json, and the goals it is held to.

use super::plan::{LoadPlan, Op};
use super::stats::OpSummary;

/// summary.json's `kind` for a load run (a run of scenarios has none).
pub const KIND: &str = "load";

/// Whether a summary.json is a load run's.
pub fn is_load(summary: &serde_json::Value) -> bool {
    summary.get("kind").and_then(serde_json::Value::as_str) == Some(KIND)
}

/// The load run's summary in `dir`; None when `dir` holds no readable summary.json or a run
/// of scenarios.
pub fn read(dir: &std::path::Path) -> Option<Result<LoadSummary, String>> {
    let path = dir.join("summary.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    is_load(&v).then(|| serde_json::from_value(v).map_err(|e| format!("{}: {e}", path.display())))
}

/// What a run must reach to exit 0.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Goals {
    /// Every operation's successes over attempts, in percent.
    pub min_success_pct: f64,
    /// Every operation's p99 latency, when given.
    pub max_p99_ms: Option<f64>,
}

/// summary.json of a load run (`kind: load`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadSummary {
    /// Always [`KIND`].
    pub kind: String,
    pub sixpac_version: String,
    pub run_id: String,
    pub profile: String,
    pub backend: String,
    pub servers: Vec<crate::servers::facts::ServerFacts>,
    pub plan: LoadPlan,
    /// `taps` (recorded) or `servers` (--no-record), and the addresses the users used.
    pub through: String,
    pub xmpp: String,
    pub sip: String,
    pub joined: usize,
    pub issued: u64,
    pub interrupted: bool,
    pub wall_seconds: f64,
    /// When the steady phase began and ended, in seconds since the run began.
    pub steady_seconds: (f64, f64),
    /// Steady-phase operations ended per second (successes and failures).
    pub achieved_rate: f64,
    pub frames_recorded: usize,
    /// sixpac's own peak resident memory (VmHWM), servers not included.
    pub peak_rss_kib: Option<u64>,
    pub operations: Vec<OpSummary>,
    pub goals: Goals,
    /// Each goal missed, in words; empty when the run passed.
    pub missed: Vec<String>,
    pub exit_code: u8,
}

/// This process's peak resident memory in KiB, from /proc/self/status.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The goals each operation missed, in words.
pub fn missed_goals(ops: &[OpSummary], goals: &Goals, interrupted: bool) -> Vec<String> {
    let mut missed = Vec::new();
    if interrupted {
        missed.push("the run was interrupted".to_string());
    }
    for o in ops {
        if o.attempts > 0 && o.success_pct < goals.min_success_pct {
            let top = o.failures_by_reason.iter().max_by_key(|(_, n)| **n).map(|(r, n)| format!("; most often: {r} ({n})")).unwrap_or_default();
            missed.push(format!(
                "{}: {:.2} % succeeded ({} of {}), below {} %{top}",
                o.op.name(),
                o.success_pct,
                o.successes,
                o.attempts,
                goals.min_success_pct
            ));
        }
        if let (Some(max), Some(l)) = (goals.max_p99_ms, &o.latency) {
            if l.p99_ms > max {
                missed.push(format!("{}: p99 {:.1} ms, above {max} ms", o.op.name(), l.p99_ms));
            }
        }
    }
    missed
}

/// Steady-phase operations ended per second: every end of a mix operation over the steady span.
pub fn achieved_rate(ops: &[OpSummary], steady: (f64, f64)) -> f64 {
    let ended: u64 = ops.iter().filter(|o| !matches!(o.op, Op::Join | Op::Leave)).map(|o| o.successes + o.failures).sum();
    let span = steady.1 - steady.0;
    if span > 0.0 { ended as f64 / span } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::{LoadStats, Outcome};
    use std::time::Duration;

    #[test]
    fn goals_are_missed_by_success_and_by_p99() {
        let mut st = LoadStats::default();
        for i in 0..1000 {
            st.attempt(Op::Message, 0);
            let o = if i < 998 { Outcome::Ok(Duration::from_millis(if i < 980 { 5 } else { 300 })) } else { Outcome::Failed("408 Request Timeout".into()) };
            st.finish(Op::Message, 0, o);
        }
        st.attempt(Op::Register, 0);
        st.finish(Op::Register, 0, Outcome::Ok(Duration::from_millis(1)));
        let ops = st.summaries();
        let strict = Goals { min_success_pct: 99.9, max_p99_ms: Some(200.0) };
        let m = missed_goals(&ops, &strict, false);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("message: 99.80 % succeeded (998 of 1000)") && m[0].contains("408 Request Timeout (2)"), "{m:?}");
        assert!(m[1].starts_with("message: p99 300"), "{m:?}");
        assert!(missed_goals(&ops, &Goals { min_success_pct: 99.0, max_p99_ms: None }, false).is_empty());
        assert_eq!(missed_goals(&ops, &Goals { min_success_pct: 0.0, max_p99_ms: None }, true), vec!["the run was interrupted"]);
        assert!((achieved_rate(&ops, (1.0, 3.0)) - 500.5).abs() < 1e-9);
        assert!(peak_rss_kib().is_some_and(|k| k > 0));
    }
}
