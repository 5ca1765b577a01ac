//! The ladder as text, for the terminal and for pasting into bug reports: lifelines as
//! columns, one arrow per frame with its label on the line above, steps as rules between them.

use super::ladder::{Ladder, LaneKind, Style};
use crate::runner::event::StepStatus;
use crate::wire::Proto;

/// How to draw.
#[derive(Debug, Clone)]
pub struct TextOptions {
    /// Columns to keep within.
    pub width: usize,
    /// ASCII instead of box-drawing characters.
    pub ascii: bool,
    /// ANSI colours (off when NO_COLOR is set or the output is not a terminal).
    pub color: bool,
    /// Draw the taps' lifelines (folded by default: arrows go from the client to the server).
    pub taps: bool,
    /// Each frame's exact bytes under its arrow.
    pub frames: Option<Vec<(u64, Vec<u8>)>>,
}

impl Default for TextOptions {
    fn default() -> TextOptions {
        TextOptions { width: 80, ascii: false, color: false, taps: false, frames: None }
    }
}

struct Glyphs {
    bar: char,
    line: char,
    dashed: char,
    double: char,
    right: char,
    left: char,
    cross: char,
    rule: char,
}

const BOX: Glyphs = Glyphs { bar: '│', line: '─', dashed: '┄', double: '═', right: '▶', left: '◀', cross: '✕', rule: '┈' };
const ASCII: Glyphs = Glyphs { bar: '|', line: '-', dashed: '.', double: '=', right: '>', left: '<', cross: 'x', rule: '~' };

/// Cut `s` to `n` characters, marking the cut.
fn clip(s: &str, n: usize, ascii: bool) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    let keep: String = s.chars().take(n.saturating_sub(1)).collect();
    if n == 0 {
        String::new()
    } else if ascii {
        format!("{keep}~")
    } else {
        format!("{keep}…")
    }
}

