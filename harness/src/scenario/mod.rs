//! Scenario files: model, parser with located errors, interpolation and matchers.

pub mod capture;
pub mod interpolate;
pub mod matching;
pub mod model;
pub mod parse;

pub use model::{Action, ActorKind, Capture, Scenario, Step, Wire};
pub use parse::{parse_scenario, ScenarioError};

/// The JSON Schema of scenario files (`sixpac schema`; docs/scenario.schema.json).
pub const SCHEMA: &str = include_str!("../../../docs/scenario.schema.json");

use std::path::{Path, PathBuf};

/// Every `*.yaml` file below `root`, sorted, with its id (relative path without extension).
pub fn discover(root: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            // Regular files only: a FIFO or device named `*.yaml` would block the read for ever.
            } else if p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let rel = p.strip_prefix(root).unwrap_or(&p).with_extension("");
                out.push((p.clone(), rel.to_string_lossy().replace('\\', "/")));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A scenario file's text; a file that is not UTF-8 is refused at the line and column of its
/// first bad byte (`path:line:column: …`).
pub fn read_utf8(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let start = good.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
        let byte = e.as_bytes()[good.len()];
        format!("{}:{line}:{column}: not UTF-8 (byte 0x{byte:02x}); scenario files are UTF-8 text", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_utf8_is_refused_where_its_first_bad_byte_is() {
        let path = std::env::temp_dir().join(format!("sixpac-latin1-{}.yaml", std::process::id()));
        std::fs::write(&path, b"title: caf\xc3\xa9\nsteps:\n  - alice: chat bob gr\xfc\xdf\n").unwrap();
        let e = read_utf8(&path).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(e.ends_with(":3:23: not UTF-8 (byte 0xfc); scenario files are UTF-8 text"), "{e}");
    }

    #[test]
    fn a_fifo_named_like_a_scenario_is_not_read() {
        let dir = std::env::temp_dir().join(format!("sixpac-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("real.yaml"), "title: x\n").unwrap();
        let fifo = std::ffi::CString::new(dir.join("pipe.yaml").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let found = discover(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(found.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(), ["real"]);
    }
}
