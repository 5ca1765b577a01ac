//! Counting a load run: per operation, attempts, successes, failures by reason, and latency in
//! HDR histograms, for the whole run and for each second of it.

use super::plan::Op;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// How one operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Duration),
    Failed(String),
}

/// Latencies in microseconds, from 1 µs to 10 minutes, three significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 600_000_000)
}

/// A second's latencies: a histogram while the second may still take samples, then only its
/// percentiles. A histogram of this range is about 170 KiB, so a 10-minute run cannot keep one
/// per second per operation.
#[derive(Debug, Clone)]
enum SecondLatency {
    Live(Option<Box<Histogram<u64>>>),
    Done(Option<Latency>),
}

impl SecondLatency {
    fn latency(&self) -> Option<Latency> {
        match self {
            SecondLatency::Live(h) => h.as_deref().and_then(latency),
            SecondLatency::Done(l) => l.clone(),
        }
    }
}

/// One second of one operation.
#[derive(Debug, Clone)]
struct Second {
    attempts: u64,
    ok: u64,
    failed: u64,
    latency: SecondLatency,
}

impl Second {
    fn new() -> Second {
        Second { attempts: 0, ok: 0, failed: 0, latency: SecondLatency::Live(None) }
    }

    fn record(&mut self, us: u64) {
        match &mut self.latency {
            SecondLatency::Live(h) => h.get_or_insert_with(|| Box::new(histogram())).saturating_record(us),
            // An end told after its second was closed: counted, but its latency is only in
            // the run's own histogram.
            SecondLatency::Done(_) => {}
        }
    }
}

/// One operation over the run.
#[derive(Debug, Clone)]
struct OpStats {
    attempts: u64,
    ok: u64,
    failures: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    seconds: Vec<Second>,
    /// Seconds before this one hold only their percentiles.
    closed: usize,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats { attempts: 0, ok: 0, failures: BTreeMap::new(), latency: histogram(), seconds: Vec::new(), closed: 0 }
    }

    /// Second `s`; every second two or more before it is closed (ends arrive in order within
    /// a few milliseconds, so none is due in those).
    fn second(&mut self, s: usize) -> &mut Second {
        if self.seconds.len() <= s {
            self.seconds.resize_with(s + 1, Second::new);
        }
        let close_to = s.saturating_sub(1);
        for sec in &mut self.seconds[self.closed.min(close_to)..close_to] {
            sec.latency = SecondLatency::Done(sec.latency.latency());
        }
        self.closed = self.closed.max(close_to);
        &mut self.seconds[s]
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn latency(h: &Histogram<u64>) -> Option<Latency> {
    let ms = |us: u64| us as f64 / 1000.0;
    (!h.is_empty()).then(|| Latency {
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        max_ms: ms(h.max()),
        mean_ms: (h.mean() / 10.0).round() / 100.0,
    })
}

/// One second of one operation, as reported: attempts started in it, and ends within it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecondSummary {
    pub t: usize,
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    pub latency: Option<Latency>,
}

/// One operation, as reported.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpSummary {
    pub op: Op,
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    pub failures_by_reason: BTreeMap<String, u64>,
    /// Successes over attempts, in percent.
    pub success_pct: f64,
    pub latency: Option<Latency>,
    pub series: Vec<SecondSummary>,
}

/// Every operation's counts.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    ops: BTreeMap<Op, OpStats>,
}

impl LoadStats {
    /// An operation was started in second `s` of the run.
    pub fn attempt(&mut self, op: Op, s: usize) {
        let o = self.ops.entry(op).or_insert_with(OpStats::new);
        o.attempts += 1;
        o.second(s).attempts += 1;
    }

    /// An operation ended in second `s` of the run.
    pub fn finish(&mut self, op: Op, s: usize, outcome: Outcome) {
        let o = self.ops.entry(op).or_insert_with(OpStats::new);
        match outcome {
            Outcome::Ok(d) => {
                o.ok += 1;
                o.latency.saturating_record(micros(d));
                let sec = o.second(s);
                sec.ok += 1;
                sec.record(micros(d));
            }
            Outcome::Failed(why) => {
                *o.failures.entry(why).or_insert(0) += 1;
                o.second(s).failed += 1;
            }
        }
    }

    /// Attempts not yet ended, over all operations.
    pub fn outstanding(&self) -> u64 {
        // Saturating: a user whose leg broke mid-run leaves (and is counted) before the
        // leave phase counts its attempt.
        self.ops.values().map(|o| o.attempts.saturating_sub(o.ok + o.failures.values().sum::<u64>())).sum()
    }