/// Printable text of frame bytes: valid UTF-8 as is (control characters escaped), other bytes
/// as `\xNN`, lines kept.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push('\n'),
                '\r' => {}
                '\t' => out.push_str("    "),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `text` as `# ` comment lines within `width` columns, broken at spaces (a word longer than
/// the line stays whole), each original line kept as one or more.
pub fn comment(text: &str, width: usize) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let indent: String = line.chars().take_while(|c| *c == ' ').collect();
        let mut current = format!("# {indent}");
        let bare = current.len();
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            if current.len() > bare && current.chars().count() + 1 + word.chars().count() > width {
                out.push_str(&current);
                out.push('\n');
                current = format!("#   {indent}");
            } else if current.len() > bare {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}

/// Draw `ladder`; `heading` goes first.
pub fn render(ladder: &Ladder, heading: &str, o: &TextOptions) -> String {
    let g = if o.ascii { &ASCII } else { &BOX };
    let shown: Vec<usize> = (0..ladder.lanes.len()).filter(|&i| o.taps || ladder.lanes[i].kind != LaneKind::Tap).collect();
    let col_of = |lane: usize| shown.iter().position(|&s| s == lane);
    // "12.345 S " before the lifelines: time on the frames' clock and the protocol.
    let gutter = 9;
    let n = shown.len().max(1);
    let spacing = ((o.width.saturating_sub(gutter + 1)) / n).max(4);
    let x = |c: usize| gutter + spacing / 2 + c * spacing;
    let line_width = x(n - 1) + 2;
    let paint = |s: String, code: &str| if o.color { format!("\x1b[{code}m{s}\x1b[0m") } else { s };
    let mut out = comment(heading, o.width);
    // Lane names, centred on their lifelines, clipped to the spacing.
    let mut names = vec![' '; line_width.max(o.width.min(line_width + spacing))];
    for (c, &lane) in shown.iter().enumerate() {
        let name = clip(&ladder.lanes[lane].name, spacing - 1, o.ascii);
        let start = x(c).saturating_sub(name.chars().count() / 2);
        for (i, ch) in name.chars().enumerate() {
            if let Some(slot) = names.get_mut(start + i) {
                *slot = ch;
            }
        }
    }
    out.push_str(names.iter().collect::<String>().trim_end());
    out.push('\n');
    let bars = || {
        let mut row = vec![' '; line_width];
        for c in 0..n {
            row[x(c)] = g.bar;
        }
        row
    };
    // A step as a rule across the ladder, red when it ended the scenario.
    let rule = |m: &super::ladder::Mark| {
        let failed = !matches!(m.status, StepStatus::Done);
        let text = if failed { format!(" step {} {} {}", m.label, g.cross, m.status_word()) } else { format!(" step {}", m.label) };
        let mut row: String = std::iter::repeat_n(g.rule, 3).collect();
        row.push_str(&clip(&text, o.width.saturating_sub(4), o.ascii));
        let row = row.trim_end().to_string();
        format!("{}\n", if failed { paint(row, "1;31") } else { paint(row, "2") })
    };
    let mut marks = ladder.marks.iter().peekable();
    let bytes_of = |seq: u64| o.frames.as_ref().and_then(|f| f.iter().find(|(s, _)| *s == seq)).map(|(_, b)| b);
    for a in &ladder.arrows {
        while let Some(m) = marks.next_if(|m| m.at <= a.at) {
            out.push_str(&rule(m));
        }
        // A dropped frame stops at the tap: with taps folded, halfway to the server.
        let (from, to) = match (col_of(a.from), col_of(a.to)) {
            (Some(f), Some(t)) => (f, t),
            _ => continue,
        };
        let (x1, x2) = (x(from), x(to));
        let (lo, hi) = (x1.min(x2), x1.max(x2));
        let end = if a.style == Style::Dropped {
            match col_of(a.tap) {
                Some(t) if t != from => x(t),
                _ => (x1 + x2) / 2,
            }
        } else {
            x2
        };
        let tag = match a.proto {
            Proto::Sip => 'S',
            Proto::Xmpp => 'X',
        };
        let mut label = a.label.clone();
        if let Some(n) = &a.note {
            label.push_str(&format!(" [{n}]"));
        }
        if o.ascii {
            label = label.replace('·', "-");
        }
        // The label starts over the arrow and may run on over lifelines to the right edge.
        let room = o.width.saturating_sub(lo + 2).max(hi - lo - 1);
        let mut label_row = bars();
        for (i, ch) in clip(&label, room, o.ascii).chars().enumerate() {
            match label_row.get_mut(lo + 2 + i) {
                Some(slot) => *slot = ch,
                None => label_row.push(ch),
            }
        }
        let mut arrow_row = bars();
        let fill = match a.style {
            Style::Retransmission | Style::Closed | Style::Filler => g.dashed,
            Style::Tls => g.double,
            Style::Unparsed | Style::Lost | Style::Fault => '~',
            _ => g.line,
        };
        let (s, e) = (x1.min(end), x1.max(end));
        for slot in arrow_row.iter_mut().take(e).skip(s + 1) {
            *slot = fill;
        }
        if a.style == Style::Dropped {
            arrow_row[end] = g.cross;
        } else if x2 > x1 {
            arrow_row[x2 - 1] = g.right;
        } else {
            arrow_row[x2 + 1] = g.left;
        }
        let time = format!("{:>7.3} {tag}", a.at);
        let color = if a.in_failed_step {
            "31"
        } else {
            match a.proto {
                Proto::Sip => "36",
                Proto::Xmpp => "32",
            }
        };
        let label_text: String = label_row.iter().skip(gutter).collect();
        out.push_str(&format!("{:gutter$}{}\n", "", label_text.trim_end()));
        let arrow: String = arrow_row.iter().collect::<String>().chars().skip(gutter).collect();
        out.push_str(&format!("{time}{}\n", paint(arrow.trim_end().to_string(), color)));
        if let Some(b) = bytes_of(a.seq) {
            for line in printable(b).lines() {
                out.push_str(&format!("{:gutter$}  {}\n", "", line));
            }
        }
    }
    for m in marks {
        out.push_str(&rule(m));
    }
    out
}

impl super::ladder::Mark {
    /// How the step ended, as a word.
    fn status_word(&self) -> &'static str {
        match self.status {
            StepStatus::Done => "done",
            StepStatus::Fail => "FAILED",
            StepStatus::Error => "ERROR",
            StepStatus::Inconclusive => "INCONCLUSIVE",
            StepStatus::Skipped => "skipped",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ladder::{Arrow, Lane, Mark};

    fn ladder() -> Ladder {
        let lane = |n: &str, kind| Lane { name: n.into(), kind };
        let arrow = |seq, from, to, label: &str, proto| Arrow {
            seq, at: seq as f64 / 10.0, proto, from, to, tap: 2, label: label.into(), style: Style::Message, note: None, tls: false, in_failed_step: seq == 3, matched_by: None,
        };
        Ladder {
            lanes: vec![lane("alice.sip", LaneKind::Leg), lane("alice.xmpp", LaneKind::Leg), lane("k.tap", LaneKind::Tap), lane("k", LaneKind::Server), lane("bob.sip", LaneKind::Leg)],
            arrows: vec![
                arrow(1, 1, 3, "message chat · body", Proto::Xmpp),
                arrow(2, 0, 3, "INVITE · CSeq 1", Proto::Sip),
                arrow(3, 4, 3, "180 Ringing · CSeq 1 INVITE with a very long label that cannot fit", Proto::Sip),
            ],
            marks: vec![Mark { at: 0.25, label: "bob: answer".into(), status: StepStatus::Fail }],
        }
    }

    #[test]
    fn it_keeps_to_the_width_and_draws_both_ways() {
        for width in [60, 80, 120] {
            for ascii in [false, true] {
                let t = render(&ladder(), "# t", &TextOptions { width, ascii, ..Default::default() });
                for line in t.lines() {
                    assert!(line.chars().count() <= width, "{width}: {line:?} in\n{t}");
                }
                let (right, left) = if ascii { ('>', '<') } else { ('▶', '◀') };
                assert!(t.contains(right) && t.contains(left), "{t}");
                assert!(t.contains("CSeq 1") && t.contains("step bob: answer"), "{t}");
                assert!(!t.contains("k.tap"), "taps are folded by default:\n{t}");
                if ascii {
                    assert!(t.is_ascii(), "{t}");
                }
            }
        }
        let c = comment("a title that goes on and on past the width of the line\n  and-an-unbreakable-word-longer-than-twenty", 20);
        assert_eq!(c, "# a title that goes\n#   on and on past\n#   the width of the\n#   line\n#   and-an-unbreakable-word-longer-than-twenty\n");
        let t = render(&ladder(), "# t", &TextOptions { taps: true, ..Default::default() });
        assert!(t.contains("k.tap"), "{t}");
        assert!(!t.contains('\x1b'), "no colour unless asked");
    }
}
