//! `sixpac merge`: run directories of one suite (CI shards) as one report. The results go back
//! into the suite's case order; totals, the exit code and the matrix are counted again; JUnit
//! and index.html are made from the merged directory as for any run.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// What a merge made.
#[derive(Debug)]
pub struct Merged {
    pub results: usize,
    pub exit_code: i64,
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The matrix column of a result (`profile`, or `profile · alice=client`).
fn column(r: &Value) -> String {
    let clients: std::collections::BTreeMap<String, String> = r.get("clients").cloned().and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    crate::runner::column(r["profile"].as_str().unwrap_or_default(), &clients)
}

/// Merge `dirs` into `out`. Refused, with what differs, when the runs are of different sixpac
/// versions or suites, or when one case ran in two of them.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged, String> {
    let summaries: Vec<(PathBuf, Value)> = dirs.iter().map(|d| super::run_dir::suite_summary(d).map(|s| (d.clone(), s))).collect::<Result<_, _>>()?;
    let Some((first_dir, first)) = summaries.first() else { return Err("no run directories to merge".into()) };
    for (d, s) in &summaries[1..] {
        if s["sixpac_version"] != first["sixpac_version"] {
            let v = |s: &Value| s["sixpac_version"].as_str().unwrap_or("unknown").to_string();
            return Err(format!("{} is of sixpac {}, {} of sixpac {}: runs of different versions are not one report", d.display(), v(s), first_dir.display(), v(first)));
        }
        if s["suite"]["id"] != first["suite"]["id"] || s["suite"]["id"].is_null() {
            return Err(format!("{} and {} are runs of different suites (scenarios, profiles or scenario files differ): merge shards of one run", d.display(), first_dir.display()));
        }
    }
    let mut results: Vec<Value> = Vec::new();
    for (d, s) in &summaries {
        for r in s["results"].as_array().cloned().unwrap_or_default() {
            if let Some(other) = results.iter().find(|o| o["case"] == r["case"] && o["scenario"] == r["scenario"] && o["profile"] == r["profile"]) {
                let name = |k: &str| other[k].as_str().unwrap_or_default().to_string();
                return Err(format!("{} on {} ran twice ({} and an earlier one): merge disjoint shards", name("scenario"), name("profile"), d.display()));
            }
            results.push(r);
        }
    }
    results.sort_by_key(|r| r["case"].as_u64().unwrap_or(u64::MAX));
    std::fs::create_dir_all(out.join("traces")).map_err(|e| format!("{}: {e}", out.display()))?;
    for (i, (d, _)) in summaries.iter().enumerate() {
        let io = |e: std::io::Error| format!("copying {}: {e}", d.display());
        copy_tree(&d.join("traces"), &out.join("traces")).map_err(io)?;
        copy_tree(&d.join("clients"), &out.join("clients")).map_err(io)?;
        // Each shard started its own servers: their logs side by side.
        copy_tree(&d.join("logs"), &out.join("logs").join(format!("shard-{}", i + 1))).map_err(io)?;
    }
    let count = |v: &str| results.iter().filter(|r| r["verdict"] == v).count();
    let exit_code = if count("error") > 0 || summaries.iter().any(|(_, s)| s["exit_code"] == 3) {
        3
    } else if count("fail") > 0 {
        1
    } else {
        0
    };
    let mut columns: Vec<String> = Vec::new();
    for r in &results {
        let c = column(r);
        if !columns.contains(&c) {
            columns.push(c);
        }
    }
    let requirements: Vec<Value> = first["requirements"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut row| {
            let id = row["id"].as_str().unwrap_or_default().to_string();
            let cells: serde_json::Map<String, Value> = columns
                .iter()
                .map(|c| {
                    let cites: Vec<crate::runner::Verdict> = results
                        .iter()
                        .filter(|r| &column(r) == c && r["requirements"].as_array().is_some_and(|q| q.iter().any(|x| x == &id)))
                        .filter_map(|r| serde_json::from_value(r["verdict"].clone()).ok())
                        .collect();
                    (c.clone(), serde_json::to_value(super::matrix::worst(&cites)).unwrap_or_default())
                })
                .collect();
            row["profiles"] = Value::Object(cells);
            row
        })
        .collect();
    let mut servers: Vec<Value> = Vec::new();
    let mut clients = serde_json::Map::new();
    for (_, s) in &summaries {
        servers.extend(s["servers"].as_array().cloned().unwrap_or_default());
        if let Some(c) = s["clients"].as_object() {
            clients.extend(c.clone());
        }
    }
    let backends: std::collections::BTreeSet<String> = summaries.iter().filter_map(|(_, s)| s["backend"].as_str().map(str::to_string)).collect();
    let mut suite = first["suite"].clone();
    if let Some(o) = suite.as_object_mut() {
        o.remove("shard");
    }
    let summary = json!({
        "run_id": format!("merged-{}", first["run_id"].as_str().unwrap_or_default()),
        "merged_from": summaries.iter().map(|(d, s)| json!({ "dir": d.display().to_string(), "run_id": s["run_id"], "shard": s["suite"]["shard"] })).collect::<Vec<_>>(),
        "sixpac_version": first["sixpac_version"],
        "backend": if backends.len() == 1 { backends.into_iter().next().unwrap_or_default() } else { backends.into_iter().collect::<Vec<_>>().join("+") },
        // Shards run side by side: the merged run took as long as the longest.
        "wall_seconds": summaries.iter().filter_map(|(_, s)| s["wall_seconds"].as_f64()).fold(0.0, f64::max),
        "exit_code": exit_code,
        "totals": { "pass": count("pass"), "fail": count("fail"), "inconclusive": count("inconclusive"), "error": count("error") },
        "servers": servers,
        "clients": clients,
        "requirements": requirements,
        "suite": suite,
        "results": results,
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
    std::fs::write(out.join("summary.json"), text).map_err(|e| format!("{}: {e}", out.display()))?;
    super::write_pages(out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(Merged { results: results.len(), exit_code })
}
