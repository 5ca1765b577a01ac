//! End-to-end: actors played by driver processes (docs/driver-protocol.md) against real servers.

mod cli;

use cli::{root, scratch, sixpac, text};
use std::time::{Duration, Instant};

/// The servers are installed (see e2e.rs): outside CI a missing one skips, with CI=true it fails.
fn servers_ready() -> Option<std::sync::MutexGuard<'static, ()>> {
    let missing: Vec<&str> =
        ["prosody", "kamailio", "ejabberdctl"].into_iter().filter(|b| !sixpac::servers::process::binary_exists(b)).collect();
    if missing.is_empty() {
        return Some(cli::serial());
    }
    assert!(std::env::var("CI").ok().as_deref() != Some("true"), "CI=true but server binaries are missing: {missing:?}");
    eprintln!("SKIP: server binaries missing: {missing:?}");
    None
}

fn summary(reports: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(reports.join("latest/summary.json")).unwrap()).unwrap()
}

#[test]
fn the_default_suite_passes_with_every_actor_played_through_the_reference_adapter() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("reference-adapter");
    let out = sixpac(&["run", "--backend", "process", "--client", "all=adapters/reference/client.yaml", "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = summary(&reports);
    let t = &s["totals"];
    let count = cli::default_suite_outcomes() as u64;
    assert_eq!(t["pass"].as_u64().unwrap() + t["inconclusive"].as_u64().unwrap(), count);
    assert_eq!((t["fail"].as_u64(), t["error"].as_u64()), (Some(0), Some(0)));
    // Every scenario that ran was played by driver processes, and says by which client.
    let version = format!("sixpac-reference {}", env!("CARGO_PKG_VERSION"));
    for r in s["results"].as_array().unwrap().iter().filter(|r| r["verdict"] == "pass") {
        let clients = r["clients"].as_object().unwrap();
        assert!(!clients.is_empty() && clients.values().all(|c| c == &serde_json::json!(version)), "{r}");
        for log in r["client_logs"].as_array().unwrap() {
            assert!(reports.join("latest").join(log.as_str().unwrap()).exists(), "{log}");
        }
    }
    let junit = std::fs::read_to_string(reports.join("latest/junit.xml")).unwrap();
    assert!(junit.contains(&format!("name=\"client.alice\" value=\"{version}\"")), "junit names the clients");
}

/// Processes whose command line mentions `needle`, other than this test's own.
fn procs_mentioning(needle: &str) -> Vec<String> {
    let out = std::process::Command::new("ps").args(["-eo", "pid,args"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(needle) && !l.contains("ps -eo")).map(str::to_string).collect()
}

#[test]
fn a_driver_that_exits_hangs_or_writes_garbage_gives_error_naming_the_client_and_leaves_nothing() {
    let Some(_serial) = servers_ready() else { return };
    for (how, says) in [
        ("exits", "its driver exited (exit status: 7)"),
        ("garbage", "wrote something that is not the driver protocol: \"this is not the driver protocol\""),
        ("hangs", "its driver did not answer `connect` in time"),
    ] {
        let reports = scratch(&format!("broken-{how}"));
        let file = format!("harness/tests/drivers/{how}.yaml");
        let started = Instant::now();
        let out = sixpac(&[
            "run", "--backend", "process", "--profile", "prosody+kamailio", "--filter", "basics/dual-login",
            "--client", &format!("alice={file}"), "--report-dir", reports.to_str().unwrap(),
        ]);
        let took = started.elapsed();
        assert_eq!(out.status.code(), Some(3), "{how}: {}", text(&out));
        let s = summary(&reports);
        let r = &s["results"][0];
        assert_eq!(r["verdict"], "error", "{how}: {r}");
        let message = r["message"].as_str().unwrap();
        assert!(message.contains(&format!("client broken-{how} 0")) && message.contains(says), "{how}: {message}");
        // The command deadline (10 s) plus the driver's margin (5 s), with the servers' start.
        assert!(took < Duration::from_secs(30), "{how}: took {took:?}");
        let log = std::fs::read_to_string(reports.join("latest/clients/basics.dual-login.prosody+kamailio.alice.log")).unwrap();
        assert!(log.contains(&format!("broken-{how}: got the first command")), "{how}: the driver's stderr is kept: {log}");
        let left = procs_mentioning(&format!("broken.py {how}"));
        assert!(left.is_empty(), "{how}: left running: {left:?}");
    }
    let _ = root();
}
