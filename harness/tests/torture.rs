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
