//! RFC 4475: every torture message classified as the RFC says, read from the shared corpus.

use sixpac::torture::{classify_dir, Syntax, EXPECTED};
use std::path::Path;

#[test]
fn rfc4475_offline_classification_matches_the_rfc() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/rfc4475");
    if !dir.exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but the RFC 4475 corpus is not at {}", dir.display());
        }
        eprintln!("SKIP: no corpus at {}", dir.display());
        return;
    }
    let (classified, missing) = classify_dir(&dir).unwrap();
    assert!(missing.is_empty(), "missing corpus files: {missing:?}");
    assert_eq!(classified.len(), EXPECTED.len());
    for c in &classified {
        assert_eq!(c.got, c.expected, "{} (RFC 4475 §{}): {:?}", c.file, c.section, c.problems);
        match c.got {
            Syntax::Valid => assert!(c.problems.is_empty()),
            Syntax::Invalid => assert!(!c.problems.is_empty(), "{} has no named problem", c.file),
        }
    }
}

#[test]
fn the_cli_prints_the_table_and_the_count() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/rfc4475");
    if !dir.exists() {
        return; // covered by the test above, which fails under CI=true
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sixpac"))
        .args(["torture", "--offline", "--corpus"])
        .arg(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(text.lines().last(), Some("49/49 classified as RFC 4475 says"));
    assert!(text.contains("badvers.dat") && text.contains("unsupported SIP version SIP/7.0"));
}

#[test]
fn on_the_wire_kamailio_survives_every_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/rfc4475");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let have_kamailio = sixpac::servers::process::binary_exists("kamailio");
    if !dir.exists() || !have_kamailio {
        assert!(!ci, "CI=true but the corpus or kamailio is missing");
        eprintln!("SKIP: corpus or kamailio missing");
        return;
    }
    let reports = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("torture-{}", std::process::id()));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sixpac"))
        .args(["torture", "--profile", "prosody+kamailio", "--backend", "process", "--corpus"])
        .arg(&dir)
        .arg("--report-dir")
        .arg(&reports)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let last = text.lines().rev().find(|l| l.contains("sent to")).unwrap_or("");
    assert_eq!(last, last.replace("NOT alive", ""), "{text}");
    assert!(last.starts_with("49/49 sent to kamailio;") && last.ends_with("alive after every message"), "{last}");
    // The answers were recorded byte for byte.
    let raw = std::fs::read(reports.join("latest/torture.raw")).unwrap();
    assert!(raw.windows(b"SIP/2.0 483 Too Many Hops".len()).any(|w| w == b"SIP/2.0 483 Too Many Hops"));
}
