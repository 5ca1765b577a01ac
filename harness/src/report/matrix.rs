//! The requirements × profiles (× clients) matrix: one cell per requirement and column, from
//! the verdicts of the scenarios that cite the requirement. A column is a profile, and the
//! clients under test that played in it (see `Outcome::column`).

use crate::catalog::Requirement;
use crate::runner::{Outcome, Verdict};

/// One cell's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cell {
    Pass,
    Fail,
    Inconclusive,
    Error,
    NotCovered,
}

impl Cell {
    /// The word shown in the terminal.
    pub fn as_str(self) -> &'static str {
        match self {
            Cell::Pass => "pass",
            Cell::Fail => "fail",
            Cell::Inconclusive => "inconclusive",
            Cell::Error => "error",
            Cell::NotCovered => "not covered",
        }
    }
}

/// A requirement is only `pass` on a profile when every scenario citing it passed there; the
/// worst verdict wins (error, fail, inconclusive, pass).
pub fn cell(outcomes: &[Outcome], requirement: &str, profile: &str) -> Cell {
    let mine: Vec<Verdict> = outcomes
        .iter()
        .filter(|o| o.column() == profile && o.requirements.iter().any(|r| r == requirement))
        .map(|o| o.verdict)
        .collect();
    worst(&mine)
}

/// The cell of these verdicts: the worst wins (error, fail, inconclusive, pass), and none is
/// `not covered`.
pub fn worst(mine: &[Verdict]) -> Cell {
    if mine.is_empty() {
        return Cell::NotCovered;
    }
    if mine.contains(&Verdict::Error) {
        Cell::Error
    } else if mine.contains(&Verdict::Fail) {
        Cell::Fail
    } else if mine.contains(&Verdict::Inconclusive) {
        Cell::Inconclusive
    } else {
        Cell::Pass
    }
}

/// The columns (profiles, with the clients under test) that appear in the outcomes, in
/// first-seen order.
pub fn profiles(outcomes: &[Outcome]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in outcomes {
        let c = o.column();
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The matrix as JSON rows: the catalog entry plus a cell per profile.
pub fn to_json(catalog: &[Requirement], outcomes: &[Outcome]) -> serde_json::Value {
    let profiles = profiles(outcomes);
    let rows: Vec<serde_json::Value> = catalog
        .iter()
        .map(|r| {
            let cells: serde_json::Map<String, serde_json::Value> =
                profiles.iter().map(|p| (p.clone(), serde_json::json!(cell(outcomes, &r.id, p)))).collect();
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["profiles"] = serde_json::Value::Object(cells);
            v
        })
        .collect();
    serde_json::Value::Array(rows)
}

/// The matrix for the terminal.
pub fn to_text(catalog: &[Requirement], outcomes: &[Outcome]) -> String {
    let profiles = profiles(outcomes);
    let w = catalog.iter().map(|r| r.id.len()).max().unwrap_or(11).max(11);
    let mut head = format!("{:<w$}  {:<10}", "requirement", "keyword");
    for p in &profiles {
        head.push_str(&format!("  {:<w2$}", p, w2 = p.len().max(12)));
    }
    let mut out = format!("\n{}\n", head.trim_end());
    for r in catalog {
        let mut row = format!("{:<w$}  {:<10}", r.id, r.keyword);
        for p in &profiles {
            row.push_str(&format!("  {:<w2$}", cell(outcomes, &r.id, p).as_str(), w2 = p.len().max(12)));
        }
        out.push_str(row.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn outcome(profile: &str, reqs: &[&str], verdict: Verdict) -> Outcome {
        Outcome {
            scenario: "s".into(),
            title: "t".into(),
            profile: profile.into(),
            requirements: reqs.iter().map(|s| s.to_string()).collect(),
            verdict,
            message: String::new(),
            diff: None,
            duration: Duration::ZERO,
            started: std::time::SystemTime::UNIX_EPOCH,
            frames: vec![],
            normalized: String::new(),
            expected_path: "x".into(),
            clients: Default::default(),
            client_logs: Default::default(),
            trace_owner: None,
            trace_compared: true,
            servers_gone: false,
            steps: vec![],
            cast: vec![],
            clock_unix_us: 0,
            normalized_seqs: vec![],
        }
    }

    #[test]
    fn the_worst_verdict_wins_and_absence_is_not_covered() {
        let o = vec![
            outcome("p", &["A"], Verdict::Pass),
            outcome("p", &["A", "B"], Verdict::Inconclusive),
            outcome("q", &["A"], Verdict::Fail),
        ];
        assert_eq!(cell(&o, "A", "p"), Cell::Inconclusive);
        assert_eq!(cell(&o, "B", "p"), Cell::Inconclusive);
        assert_eq!(cell(&o, "A", "q"), Cell::Fail);
        assert_eq!(cell(&o, "B", "q"), Cell::NotCovered);
        assert_eq!(cell(&[outcome("p", &["A"], Verdict::Pass)], "A", "p"), Cell::Pass);
    }
}
