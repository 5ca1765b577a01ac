//! End-to-end: the container and external backends against sixpac's own images under Docker.
//!
//! These need a Docker engine. With `CI=true` a missing engine fails the test; elsewhere the
//! test says it is skipping and returns. The first test to run builds the images (making the
//! Debian base with debootstrap where no registry answers); the rest reuse them.
//! Tests here share the engine and `sixpac clean` sweeps by label, so they run one at a time.

mod cli;

use cli::{interrupt, root, scratch, sixpac, start_waiting_run, summary, text};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const LABEL: &str = "label=org.sixpac.managed=true";

/// One test at a time, with the images built; None (skip) when no engine answers outside CI.
fn docker_ready() -> Option<MutexGuard<'static, ()>> {
    static LOCK: Mutex<()> = Mutex::new(());
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(why) = sixpac::servers::container::engine_answers() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but no Docker engine answers: {why}");
        }
        eprintln!("SKIP: no Docker engine: {why}");
        return None;
    }
    let built = BUILT.get_or_init(|| {
        let started = Instant::now();
        let out = sixpac(&["images", "build"]);
        eprintln!("images build took {:.1} s", started.elapsed().as_secs_f64());
        if out.status.success() { Ok(()) } else { Err(text(&out)) }
    });
    if let Err(e) = built {
        panic!("sixpac images build failed:\n{e}");
    }
    Some(guard)
}

/// Names of sixpac-labelled containers, optionally of one run (by name prefix).
fn labelled(prefix: &str) -> Vec<String> {
    let out = Command::new("docker").args(["ps", "-a", "--filter", LABEL, "--format", "{{.Names}}"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|n| n.starts_with(prefix)).map(str::to_string).collect()
}

#[test]
fn the_default_suite_passes_in_containers_with_the_same_traces() {
    let Some(_g) = docker_ready() else { return };
    let reports = scratch("c-suite");
    let out = sixpac(&["run", "--backend", "container", "--report-dir", reports.to_str().unwrap()]);
    let t = cli::run_text(&out, &reports);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let s = summary(&reports);
    assert_eq!(s["backend"], "container");
    let scenario_count = cli::default_suite_outcomes();
    let t_ = &s["totals"];
    assert_eq!(t_["pass"].as_u64().unwrap() + t_["inconclusive"].as_u64().unwrap(), scenario_count as u64, "{t}");
    assert_eq!((t_["fail"].as_u64(), t_["error"].as_u64()), (Some(0), Some(0)), "{t}");
    for server in s["servers"].as_array().unwrap() {
        assert!(server["image"].as_str().unwrap().starts_with("sha256:"), "{server}");
        assert!(!server["version"].as_str().unwrap_or("").is_empty(), "no version reported: {server}");
        assert!(!server["packages"].as_array().unwrap().is_empty(), "{server}");
    }
    assert!(reports.join("latest/logs/prosody+kamailio/prosody.log").metadata().unwrap().len() > 0);
    assert!(t.contains("reports Prosody 0.12"), "{t}");
    assert!(labelled("sixpac-").is_empty(), "containers left: {:?}", labelled("sixpac-"));
}

#[test]
fn a_failing_run_in_containers_leaves_no_container() {
    let Some(_g) = docker_ready() else { return };
    let reports = scratch("c-fail");
    let scen = root().join("harness/tests/scenarios/negative");
    let out = sixpac(&["run", "--backend", "container", "--scenarios", scen.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(labelled("sixpac-").is_empty(), "containers left: {:?}", labelled("sixpac-"));
}

#[test]
fn sigint_in_a_container_run_removes_its_containers() {
    let Some(_g) = docker_ready() else { return };
    let (mut child, prefix) = start_waiting_run("container", &scratch("c-sigint"));
    assert_eq!(labelled(&prefix).len(), 2, "both server containers should be up");
    assert_eq!(interrupt(&mut child, Duration::from_secs(30)), Some(130));
    assert!(labelled(&prefix).is_empty(), "containers left: {:?}", labelled(&prefix));
}

#[test]
fn kill_9_then_sixpac_clean_leaves_no_container() {
    let Some(_g) = docker_ready() else { return };
    let (mut child, prefix) = start_waiting_run("container", &scratch("c-sigkill"));
    assert_eq!(labelled(&prefix).len(), 2, "both server containers should be up");
    child.kill().unwrap();
    child.wait().unwrap();
    // A leftover that outlived its client (as after a crash of the engine's client side).
    let made = Command::new("docker")
        .args(["create", "--label", "org.sixpac.managed=true", "--name", "sixpac-leftover-test", "sixpac/prosody:bookworm", "true"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    let out = sixpac(&["clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("sixpac-leftover-test"), "{}", text(&out));
    assert!(labelled("sixpac-").is_empty(), "containers left after clean: {:?}", labelled("sixpac-"));
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "clean should remove the killed run's directory");
}

#[test]
fn sixpac_clean_leaves_the_containers_of_a_live_run_alone() {
    let Some(_g) = docker_ready() else { return };
    let (mut child, prefix) = start_waiting_run("container", &scratch("c-live"));
    assert_eq!(labelled(&prefix).len(), 2, "both server containers should be up");
    let out = sixpac(&["clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(labelled(&prefix).len(), 2, "clean removed a live run's containers: {}", text(&out));
    assert_eq!(interrupt(&mut child, Duration::from_secs(30)), Some(130));
    assert!(labelled(&prefix).is_empty(), "the run's own teardown removes them");
}

/// `docker compose` where the plugin exists, else the standalone `docker-compose`.
fn compose(args: &[&str]) -> Output {
    let plugin = Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success());
    let mut c = if plugin {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    c.args(["-p", "sixpac-compose-test"]).args(args).current_dir(root()).stdin(Stdio::null()).output().expect("run compose")
}

struct ComposeDown;
impl Drop for ComposeDown {
    fn drop(&mut self) {
        let _ = compose(&["down", "-t", "3"]);
    }
}

#[test]
fn compose_up_then_the_external_backend_passes() {
    let Some(_g) = docker_ready() else { return };
    let up = compose(&["up", "-d"]);
    let _down = ComposeDown;
    assert!(up.status.success(), "{}", text(&up));
    let reports = scratch("c-external");
    let file = root().join("fixtures/compose/servers.yaml");
    let args = ["run", "--backend", "external", "--servers", file.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()];
    let out = sixpac(&args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(summary(&reports)["backend"], "external");
    // Twice: a run leaves no registration behind that changes the next one's trace.
    let out = sixpac(&args);
    assert_eq!(out.status.code(), Some(0), "second run: {}", text(&out));
    assert!(labelled("sixpac-").is_empty(), "the external backend starts no container of its own");
}
