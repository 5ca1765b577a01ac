//! JUnit XML: one testcase per scenario × profile, requirements as properties.

use crate::runner::{Outcome, Verdict};
use crate::xml::escape;

/// Render the whole report.
pub fn render(outcomes: &[Outcome]) -> String {
    let count = |v: Verdict| outcomes.iter().filter(|o| o.verdict == v).count();
    let total: f64 = outcomes.iter().map(|o| o.duration.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"sixpac\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{total:.3}\">\n",
        outcomes.len(),
        count(Verdict::Fail),
        count(Verdict::Error),
        count(Verdict::Inconclusive)
    ));
    let mut profiles: Vec<&str> = outcomes.iter().map(|o| o.profile.as_str()).collect();
    profiles.sort();
    profiles.dedup();
    for p in profiles {
        let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.profile == p).collect();
        let c = |v: Verdict| mine.iter().filter(|o| o.verdict == v).count();
        let t: f64 = mine.iter().map(|o| o.duration.as_secs_f64()).sum();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{t:.3}\">\n",
            escape(p, true),
            mine.len(),
            c(Verdict::Fail),
            c(Verdict::Error),
            c(Verdict::Inconclusive)
        ));
        for o in mine {
            out.push_str(&format!(
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">\n",
                escape(&o.scenario, true),
                escape(&o.profile, true),
                o.duration.as_secs_f64()
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
            let tag = match o.verdict {
                Verdict::Pass => None,
                Verdict::Fail => Some("failure"),
                Verdict::Error => Some("error"),
                Verdict::Inconclusive => Some("skipped"),
            };
            if let Some(tag) = tag {
                out.push_str(&format!(
                    "      <{tag} message=\"{}\">{}</{tag}>\n",
                    escape(o.message.lines().next().unwrap_or(""), true),
                    escape(&body, false)
                ));
            }
            // CI pages show a failing case's output: the ladder of what crossed the wire.
            if matches!(o.verdict, Verdict::Fail | Verdict::Error) && !o.frames.is_empty() {
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
