//! Scenario files: model, parser with located errors, interpolation and matchers.

pub mod interpolate;
pub mod matching;
pub mod model;
pub mod parse;

pub use model::{Action, ActorKind, Scenario, Step, Wire};
pub use parse::{parse_scenario, ScenarioError};

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
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let rel = p.strip_prefix(root).unwrap_or(&p).with_extension("");
                out.push((p.clone(), rel.to_string_lossy().replace('\\', "/")));
            }
        }
    }
    out.sort();
    Ok(out)
}
