//! RFC 4475 torture messages: what the RFC says of each, and how sixpac's parser classifies it.

use crate::sip::{validate, SipMessage};
use std::path::Path;

pub mod wire;

/// What RFC 4475 says an element must do with a message's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Well-formed: parse it (application-layer handling may still reject it).
    Valid,
    /// Malformed: reject or flag it.
    Invalid,
}

/// The RFC's verdict per file name: section, syntax, and the response the RFC names, if any.
pub const EXPECTED: &[(&str, &str, Syntax, Option<u16>)] = &[
    ("wsinv.dat", "3.1.1.1", Syntax::Valid, None),
    ("intmeth.dat", "3.1.1.2", Syntax::Valid, None),
    ("esc01.dat", "3.1.1.3", Syntax::Valid, None),
    ("escnull.dat", "3.1.1.4", Syntax::Valid, None),
    ("esc02.dat", "3.1.1.5", Syntax::Valid, None),
    ("lwsdisp.dat", "3.1.1.6", Syntax::Valid, None),
    ("longreq.dat", "3.1.1.7", Syntax::Valid, None),
    ("dblreq.dat", "3.1.1.8", Syntax::Valid, None),
    ("semiuri.dat", "3.1.1.9", Syntax::Valid, None),
    ("transports.dat", "3.1.1.10", Syntax::Valid, None),
    ("mpart01.dat", "3.1.1.11", Syntax::Valid, None),
    ("unreason.dat", "3.1.1.12", Syntax::Valid, None),
    ("noreason.dat", "3.1.1.13", Syntax::Valid, None),
    ("badinv01.dat", "3.1.2.1", Syntax::Invalid, Some(400)),
    ("clerr.dat", "3.1.2.2", Syntax::Invalid, Some(400)),
    ("ncl.dat", "3.1.2.3", Syntax::Invalid, Some(400)),
    ("scalar02.dat", "3.1.2.4", Syntax::Invalid, Some(400)),
    ("scalarlg.dat", "3.1.2.5", Syntax::Invalid, None),
    ("quotbal.dat", "3.1.2.6", Syntax::Invalid, Some(400)),
    ("ltgtruri.dat", "3.1.2.7", Syntax::Invalid, Some(400)),
    ("lwsruri.dat", "3.1.2.8", Syntax::Invalid, Some(400)),
    ("lwsstart.dat", "3.1.2.9", Syntax::Invalid, Some(400)),
    ("trws.dat", "3.1.2.10", Syntax::Invalid, Some(400)),
    ("escruri.dat", "3.1.2.11", Syntax::Invalid, Some(400)),
    ("baddate.dat", "3.1.2.12", Syntax::Invalid, Some(400)),
    ("regbadct.dat", "3.1.2.13", Syntax::Invalid, Some(400)),
    ("badaspec.dat", "3.1.2.14", Syntax::Invalid, Some(400)),
    ("baddn.dat", "3.1.2.15", Syntax::Invalid, Some(400)),
    ("badvers.dat", "3.1.2.16", Syntax::Invalid, Some(505)),
    ("mismatch01.dat", "3.1.2.17", Syntax::Invalid, Some(400)),
    ("mismatch02.dat", "3.1.2.18", Syntax::Invalid, Some(400)),
    ("bigcode.dat", "3.1.2.19", Syntax::Invalid, None),
    ("badbranch.dat", "3.2.1", Syntax::Valid, None),
    ("insuf.dat", "3.3.1", Syntax::Valid, Some(400)),
    ("unkscm.dat", "3.3.2", Syntax::Valid, Some(416)),
    ("novelsc.dat", "3.3.3", Syntax::Valid, Some(416)),
    ("unksm2.dat", "3.3.4", Syntax::Valid, None),
    ("bext01.dat", "3.3.5", Syntax::Valid, Some(420)),
    ("invut.dat", "3.3.6", Syntax::Valid, Some(415)),
    ("regaut01.dat", "3.3.7", Syntax::Valid, Some(401)),
    ("multi01.dat", "3.3.8", Syntax::Valid, Some(400)),
    ("mcl01.dat", "3.3.9", Syntax::Valid, Some(400)),
    ("bcast.dat", "3.3.10", Syntax::Valid, None),
    ("zeromf.dat", "3.3.11", Syntax::Valid, Some(483)),
    ("cparam01.dat", "3.3.12", Syntax::Valid, None),
    ("cparam02.dat", "3.3.13", Syntax::Valid, None),
    ("regescrt.dat", "3.3.14", Syntax::Valid, None),
    ("sdp01.dat", "3.3.15", Syntax::Valid, Some(406)),
    ("inv2543.dat", "3.4.1", Syntax::Valid, None),
];

/// How sixpac's parser read one message.
#[derive(Debug, Clone)]
pub struct Classified {
    pub file: String,
    pub section: &'static str,
    pub expected: Syntax,
    pub got: Syntax,
    /// Parse error or grammar problems; empty when valid.
    pub problems: Vec<String>,
}

/// Parse and check one message's bytes.
pub fn classify_bytes(raw: &[u8]) -> (Syntax, Vec<String>) {
    match SipMessage::parse(raw) {
        Err(e) => (Syntax::Invalid, vec![e.to_string()]),
        Ok(m) => {
            let p = validate::problems(&m);
            (if p.is_empty() { Syntax::Valid } else { Syntax::Invalid }, p)
        }
    }
}

/// Classify every known file present in `dir`; unknown files are ignored, missing ones reported.
pub fn classify_dir(dir: &Path) -> std::io::Result<(Vec<Classified>, Vec<&'static str>)> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (file, section, expected, _) in EXPECTED {
        let path = dir.join(file);
        if !path.exists() {
            missing.push(*file);
            continue;
        }
        let raw = std::fs::read(&path)?;
        let (got, problems) = classify_bytes(&raw);
        out.push(Classified { file: file.to_string(), section, expected: *expected, got, problems });
    }
    Ok((out, missing))
}

/// The offline report: a table, then `N/49 classified as RFC 4475 says`.
pub fn offline_report(classified: &[Classified], missing: &[&str]) -> (String, usize) {
    let mut out = format!("{:<16} {:<9} {:<8} {:<8} {}\n", "file", "section", "rfc", "sixpac", "problems");
    let word = |s: Syntax| if s == Syntax::Valid { "valid" } else { "invalid" };
    for c in classified {
        let mark = if c.expected == c.got { "" } else { "  <-- differs" };
        out.push_str(&format!(
            "{:<16} {:<9} {:<8} {:<8} {}{mark}\n",
            c.file,
            c.section,
            word(c.expected),
            word(c.got),
            c.problems.join("; ")
        ));
    }
    for m in missing {
        out.push_str(&format!("{m:<16} missing from the corpus folder\n"));
    }
    let right = classified.iter().filter(|c| c.expected == c.got).count();
    out.push_str(&format!("{right}/{} classified as RFC 4475 says\n", EXPECTED.len()));
    (out, right)
}
