//! Compare a normalized trace with the expected one and say where they part.

use similar::TextDiff;

/// A mismatch: the unified diff and the first frame that differs.
#[derive(Debug, Clone)]
pub struct TraceMismatch {
    pub frame: String,
    pub diff: String,
}

/// The heading line (`004 alice -> kamailio`) of the frame holding line `idx`.
fn frame_at(text: &str, idx: usize) -> String {
    text.lines()
        .take(idx + 1)
        .filter(|l| l.len() > 4 && l.as_bytes()[..3].iter().all(u8::is_ascii_digit) && l.as_bytes()[3] == b' ')
        .last()
        .map(|l| format!("frame {l}"))
        .unwrap_or_else(|| "trace heading".into())
}

/// None when equal; otherwise the diff and the first differing frame.
pub fn compare(expected: &str, actual: &str) -> Option<TraceMismatch> {
    if expected == actual {
        return None;
    }
    let diff = TextDiff::from_lines(expected, actual);
    let first_change = diff
        .ops()
        .iter()
        .find(|op| !matches!(op.tag(), similar::DiffTag::Equal))
        .map(|op| (op.old_range().start, op.new_range().start));
    let frame = match first_change {
        Some((_, new)) if new < actual.lines().count() => frame_at(actual, new),
        Some((old, _)) => frame_at(expected, old),
        None => "trace heading".into(),
    };
    let text = diff.unified_diff().context_radius(3).header("expected", "actual").to_string();
    Some(TraceMismatch { frame, diff: text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_differing_frame() {
        let a = "# t\n001 a -> b\n    X: 1\n002 b -> a\n    Y: 2\n";
        let b = "# t\n001 a -> b\n    X: 1\n002 b -> a\n    Y: 3\n";
        assert!(compare(a, a).is_none());
        let m = compare(a, b).unwrap();
        assert_eq!(m.frame, "frame 002 b -> a");
        assert!(m.diff.contains("-    Y: 2") && m.diff.contains("+    Y: 3"), "{}", m.diff);
    }
}