    /// Count every attempt not yet ended as failed, for `why`, in second `s`.
    pub fn fail_outstanding(&mut self, s: usize, why: &str) {
        for o in self.ops.values_mut() {
            let left = o.attempts.saturating_sub(o.ok + o.failures.values().sum::<u64>());
            if left > 0 {
                *o.failures.entry(why.to_string()).or_insert(0) += left;
                o.second(s).failed += left;
            }
        }
    }

    /// Operations that have run so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.keys().copied().collect()
    }

    /// One operation's counts as reported (None if it never ran).
    pub fn summary(&self, op: Op) -> Option<OpSummary> {
        let o = self.ops.get(&op)?;
        let failures = o.failures.values().sum();
        Some(OpSummary {
            op,
            attempts: o.attempts,
            successes: o.ok,
            failures,
            failures_by_reason: o.failures.clone(),
            success_pct: if o.attempts == 0 { 100.0 } else { 100.0 * o.ok as f64 / o.attempts as f64 },
            latency: latency(&o.latency),
            series: o
                .seconds
                .iter()
                .enumerate()
                .map(|(t, s)| SecondSummary { t, attempts: s.attempts, successes: s.ok, failures: s.failed, latency: s.latency.latency() })
                .collect(),
        })
    }

    /// Every operation, as reported.
    pub fn summaries(&self) -> Vec<OpSummary> {
        self.ops().into_iter().filter_map(|op| self.summary(op)).collect()
    }

    /// Second `s` of every operation that did something in it: (op, successes, failures, p99 ms).
    pub fn second(&self, s: usize) -> Vec<(Op, u64, u64, Option<f64>)> {
        self.ops
            .iter()
            .filter_map(|(op, o)| {
                let sec = o.seconds.get(s)?;
                let p99 = sec.latency.latency().map(|l| l.p99_ms);
                Some((*op, sec.ok, sec.failed, p99))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_behind_keep_only_their_percentiles() {
        let mut st = LoadStats::default();
        for s in 0..600 {
            st.attempt(Op::Chat, s);
            st.finish(Op::Chat, s, Outcome::Ok(Duration::from_millis(s as u64 % 7 + 1)));
        }
        let o = &st.ops[&Op::Chat];
        let live = o.seconds.iter().filter(|s| matches!(s.latency, SecondLatency::Live(Some(_)))).count();
        assert!(live <= 2, "{live} histograms kept");
        let r = st.summary(Op::Chat).unwrap();
        assert_eq!(r.series.len(), 600);
        assert!((r.series[10].latency.as_ref().unwrap().p99_ms - 4.0).abs() < 0.01, "{:?}", r.series[10]);
        assert!((r.series[599].latency.as_ref().unwrap().p50_ms - 5.0).abs() < 0.01, "{:?}", r.series[599]);
    }

    #[test]
    fn counts_percentiles_and_series() {
        let mut st = LoadStats::default();
        for i in 1..=100u64 {
            st.attempt(Op::Register, 0);
            st.finish(Op::Register, (i / 60) as usize, Outcome::Ok(Duration::from_millis(i)));
        }
        st.attempt(Op::Register, 1);
        st.finish(Op::Register, 1, Outcome::Failed("403 Forbidden".into()));
        st.attempt(Op::Chat, 1);
        assert_eq!(st.outstanding(), 1);
        let r = st.summary(Op::Register).unwrap();
        assert_eq!((r.attempts, r.successes, r.failures), (101, 100, 1));
        assert_eq!(r.failures_by_reason["403 Forbidden"], 1);
        let l = r.latency.unwrap();
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p90_ms - 90.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        assert_eq!(r.series.len(), 2);
        assert_eq!((r.series[0].attempts, r.series[0].successes), (100, 59));
        assert_eq!((r.series[1].attempts, r.series[1].successes, r.series[1].failures), (1, 41, 1));
        assert!((r.success_pct - 100.0 * 100.0 / 101.0).abs() < 1e-9);
        let chat = st.summary(Op::Chat).unwrap();
        assert_eq!(chat.latency, None);
        assert_eq!(st.second(1).len(), 2);
        assert_eq!(st.ops(), vec![Op::Register, Op::Chat]);
        st.fail_outstanding(2, "still in flight");
        assert_eq!(st.outstanding(), 0);
        let chat = st.summary(Op::Chat).unwrap();
        assert_eq!((chat.failures, chat.series[2].failures), (1, 1));
        assert_eq!(chat.failures_by_reason["still in flight"], 1);
    }
}
