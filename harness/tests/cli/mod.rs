//! Driving the `sixpac` binary from end-to-end tests: paths, runs, output, signals.
#![allow(dead_code)] // each test binary uses its own part of this

pub mod reports;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The project root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Run sixpac to completion from the project root, with no stdin.
pub fn sixpac(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sixpac"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("run sixpac")
}

/// stdout then stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A suite run's failed and errored results (scenario, profile, message and the head of the
/// diff), then its output: CI prints only the head and tail of a long assertion message, and
/// the reason must be in view.
pub fn run_text(o: &Output, reports: &Path) -> String {
    let mut head = String::new();
    // Not `summary()`: a run that failed early may have written none.
    let latest = std::fs::read_to_string(reports.join("latest/summary.json")).ok();
    let summary = latest.and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok()).unwrap_or_default();
    for r in summary["results"].as_array().into_iter().flatten() {
        if r["verdict"] == "fail" || r["verdict"] == "error" {
            let diff: String = r["diff"].as_str().unwrap_or("").lines().take(60).collect::<Vec<_>>().join("\n");
            head += &format!("== {} on {}: {}: {}\n{diff}\n", r["scenario"], r["profile"], r["verdict"], r["message"]);
        }
    }
    head + &text(o)
}

/// A fresh directory under the target's temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The summary.json of the latest run under `reports`.
pub fn summary(reports: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(reports.join("latest/summary.json")).unwrap()).unwrap()
}

/// The result of `scenario` on `profile` in a summary.json.
pub fn result_of<'a>(summary: &'a serde_json::Value, scenario: &str, profile: &str) -> &'a serde_json::Value {
    summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["scenario"] == scenario && r["profile"] == profile)
        .unwrap_or_else(|| panic!("no result for {scenario} on {profile}"))
}

/// Start a run of the `slow` scenario (its last step waits 60 s) on `backend`; return once it
/// is waiting, with the prefix its run directories and container names carry.
pub fn start_waiting_run(backend: &str, dir: &Path) -> (Child, String) {
    start_waiting_run_of("harness/tests/scenarios/slow", backend, dir)
}

/// The same with the long wait of another scenario folder (e.g. one for ejabberd).
pub fn start_waiting_run_of(scenarios: &str, backend: &str, dir: &Path) -> (Child, String) {
    let scen = root().join(scenarios);
    let (child, prefix, mut lines) = spawn_reading_stderr(&["run", "--backend", backend, "--scenarios", scen.to_str().unwrap(), "--report-dir", dir.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let Some(Ok(l)) = lines.next() else { break };
        seen.push_str(&l);
        seen.push('\n');
        if l.contains("step 2/2") {
            break;
        }
    }
    assert!(seen.contains("step 2/2"), "run never reached the wait: {seen}");
    drain(lines);
    (child, prefix)
}

/// Start sixpac from the project root with no stdin and stdout discarded: the child, the
/// prefix of its run's temp directories (which its servers' command lines name), and its
/// stderr by line. Drain the lines on a thread once done with them (see `drain`).
pub fn spawn_reading_stderr(args: &[&str]) -> (Child, String, std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sixpac"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = format!("sixpac-{}-", child.id());
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, prefix, lines)
}

/// Keep reading `lines` on a thread, so that the child never blocks on a full pipe.
pub fn drain(lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) {
    std::thread::spawn(move || for _ in lines {});
}

/// SIGINT the child and wait (at most `within`) for its exit code.
pub fn interrupt(child: &mut Child, within: Duration) -> Option<i32> {
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let until = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        assert!(Instant::now() < until, "sixpac did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}


/// How many scenario × profile outcomes a run of the default suite gives.
pub fn default_suite_outcomes() -> usize {
    let profiles: Vec<String> = sixpac::servers::profile::load_profiles(&root().join("fixtures"))
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    sixpac::scenario::discover(&root().join("scenarios"))
        .unwrap()
        .into_iter()
        .map(|(path, id)| {
            let text = std::fs::read_to_string(&path).unwrap();
            sixpac::scenario::parse_scenario(&path, &id, &text, &profiles, None).unwrap().profiles.len()
        })
        .sum()
}

/// One server-starting test at a time within a test binary: the machine has two cores, and
/// several profiles starting at once make timing races (and port races) far likelier.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The servers are installed: hold the one-at-a-time lock (see [`serial`]). Outside CI a
/// missing server skips the test; with CI=true it fails it.
pub fn servers_ready() -> Option<std::sync::MutexGuard<'static, ()>> {
    let missing: Vec<&str> = ["prosody", "kamailio", "prosodyctl", "ejabberdctl"]
        .into_iter()
        .filter(|b| !sixpac::servers::process::binary_exists(b))
        .collect();
    if missing.is_empty() {
        return Some(serial());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but server binaries are missing: {missing:?}; .ci/run must install them");
    }
    eprintln!("SKIP: server binaries missing: {missing:?}");
    None
}

/// Processes whose command line mentions `needle`, as `PID: command line`.
pub fn procs_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    out
}

/// Wait (at most `within`) until no process mentions `needle`; those still there.
pub fn wait_gone(needle: &str, within: Duration) -> Vec<String> {
    let until = Instant::now() + within;
    loop {
        let left = procs_mentioning(needle);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the tests run as root (captures and network namespaces need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A tshark capture into a file, running once tshark says so.
pub struct Capture {
    tshark: Child,
    /// The pcapng file it writes.
    pub file: PathBuf,
}

impl Capture {
    /// Start tshark with these arguments (interfaces, filter) writing `file`, and wait (at
    /// most 20 s) until it captures.
    pub fn start(args: &[String], file: &Path) -> Capture {
        use std::io::Read;
        let mut tshark = Command::new("tshark")
            .args(args)
            .args(["-w", file.to_str().unwrap(), "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tshark");
        // tshark says "Capturing on '…'" once the capture runs.
        let mut err = tshark.stderr.take().unwrap();
        let started = Instant::now();
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("Capturing on") {
            let mut b = [0u8; 512];
            let n = err.read(&mut b).unwrap_or(0);
            if n == 0 || started.elapsed() > Duration::from_secs(20) {
                let _ = tshark.kill();
                panic!("tshark did not start capturing: {}", String::from_utf8_lossy(&seen));
            }
            seen.extend_from_slice(&b[..n]);
        }
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        Capture { tshark, file: file.to_path_buf() }
    }

    /// Let the last packets reach the file, then stop tshark (SIGINT: it finishes the file).
    pub fn stop(mut self) -> PathBuf {
        std::thread::sleep(Duration::from_millis(500));
        unsafe { libc::kill(self.tshark.id() as i32, libc::SIGINT) };
        let _ = self.tshark.wait();
        self.file
    }
}
