//! The HTML page of a load run: the plan, a table per operation, and per-second plots of
//! throughput and latency drawn as inline SVG (the page fetches and runs nothing).

use super::stats::OpSummary;
use super::summary::LoadSummary;
use crate::xml::escape;
use std::fmt::Write;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222}\
h1{font-size:1.5em;margin:.6em 0 .2em} h2{font-size:1.2em;margin:1.4em 0 .4em}\
table{border-collapse:collapse;margin:.4em 0} td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left} .bad{color:#b00020;font-weight:600} .ok{color:#1b7a2f;font-weight:600}\
svg{background:#fafafa;border:1px solid #ddd;margin:.2em 1em .2em 0} .legend span{margin-right:1em}";

/// One line of a plot: its name, colour and a value per second (None where there was none).
struct Series<'a> {
    name: &'a str,
    colour: &'a str,
    points: Vec<Option<f64>>,
}

/// An SVG line plot of `series` over seconds, with its y axis in `unit`.
fn plot(title: &str, unit: &str, series: &[Series]) -> String {
    let (w, h, left, bottom) = (520.0, 180.0, 48.0, 22.0);
    let n = series.iter().map(|s| s.points.len()).max().unwrap_or(0).max(2);
    let top = series.iter().flat_map(|s| s.points.iter().flatten()).fold(0.0f64, |a, b| a.max(*b));
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let x = |i: usize| left + (w - left - 8.0) * i as f64 / (n - 1) as f64;
    let y = |v: f64| 8.0 + (h - bottom - 8.0) * (1.0 - v / top);
    let mut svg = format!("<svg width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">", escape(title, true));
    let _ = write!(svg, "<text x=\"{left}\" y=\"14\" font-size=\"12\">{}</text>", escape(title, false));
    for frac in [0.0, 0.5, 1.0] {
        let v = top / 1.1 * frac;
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{} {unit}</text>",
            w - 8.0,
            left - 4.0,
            y(v) + 3.0,
            short(v),
            y0 = y(v)
        );
    }
    let _ = write!(svg, "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{} s</text>", w - 8.0, h - 6.0, n - 1);
    let _ = write!(svg, "<text x=\"{left}\" y=\"{}\" font-size=\"10\">0 s</text>", h - 6.0);
    for s in series {
        let mut d = String::new();
        let mut pen_down = false;
        for (i, p) in s.points.iter().enumerate() {
            match p {
                Some(v) => {
                    let _ = write!(d, "{}{:.1},{:.1} ", if pen_down { "L" } else { "M" }, x(i), y(*v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(svg, "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\"><title>{}</title></path>", s.colour, escape(s.name, false));
    }
    svg.push_str("</svg>");
    svg
}

/// A number short enough for an axis label.
fn short(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else if v >= 10.0 { format!("{v:.1}") } else { format!("{v:.2}") }
}

fn legend(series: &[(&str, &str)]) -> String {
    let spans: String = series.iter().map(|(n, c)| format!("<span style=\"color:{c}\">━ {n}</span>")).collect();
    format!("<p class=\"legend\">{spans}</p>")
}

/// One operation's plots over the run's `seconds` (the same axis for every operation).
fn op_section(o: &OpSummary, seconds: usize) -> String {
    let name = o.op.name();
    // Seconds after the operation's last are empty: no ends, no latency.
    let per_second = |f: fn(&super::stats::SecondSummary) -> Option<f64>, after: Option<f64>| {
        let mut v: Vec<Option<f64>> = o.series.iter().map(f).collect();
        v.resize(seconds.max(v.len()), after);
        v
    };
    let rate = plot(
        &format!("{name}: ended per second"),
        "/s",
        &[
            Series { name: "successes", colour: "#1b7a2f", points: per_second(|s| Some(s.successes as f64), Some(0.0)) },
            Series { name: "failures", colour: "#b00020", points: per_second(|s| Some(s.failures as f64), Some(0.0)) },
        ],
    );
    let lat = plot(
        &format!("{name}: latency per second"),
        "ms",
        &[
            Series { name: "p50", colour: "#1f5fbf", points: per_second(|s| s.latency.as_ref().map(|l| l.p50_ms), None) },
            Series { name: "p99", colour: "#c77700", points: per_second(|s| s.latency.as_ref().map(|l| l.p99_ms), None) },
        ],
    );
    let mut failures = String::new();
    for (why, n) in &o.failures_by_reason {
        let _ = write!(failures, "<li>{n} × {}</li>", escape(why, false));
    }
    let failures = if failures.is_empty() { String::new() } else { format!("<p>failures:</p><ul>{failures}</ul>") };
    format!(
        "<section id=\"{name}\"><h2>{name}</h2><div>{rate}{lat}</div>{}{}{failures}</section>",
        legend(&[("successes", "#1b7a2f"), ("failures", "#b00020")]),
        legend(&[("p50", "#1f5fbf"), ("p99", "#c77700")])
    )
}

/// The whole page.
pub fn render(s: &LoadSummary) -> String {
    let mut body = format!(
        "<h1>sixpac load on {}</h1><p>{} users, {} operations/s of {} for {} s, through the {} ({} backend); \
         {} joined, {} operations issued, {:.1} ended/s in the steady phase, {} frames recorded, {:.1} s in all.</p>",
        escape(&s.profile, false),
        s.plan.users,
        s.plan.rate,
        escape(&s.plan.mix.iter().map(|o| o.name()).collect::<Vec<_>>().join(","), false),
        s.plan.duration.as_secs_f64(),
        s.through,
        escape(&s.backend, false),
        s.joined,
        s.issued,
        s.achieved_rate,
        s.frames_recorded,
        s.wall_seconds
    );
    for srv in &s.servers {
        let _ = write!(body, "<p>{}: {}</p>", escape(&srv.name, false), escape(srv.version.as_deref().unwrap_or("version unknown"), false));
    }
    if s.missed.is_empty() {
        let _ = write!(body, "<p class=\"ok\">every goal met (exit {})</p>", s.exit_code);
    } else {
        let items: String = s.missed.iter().map(|m| format!("<li>{}</li>", escape(m, false))).collect();
        let _ = write!(body, "<p class=\"bad\">goals missed (exit {}):</p><ul>{items}</ul>", s.exit_code);
    }
    body.push_str("<table><tr><th>operation</th><th>attempts</th><th>successes</th><th>failures</th><th>success %</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th></tr>");
    for o in &s.operations {
        let l = |f: fn(&super::stats::Latency) -> f64| o.latency.as_ref().map(|l| format!("{:.2}", f(l))).unwrap_or_else(|| "–".into());
        let _ = write!(
            body,
            "<tr><td><a href=\"#{n}\">{n}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            o.attempts,
            o.successes,
            o.failures,
            o.success_pct,
            l(|l| l.p50_ms),
            l(|l| l.p90_ms),
            l(|l| l.p99_ms),
            l(|l| l.max_ms),
            n = o.op.name()
        );
    }
    body.push_str("</table>");
    let seconds = s.operations.iter().map(|o| o.series.len()).max().unwrap_or(0);
    for o in &s.operations {
        body.push_str(&op_section(o, seconds));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<title>sixpac load on {}</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        escape(&s.profile, false)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plot_draws_each_series_and_breaks_where_a_second_had_nothing() {
        let svg = plot("t", "ms", &[Series { name: "p99", colour: "#000", points: vec![Some(1.0), None, Some(3.0), Some(2.0)] }]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let d = svg.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "a gap starts a new stroke: {d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        assert!(plot("<x>", "/s", &[]).contains("&lt;x&gt;"));
    }
}
