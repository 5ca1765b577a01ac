//! JUnit XML: one testcase per scenario × profile, requirements as properties. Made from the
//! run directory (`RunDir`), so a live run and a merge of shards write it alike.

use super::run_dir::ResultView;
use crate::xml::escape;

/// Render the whole report.
pub fn render(outcomes: &[ResultView]) -> String {
    let count = |v: &str| outcomes.iter().filter(|o| o.verdict == v).count();
    let total: f64 = outcomes.iter().map(|o| o.duration_ms as f64 / 1000.0).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"sixpac\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total:.3}\">\n",
        outcomes.len(),
        count("fail"),
        count("error"),
        count("inconclusive")
    ));
    let mut profiles: Vec<&str> = outcomes.iter().map(|o| o.profile.as_str()).collect();
    profiles.sort();
    profiles.dedup();
    for p in profiles {
        let mine: Vec<&ResultView> = outcomes.iter().filter(|o| o.profile == p).collect();
        let c = |v: &str| mine.iter().filter(|o| o.verdict == v).count();
        let t: f64 = mine.iter().map(|o| o.duration_ms as f64 / 1000.0).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{t:.3}\">\n",
            escape(p, true),
            mine.len(),
            c("fail"),
            c("error"),
            c("inconclusive")
        ));
        for o in mine {
            out.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">\n",
                escape(&o.scenario, true),
                escape(&o.profile, true),
                o.duration_ms as f64 / 1000.0
            ));
            if !o.requirements.is_empty() || !o.clients.is_empty() {
                out.push_str("      <properties>\n");
                for r in &o.requirements {
                    out.push_str(&format!("        <property name=\"requirement\" value=\"{}\"/>\n", escape(r, true)));
                }
                for (actor, client) in &o.clients {
                    out.push_str(&format!("        <property name=\"client.{}\" value=\"{}\"/>\n", escape(actor, true), escape(client, true)));
                }
                out.push_str("      </properties>\n");
            }
            let body = match &o.diff {
                Some(d) => format!("{}\n\n{d}", o.message),
                None => o.message.clone(),
            };
            let tag = match o.verdict.as_str() {
                "fail" => Some("failure"),
                "error" => Some("error"),
                "inconclusive" => Some("skipped"),
                _ => None,
            };
            if let Some(tag) = tag {
                out.push_str(&format!(
                    "      <{tag} message=\"{}\">{}</{tag}>\n",
                    escape(o.message.lines().next().unwrap_or(""), true),
                    escape(&body, false)
                ));
            }
            // CI pages show a failing case's output: the ladder of what crossed the wire.
            if matches!(o.verdict.as_str(), "fail" | "error") && !o.frames.is_empty() {
                let ladder = super::ladder::build(&o.frames, &o.cast, &o.steps);
                let text = super::ladder_text::render(&ladder, &format!("# {} on {}", o.scenario, o.column()), &super::ladder_text::TextOptions { width: 100, ..Default::default() });
                out.push_str(&format!("      <system-out>{}</system-out>\n", escape(&text, false)));
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
