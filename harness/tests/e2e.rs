//! End-to-end: the `sixpac` binary against real Prosody and Kamailio.
//!
//! These need the servers installed. With `CI=true` a missing server fails the test; elsewhere
//! the test says it is skipping and returns.

mod cli;

use cli::{interrupt, procs_mentioning, root, scratch, servers_ready, sixpac, start_waiting_run, summary, text, wait_gone};
use sixpac::xml;
use std::time::{Duration, Instant};

/// `sixpac run` on the process backend of one folder of harness/tests/scenarios.
fn run_test_scenarios(folder: &str, reports: &std::path::Path) -> std::process::Output {
    let scen = root().join("harness/tests/scenarios").join(folder);
    sixpac(&["run", "--backend", "process", "--scenarios", scen.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()])
}

#[test]
fn default_suite_passes_with_junit_and_traces() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("suite");
    let out = sixpac(&["run", "--backend", "process", "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", cli::run_text(&out, &reports));
    let latest = reports.join("latest");
    let junit = std::fs::read_to_string(latest.join("junit.xml")).unwrap();
    let doc = xml::parse(junit.as_bytes(), &xml::Scope::new(), false).expect("junit.xml is well-formed XML");
    let cases: Vec<_> = doc.elements().flat_map(|s| s.elements()).filter(|c| c.name == "testcase").collect();
    let scenario_count = cli::default_suite_outcomes();
    assert_eq!(cases.len(), scenario_count, "one testcase per scenario x profile");
    assert!(cases.iter().all(|c| c.child("failure").is_none() && c.child("error").is_none()));
    let summary = summary(&reports);
    let t = &summary["totals"];
    assert_eq!(t["pass"].as_u64().unwrap() + t["inconclusive"].as_u64().unwrap(), scenario_count as u64);
    assert_eq!((t["fail"].as_u64(), t["error"].as_u64()), (Some(0), Some(0)));
    // Every requirement the catalog lists has a cell for the profile.
    let reqs = summary["requirements"].as_array().unwrap();
    assert!(reqs.iter().all(|r| r["profiles"]["prosody+kamailio"].is_string()), "{reqs:?}");
    // Inconclusive scenarios did not run (the profile lacks what they need): nothing recorded.
    for r in summary["results"].as_array().unwrap().iter().filter(|r| r["verdict"] != "inconclusive") {
        for k in ["trace", "raw"] {
            let p = latest.join(r[k].as_str().unwrap());
            assert!(std::fs::metadata(&p).map(|m| m.len() > 0).unwrap_or(false), "{} missing", p.display());
        }
    }
    assert!(latest.join("logs/prosody+kamailio/kamailio.log").exists());
    // TLS: the run's CA is kept, and the taps recorded handshakes and the plaintext after them.
    for profile in ["prosody+kamailio", "ejabberd"] {
        let ca = std::fs::read_to_string(latest.join(format!("logs/{profile}/ca.crt"))).unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        let raw = std::fs::read_to_string(latest.join(format!("traces/cusax.protection-mismatch.{profile}.raw"))).unwrap();
        assert!(raw.contains("transport=tls") && raw.contains("kind=tls-handshake"), "{profile}");
        assert!(raw.contains("INVITE sip:erin_") && raw.contains("Via: SIP/2.0/TLS"), "{profile}: SIP over TLS in plaintext");
        assert!(raw.contains("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'"), "{profile}: SASL after STARTTLS in plaintext");
    }
    // The page draws every frame of every scenario and the matrix of summary.json; tshark
    // decodes every SIP and XMPP frame of every pcapng.
    if let Some(page) = cli::reports::check_page(&latest) {
        let ms = page.dom.split("data-render-ms=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("?").to_string();
        eprintln!("index.html: {} bytes, drawn in {ms} ms", std::fs::metadata(latest.join("index.html")).unwrap().len());
        cli::reports::screenshot(&latest.join("index.html"), "", &reports.join("index.png"));
        cli::reports::screenshot(&latest.join("index.html"), "#only=cusax.escalation.prosody+kamailio", &reports.join("escalation.png"));
    }
    if let Some((sip, xmpp)) = cli::reports::check_pcapngs(&latest) {
        eprintln!("tshark decoded {sip} SIP and {xmpp} XMPP packets, one per frame");
    }
    // The text ladder of the escalation: the chat on XMPP, then the call on SIP, then the
    // presence change, in time order, in 80 columns.
    let show = sixpac(&["show", "cusax/escalation", "--run", latest.to_str().unwrap(), "--profile", "prosody+kamailio", "--width", "80"]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    let ladder = String::from_utf8_lossy(&show.stdout).into_owned();
    // Within 80 columns, except a path too long to break.
    assert!(ladder.lines().all(|l| l.chars().count() <= 80 || !l.trim_start_matches("#   ").contains(' ')), "{ladder}");
    let at = |what: &str, from: usize| ladder[from..].find(what).map(|i| i + from).unwrap_or_else(|| panic!("{what} after byte {from} in\n{ladder}"));
    let chat = at("message chat · body", 0);
    let invite = at("INVITE · CSeq", chat);
    let ringing = at("180 Ringing", invite);
    let ok = at("200 OK · CSeq 2 INVITE", ringing);
    let ack = at("ACK · CSeq 2", ok);
    let dnd = at("presence dnd", ack);
    let bye = at("BYE · CSeq", dnd);
    assert!(chat < invite && invite < ringing && ringing < ok && ok < ack && ack < dnd && dnd < bye);
}

#[test]
fn a_password_in_a_failing_pattern_is_in_no_report() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("secret");
    let out = run_test_scenarios("secret", &reports);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let latest = reports.join("latest");
    let summary = summary(&reports);
    let message = summary["results"][0]["message"].as_str().unwrap().to_string();
    assert!(message.contains("<body>{password}</body>"), "{message}");
    // The password itself: the raw trace holds the SASL exchange, which carries it.
    let raw = std::fs::read_to_string(latest.join("traces/password-in-pattern.prosody+kamailio.raw")).unwrap();
    let sasl = raw.split("mechanism=").nth(1).expect("a SASL auth in the raw trace");
    assert!(!sasl.is_empty());
    for (what, body) in [
        ("summary.json", std::fs::read_to_string(latest.join("summary.json")).unwrap()),
        ("junit.xml", std::fs::read_to_string(latest.join("junit.xml")).unwrap()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
    ] {
        // Every generated password is 16 hex digits; none may appear.
        let leaked = body.split(|c: char| !c.is_ascii_hexdigit()).any(|w| w.len() == 16);
        assert!(!leaked, "{what} holds a 16-hex-digit word (a password):\n{body}");
    }
}

#[test]
fn a_long_tmpdir_does_not_stop_kamailio() {
    let Some(_serial) = servers_ready() else { return };
    // 80 characters: a Unix socket under it would pass the 107-byte limit.
    let tmp = scratch(&format!("long-tmpdir-{}", "x".repeat(40)));
    assert!(tmp.as_os_str().len() > 60, "{}", tmp.display());
    let reports = scratch("long-tmpdir-reports");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sixpac"))
        .args(["run", "--backend", "process", "--profile", "prosody+kamailio", "--filter", "sip/register-refresh", "--report-dir", reports.to_str().unwrap()])
        .current_dir(root())
        .env("TMPDIR", &tmp)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_message_that_never_comes_fails_within_its_deadline() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("negative");
    let started = Instant::now();
    let out = run_test_scenarios("negative", &reports);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no matching frame within 2."), "{}", text(&out));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let junit = std::fs::read_to_string(reports.join("latest/junit.xml")).unwrap();
    assert!(junit.contains("<failure message="), "{junit}");
}

#[test]
fn a_changed_expected_trace_fails_with_a_diff_naming_the_frame_and_accept_restores_it() {
    let Some(_serial) = servers_ready() else { return };
    let dir = scratch("mismatch");
    let scen = dir.join("scenarios");
    std::fs::create_dir_all(&scen).unwrap();
    for f in ["sip-message.yaml", "sip-message.prosody+kamailio.trace"] {
        std::fs::copy(root().join("scenarios/basics").join(f), scen.join(f)).unwrap();
    }
    let trace = scen.join("sip-message.prosody+kamailio.trace");
    let original = std::fs::read_to_string(&trace).unwrap();
    assert!(original.contains("    Max-Forwards: 70\n"));
    std::fs::write(&trace, original.replacen("    Max-Forwards: 70\n", "    Max-Forwards: 69\n", 1)).unwrap();
    let args = |extra: &'static str| {
        let mut v = vec![
            "run", "--backend", "process", "--profile", "prosody+kamailio",
            "--scenarios", scen.to_str().unwrap(), "--report-dir", dir.to_str().unwrap(),
        ];
        if !extra.is_empty() {
            v.push(extra);
        }
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| sixpac(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args(""));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("at frame 001 alice -> kamailio"), "{t}");
    assert!(t.contains("-    Max-Forwards: 69") && t.contains("+    Max-Forwards: 70"), "{t}");
    let out = run(args("--accept"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&trace).unwrap(), original);
    let out = run(args(""));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn a_misspelled_step_key_exits_2_with_its_location_before_any_server_starts() {
    let dir = scratch("bad");
    let out = run_test_scenarios("bad", &dir.join("r"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("misspelled.yaml:8:5: unknown step `sennds xmpp`"), "{t}");
    assert!(!t.contains("starting"), "a server was started: {t}");
    assert!(!dir.join("r").exists(), "no report is made for a usage error");
}

#[test]
fn sigint_during_a_run_leaves_no_server_behind() {
    let Some(_serial) = servers_ready() else { return };
    let (mut child, needle) = start_waiting_run("process", &scratch("sigint"));
    assert!(!procs_mentioning(&needle).is_empty(), "servers should be running now");
    assert_eq!(interrupt(&mut child, Duration::from_secs(15)), Some(130));
    let left = procs_mentioning(&needle);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// Start a long wait from `scenarios`, check that a process `running` names is up, `kill -9`
/// sixpac, and check that nothing of the run is left.
fn kill_9_leaves_nothing(scenarios: &str, running: &str) {
    let (mut child, needle) = cli::start_waiting_run_of(scenarios, "process", &scratch(&format!("sigkill-{}", running.len())));
    let up = procs_mentioning(&needle);
    assert!(up.iter().any(|p| p.contains(running)), "{running} should be running now: {up:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let left = wait_gone(&needle, Duration::from_secs(10));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    // The run's temp directory cannot be removed by a killed process; sweep it here.
    for e in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with(&needle) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[test]
fn kill_9_of_sixpac_still_takes_the_servers_down() {
    let Some(_serial) = servers_ready() else { return };
    kill_9_leaves_nothing("harness/tests/scenarios/slow", "kamailio");
}

#[test]
fn kill_9_of_sixpac_takes_ejabberds_erlang_vm_down_too() {
    let Some(_serial) = servers_ready() else { return };
    kill_9_leaves_nothing("harness/tests/scenarios/slow-ejabberd", "beam");
}

#[test]
fn sixpac_clean_stops_a_leftover_server_found_by_the_run_directory_it_holds() {
    // A run directory whose sixpac is gone, and a "server" still holding it.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let dir = std::env::temp_dir().join(format!("sixpac-{dead}-cleantest-p"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    std::fs::write(&log, "").unwrap();
    let mut leftover = std::process::Command::new("tail").arg("-f").arg(&log).spawn().unwrap();
    // And one that only works in it, as the `sleep` of a server's group leader does.
    let mut lingering = std::process::Command::new("sleep").arg("60").current_dir(&dir).spawn().unwrap();
    let out = sixpac(&["clean"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let status = leftover.wait().unwrap();
    assert!(!status.success(), "the leftover was stopped: {status}");
    let status = lingering.wait().unwrap();
    assert!(!status.success(), "the process working in the directory was stopped: {status}");
    assert!(text(&out).contains("leftover server process"), "{}", text(&out));
    assert!(!dir.exists(), "its directory is removed");
}

/// Run a profile's suite, and once its third scenario runs send `signal` to the process group
/// of the server started as `binary`; the exit code, the seconds from the fault to sixpac's
/// exit, and summary.json.
fn fault_mid_suite(name: &str, profile: &str, binary: &str, signal: i32) -> (Option<i32>, f64, serde_json::Value) {
    let reports = scratch(name);
    let (mut child, needle, mut lines) = cli::spawn_reading_stderr(&["run", "--backend", "process", "--profile", profile, "--report-dir", reports.to_str().unwrap()]);
    while let Some(Ok(l)) = lines.next() {
        if l.contains("[3/") {
            break;
        }
    }
    cli::drain(lines);
    // The group leader is the shell that runs the server (see servers::process).
    let leader = procs_mentioning(&needle)
        .into_iter()
        .find(|p| p.contains("sixpac-server") && p.contains(&format!(" {binary} ")))
        .and_then(|p| p.split(':').next().and_then(|n| n.parse::<i32>().ok()))
        .expect("the server's group leader");
    unsafe { libc::kill(-leader, signal) };
    let faulted = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(faulted.elapsed() < Duration::from_secs(90), "sixpac did not end after the fault");
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = faulted.elapsed().as_secs_f64();
    let left = wait_gone(&needle, Duration::from_secs(10));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let summary = summary(&reports);
    (status.code(), took, summary)
}


#[test]
fn a_hung_or_killed_server_is_an_error_naming_it_and_ends_the_run_within_one_deadline() {
    let Some(_serial) = servers_ready() else { return };
    for (profile, server, binary, signal, says) in [
        ("prosody+kamailio", "prosody", "prosody", 19, "prosody stopped answering"),
        ("prosody+kamailio", "kamailio", "kamailio", 19, "kamailio stopped answering"),
        ("prosody+kamailio", "prosody", "prosody", 9, "prosody exited"),
        ("prosody+kamailio", "kamailio", "kamailio", 9, "kamailio exited"),
        ("ejabberd", "ejabberd", "ejabberdctl", 19, "ejabberd stopped answering"),
        ("ejabberd", "ejabberd", "ejabberdctl", 9, "ejabberd exited"),
    ] {
        let (code, took, summary) = fault_mid_suite(&format!("fault-{server}-{signal}"), profile, binary, signal);
        assert_eq!(code, Some(3), "{server}: {summary}");
        let results = summary["results"].as_array().unwrap();
        let errors: Vec<&str> = results.iter().filter(|r| r["verdict"] == "error").map(|r| r["message"].as_str().unwrap()).collect();
        assert!(errors.iter().any(|m| m.contains(says)), "{server}: {errors:?}");
        assert!(results.iter().all(|r| r["verdict"] != "fail"), "{server}: a server's fault is blamed on the client: {summary}");
        assert!(errors.iter().filter(|m| m.starts_with("not run: ")).count() > 10, "{server}: the rest end at once: {errors:?}");
        // One step deadline (10 s) and the liveness probe (2 s), with the teardown.
        assert!(took < 25.0, "{server}: took {took:.1} s after the fault");
        eprintln!("{server} (signal {signal}): sixpac ended {took:.1} s after the fault");
    }
}

#[test]
fn lost_copies_of_a_request_are_retransmitted_until_the_transaction_completes() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("loss");
    let out = run_test_scenarios("loss", &reports);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The raw trace holds all three copies of the first MESSAGE, one branch, before any answer:
    // two the tap dropped, the third Timer E's second retransmission (at 1.5 s).
    let raw = std::fs::read_to_string(reports.join("latest/traces/message-loss.prosody+kamailio.raw")).unwrap();
    let first_branch = raw
        .split("#frame ")
        .find(|f| f.contains("MESSAGE sip:") && f.contains("dir=to-server"))
        .and_then(|f| f.split("branch=").nth(1))
        .map(|b| b.split(['\r', '\n', ';']).next().unwrap_or("").to_string())
        .expect("a MESSAGE was sent");
    let copies: Vec<&str> = raw.split("#frame ").filter(|f| f.contains("MESSAGE sip:") && f.contains(&format!("branch={first_branch}\r"))).collect();
    assert_eq!(copies.len(), 3, "{raw}");
    // The two the tap dropped say so, in the raw trace and in the normalized one.
    let marked = copies.iter().filter(|f| f.lines().next().is_some_and(|h| h.contains(" fault=dropped "))).count();
    assert_eq!(marked, 2, "{raw}");
    let trace = std::fs::read_to_string(reports.join("latest/traces/message-loss.prosody+kamailio.trace")).unwrap();
    assert_eq!(trace.matches("alice -> kamailio (dropped by the tap)").count(), 2, "{trace}");
}

#[test]
fn injected_faults_are_marked_in_the_traces_and_the_flows_survive_all_but_the_reset() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("faults");
    let out = run_test_scenarios("faults", &reports);
    // The reset scenario fails on purpose (its login cannot finish); every other one passes.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let latest = reports.join("latest");
    let summary = summary(&reports);
    let results = summary["results"].as_array().unwrap();
    assert_eq!(results.len(), 8, "five faults, three of them on both profiles");
    for r in results {
        let (scenario, profile, verdict) = (r["scenario"].as_str().unwrap(), r["profile"].as_str().unwrap(), r["verdict"].as_str().unwrap());
        let want = if scenario == "reset" { "fail" } else { "pass" };
        assert_eq!(verdict, want, "{scenario} on {profile}: {}", r["message"]);
        let raw = std::fs::read_to_string(latest.join(format!("traces/{scenario}.{profile}.raw"))).unwrap();
        let mark = match scenario {
            "delay" => " fault=delayed-1200ms ",
            "duplicate" => " fault=duplicated ",
            "reorder" => " fault=reordered ",
            "stall" => " fault=stalled-1500ms ",
            _ => " fault=reset ",
        };
        let marked: Vec<&str> = raw.lines().filter(|l| l.starts_with("#frame ") && l.contains(mark)).collect();
        assert_eq!(marked.len(), 1, "{scenario} on {profile}: one frame marked{mark}");
        if scenario == "stall" {
            // Nothing reached the client during the stall.
            let at = |l: &str| l.split(" t=").nth(1).and_then(|t| t.split(' ').next()).and_then(|t| t.parse::<f64>().ok()).unwrap();
            let conn = marked[0].split(" conn=").nth(1).unwrap().split(' ').next().unwrap().to_string();
            let stalled_at = at(marked[0]);
            let next_down = raw
                .lines()
                .filter(|l| l.starts_with("#frame ") && l.contains(&format!(" conn={conn} ")) && l.contains("dir=to-client"))
                .map(at)
                .find(|t| *t > stalled_at)
                .expect("the server's answer came after the stall");
            assert!(next_down - stalled_at >= 1.4, "{scenario} on {profile}: answered {:.3} s after the stall began", next_down - stalled_at);
        }
    }
}

#[test]
fn the_log_shows_servers_steps_and_tap_connections_on_stderr_with_v_and_always_in_sixpac_log() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("log");
    let report_dir = reports.to_str().unwrap();
    let quiet = sixpac(&["run", "--backend", "process", "--profile", "prosody+kamailio", "--filter", "basics/sip-message", "--report-dir", report_dir]);
    assert_eq!(quiet.status.code(), Some(0), "{}", text(&quiet));
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains(" DEBUG "), "no -v, no debug on stderr");
    let log = std::fs::read_to_string(reports.join("latest/sixpac.log")).unwrap();
    for wanted in ["server started server=prosody", "server answers on every port server=kamailio", "step 4/6: alice receives sip", "waiting for a frame", "xmpp/tcp connection", "new SIP/UDP client", "client closed"] {
        assert!(log.contains(wanted), "sixpac.log lacks {wanted:?}:\n{log}");
    }
    let loud = sixpac(&["-vv", "run", "--backend", "process", "--profile", "prosody+kamailio", "--filter", "basics/sip-message", "--report-dir", report_dir]);
    let stderr = String::from_utf8_lossy(&loud.stderr);
    assert!(stderr.contains(" DEBUG sixpac::tap: xmpp/tcp connection") && stderr.contains(" DEBUG sixpac::runner: matched"), "{stderr}");
    assert_eq!(stderr.matches("step 4/6: alice receives sip").count(), 1, "a progress line once, not again as a log event");
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_sixpac")).args(["list"]).env("RUST_LOG", "sixpac=loud").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RUST_LOG=\"sixpac=loud\" is not a filter"));
}

/// Copy a directory tree (fixtures, scenarios) for a test to change.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn digest_with_sha256_where_kamailio_offers_it() {
    let Some(_serial) = servers_ready() else { return };
    let dir = scratch("sha256");
    let (fixtures, scen) = (dir.join("fixtures"), dir.join("scenarios"));
    copy_tree(&root().join("fixtures"), &fixtures);
    std::fs::create_dir_all(&scen).unwrap();
    std::fs::copy(root().join("scenarios/sip/message-both-ways.yaml"), scen.join("m.yaml")).unwrap();
    let cfg = fixtures.join("servers/kamailio/kamailio.cfg");
    let config = std::fs::read_to_string(&cfg).unwrap();
    let anchor = "modparam(\"auth_db\", \"calculate_ha1\", yes)\n";
    assert!(config.contains(anchor));
    std::fs::write(&cfg, config.replace(anchor, &format!("{anchor}modparam(\"auth\", \"algorithm\", \"SHA-256\")\n"))).unwrap();
    // --accept: the steps must pass (REGISTER, MESSAGE both ways, all challenged); the trace
    // is new for this variant, so it is written rather than compared.
    let out = sixpac(&[
        "run", "--backend", "process", "--accept",
        "--fixtures", fixtures.to_str().unwrap(),
        "--scenarios", scen.to_str().unwrap(),
        "--report-dir", dir.join("r").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let trace = std::fs::read_to_string(scen.join("m.prosody+kamailio.trace")).unwrap();
    assert!(trace.contains("algorithm=SHA-256"), "{trace}");
    assert!(trace.contains("Authorization: Digest username=\"alice\"") && trace.contains("response=\"{redacted}\", algorithm=SHA-256"), "{trace}");
}

#[test]
fn a_client_that_chats_over_sip_fails_the_cusax_3_scenario() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("misbehave");
    let args = ["run", "--backend", "process", "--profile", "prosody+kamailio", "--filter", "cusax/channel-split", "--report-dir"];
    let good = sixpac(&[&args[..], &[reports.to_str().unwrap()]].concat());
    assert_eq!(good.status.code(), Some(0), "the conforming client passes: {}", text(&good));
    let bad = sixpac(&[&args[..], &[reports.to_str().unwrap(), "--misbehave", "chat-over-sip"]].concat());
    let t = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{t}");
    assert!(t.contains("`bob receives xmpp`") && t.contains("no matching frame") && t.contains("<body>Shall we talk?</body>"), "{t}");
    let summary = summary(&reports);
    let cusax3 = summary["requirements"].as_array().unwrap().iter().find(|r| r["id"] == "CUSAX-3").unwrap().clone();
    assert_eq!(cusax3["profiles"]["prosody+kamailio"], "fail", "{cusax3}");
    // The chat went out as a SIP MESSAGE: it is in the raw trace.
    let raw = std::fs::read_to_string(reports.join("latest/traces/cusax.channel-split.prosody+kamailio.raw")).unwrap();
    assert!(raw.contains("MESSAGE sip:") && raw.contains("Shall we talk?"), "{raw}");
}

#[test]
fn with_neither_docker_nor_the_binaries_auto_names_what_to_install() {
    // No PATH: no docker client and no prosody (kamailio and ejabberdctl sit in /usr/sbin,
    // which sixpac also searches, so they may still be found).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sixpac"))
        .args(["run", "--profile", "prosody+kamailio", "--report-dir"])
        .arg(scratch("nobackend"))
        .current_dir(root())
        .env_clear()
        .env("PATH", "/nonexistent")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(3), "{t}");
    assert!(t.contains("no Docker engine answers") && t.contains("apt-get install prosody"), "{t}");
}

/// The Python with Debian's slixmpp (a pyenv shim may shadow `python3` on PATH).
const PY: &str = "/usr/bin/python3";

#[test]
fn serve_records_a_third_party_client_over_starttls() {
    use std::io::{BufRead, BufReader};
    let Some(_serial) = servers_ready() else { return };
    let has_slixmpp = std::process::Command::new(PY).args(["-c", "import slixmpp"]).output().is_ok_and(|o| o.status.success());
    if !has_slixmpp {
        assert!(std::env::var("CI").ok().as_deref() != Some("true"), "CI=true but python3-slixmpp is missing; .ci/run must install it");
        eprintln!("SKIP: python3-slixmpp missing");
        return;
    }
    let reports = scratch("serve");
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_sixpac"))
        .args(["serve", "--backend", "process", "--for", "10s", "--report-dir", reports.to_str().unwrap()])
        .current_dir(root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sixpac serve");
    // The listing: `xmpp/tcp TAP -> prosody SERVER (...)`, `account USER PASSWORD`, `ca FILE`.
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let (mut xmpp, mut accounts, mut ca) = (None, Vec::new(), None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["xmpp/tcp", tap, ..] => xmpp = Some(tap.to_string()),
            ["account", user, password] => accounts.push((user.to_string(), password.to_string())),
            ["ca", file] => {
                ca = Some(file.to_string());
                break;
            }
            _ => {}
        }
    }
    let (xmpp, ca) = (xmpp.expect("an XMPP tap is listed"), ca.expect("the CA is listed"));
    assert!(accounts.len() == 4, "{accounts:?}");
    let (host, port) = xmpp.rsplit_once(':').unwrap();
    let (user, password) = &accounts[0];
    let peer = root().join("harness/tests/peers/slixmpp_chat.py");
    let chat = std::process::Command::new(PY)
        .args([peer.to_str().unwrap(), host, port, &format!("{user}@example.test"), password, &ca])
        .args([&format!("{}@example.test", accounts[1].0), "hello from slixmpp"])
        .output()
        .expect("run slixmpp");
    assert!(chat.status.success(), "slixmpp: {}", text(&chat));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(serve.wait().unwrap().code(), Some(0), "{rest:?}");
    let latest = reports.join("latest");
    let raw = std::fs::read_to_string(latest.join("traces/serve.prosody+kamailio.raw")).unwrap();
    // slixmpp negotiated STARTTLS with the tap, which recorded the plaintext after it.
    assert!(raw.contains("<starttls") && raw.contains("kind=tls-handshake"), "{raw}");
    assert!(raw.contains("hello from slixmpp"), "the chat message is in the clear in the raw trace");
    let trace = std::fs::read_to_string(latest.join("traces/serve.prosody+kamailio.trace")).unwrap();
    assert!(trace.contains("(tls client-tap TLSv1_3") && !trace.contains(password.as_str()), "{trace}");
    assert!(latest.join("logs/prosody+kamailio/prosody.log").exists());
    // The session's page and pcapng: every frame drawn, every XMPP frame decoded.
    if let Some(page) = cli::reports::check_page(&latest) {
        assert!(page.dom.contains("hello from slixmpp") || page.dom.contains("message chat · body"), "the chat is on the page");
    }
    cli::reports::check_pcapngs(&latest);
}

/// Start `sixpac serve` by `cmd` (stdout piped) and read the taps it prints, up to its CA
/// line; the rest of its output is drained. The child, the XMPP tap, the SIP/UDP tap.
fn serve_taps(mut cmd: std::process::Command) -> (std::process::Child, std::net::SocketAddr, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut serve = cmd
        .current_dir(root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sixpac serve");
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let (mut xmpp, mut sip) = (None::<std::net::SocketAddr>, None::<std::net::SocketAddr>);
    for line in lines.by_ref() {
        let line = line.unwrap();
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["xmpp/tcp", tap, ..] => xmpp = tap.parse().ok(),
            ["sip/udp", tap, ..] => sip = tap.parse().ok(),
            ["ca", _] => break,
            _ => {}
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (serve, xmpp.expect("an XMPP tap"), sip.expect("a SIP/UDP tap"))
}

/// A valid client is served on the XMPP tap: a stream open gets the server's features.
fn xmpp_tap_answers(tap: std::net::SocketAddr, after: &str) {
    use std::io::{Read, Write};
    let mut x = std::net::TcpStream::connect(tap).unwrap();
    x.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    x.write_all(b"<?xml version='1.0'?><stream:stream to='example.test' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("stream:features") {
        let n = x.read(&mut buf).unwrap_or_else(|e| panic!("the XMPP tap answers after {after}: {e}"));
        assert!(n > 0, "the XMPP tap closed after {after}: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn taps_outlive_running_out_of_file_descriptors_and_the_traces_are_still_written() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("fd-exhaustion");
    // sixpac and its servers get 256 descriptors, soft and hard.
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "ulimit -n 256 && exec \"$0\" serve --backend process --profile prosody+kamailio --for 60s --report-dir \"$1\""])
        .arg(env!("CARGO_BIN_EXE_sixpac"))
        .arg(&reports);
    let (mut serve, xmpp, sip) = serve_taps(cmd);
    // More UDP sources and TCP connections than sixpac has descriptors.
    let sources: Vec<std::net::UdpSocket> = (0..400).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    for (i, s) in sources.iter().enumerate() {
        let _ = s.send_to(format!("OPTIONS sip:example.test SIP/2.0\r\nCSeq: {i} OPTIONS\r\nContent-Length: 0\r\n\r\n").as_bytes(), sip);
    }
    // Past sixpac's limit its accept queue fills and connects stall. How many get in depends on
    // the listen backlog (net.core.somaxconn differs between machines), so the proof that the
    // flood reached the limit is sixpac's descriptor count; a connect that stalls before it (a
    // busy machine) is tried again, for 10 s at most.
    let fds_of = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let flood_until = Instant::now() + Duration::from_secs(10);
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    while held.len() < 300 && Instant::now() < flood_until {
        match std::net::TcpStream::connect_timeout(&xmpp, Duration::from_millis(300)) {
            Ok(c) => held.push(c),
            Err(_) if fds_of(serve.id()) >= 250 => break,
            Err(_) => {}
        }
    }
    let fds = fds_of(serve.id());
    assert!(fds >= 250, "sixpac holds {fds} of its 256 descriptors ({} connections held): the flood did not reach the limit", held.len());
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    drop(sources);
    std::thread::sleep(Duration::from_millis(1500));
    // A valid client is still served on both taps.
    xmpp_tap_answers(xmpp, "the flood");
    let mut buf = [0u8; 4096];
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.send_to(b"OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bKfd\r\nFrom: <sip:probe@example.test>;tag=1\r\nTo: <sip:example.test>\r\nCall-ID: fd-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", sip).unwrap();
    let n = u.recv(&mut buf).expect("the SIP tap answers after the flood");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    unsafe { libc::kill(serve.id() as i32, libc::SIGINT) };
    let status = serve.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let raw = std::fs::read(reports.join("latest/traces/serve.prosody+kamailio.raw")).unwrap();
    let frames = String::from_utf8_lossy(&raw).matches("#frame ").count();
    assert!(frames > 400, "the traces were written, with the flood in them: {frames} frames");
}

/// The resident and peak memory of a process, in KiB (VmRSS, VmHWM).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn serve_records_a_burst_whole_and_stays_bounded_under_20000_udp_sources_and_idle_connections() {
    let Some(_serial) = servers_ready() else { return };
    // Each relayed TCP connection costs sixpac two descriptors, and the machines this runs on
    // have a hard RLIMIT_NOFILE of 20,000 that cannot be raised (no CAP_SYS_RESOURCE): so as
    // many idle connections as fit beside the 4,096 UDP upstream sockets, not 10,000.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a struct we own. This test holds up to 15,000 sockets itself.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let idle_tcp = (((limit.rlim_max.min(65536) as usize).saturating_sub(4096 + 1000)) / 2).min(10_000);
    assert!(idle_tcp >= 5_000, "RLIMIT_NOFILE hard limit {} is too low for this test", limit.rlim_max);
    let reports = scratch("serve-load");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sixpac"));
    cmd.args(["serve", "--backend", "process", "--profile", "prosody+kamailio", "--for", "120s", "--report-dir"]).arg(&reports);
    let (mut serve, xmpp, sip) = serve_taps(cmd);
    let pid = serve.id();
    let (idle_rss, _) = memory_kib(pid);

    // 1. A burst of 10,000 datagrams from one source, as fast as the socket takes them.
    const BURST: usize = 10_000;
    let burster = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..BURST {
        let _ = burster.send_to(format!("OPTIONS sip:example.test SIP/2.0\r\nX-Burst: {i}\r\nContent-Length: 0\r\n\r\n").as_bytes(), sip);
    }
    std::thread::sleep(Duration::from_millis(1500));

    // 2. 20,000 UDP sources, one datagram each (4 batches of 5,000, each from an address of
    // its own, so the sources stay distinct within this test's descriptors), then idle TCP
    // connections.
    for batch in 0..4u8 {
        let from = std::net::Ipv4Addr::new(127, 0, 1, 10 + batch);
        let sources: Vec<std::net::UdpSocket> = (0..5_000).map(|_| std::net::UdpSocket::bind((from, 0)).unwrap()).collect();
        for (i, s) in sources.iter().enumerate() {
            let _ = s.send_to(format!("OPTIONS sip:example.test SIP/2.0\r\nX-Source: {batch}-{i}\r\nContent-Length: 0\r\n\r\n").as_bytes(), sip);
            if i % 500 == 499 {
                // Paced (2,500 new sources a second): this measures memory, not the kernel's
                // buffer (the burst above does that).
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let held: Vec<std::net::TcpStream> = (0..idle_tcp).filter_map(|_| std::net::TcpStream::connect_timeout(&xmpp, Duration::from_secs(2)).ok()).collect();
    std::thread::sleep(Duration::from_secs(2));
    let (loaded_rss, peak) = memory_kib(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    eprintln!(
        "serve RSS: {} MiB idle, {} MiB under load (peak {} MiB), {fds} descriptors; {} TCP connections held",
        idle_rss / 1024,
        loaded_rss / 1024,
        peak / 1024,
        held.len()
    );
    assert_eq!(held.len(), idle_tcp, "every connection was accepted");
    // The UDP clients are capped (4,096 upstream sockets); what grows with load is the
    // connections and the recorded frames.
    assert!(peak < 256 * 1024, "serve's peak RSS {} MiB is not bounded", peak / 1024);

    // 3. The taps still serve a valid client.
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    xmpp_tap_answers(xmpp, "the load");
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    assert_eq!(serve.wait().unwrap().code(), Some(0));

    // 4. The trace was written, and every datagram of the burst is in it or counted as lost.
    let raw = std::fs::read(reports.join("latest/traces/serve.prosody+kamailio.raw")).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    let recorded = raw.matches("\r\nX-Burst: ").count();
    // Loss frames count datagrams of every source; only the burst ran while the sources were
    // quiet, so the loss before the sources began is the burst's.
    let lost = |text: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("#frame "))
            .filter_map(|h| h.split(" kind=lost:").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse::<u64>().ok()))
            .sum()
    };
    let sources_start = raw.find("\r\nX-Source: ").unwrap_or(raw.len());
    let (lost_in_burst, lost_sources) = (lost(&raw[..sources_start]), lost(&raw[sources_start..]));
    let sources_recorded = raw.matches("\r\nX-Source: ").count();
    eprintln!("burst: {recorded} of {BURST} recorded, {lost_in_burst} counted as lost; sources: {sources_recorded} of 20000 recorded, {lost_sources} counted as lost");
    assert_eq!(recorded as u64 + lost_in_burst, BURST as u64, "every datagram of the burst is recorded or counted as lost");
    assert_eq!(sources_recorded as u64 + lost_sources, 20_000, "every source's datagram is recorded or counted as lost");
}

#[test]
fn arrival_order_strict_matching_and_captures_decide_verdicts_on_both_servers() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("language");
    let out = run_test_scenarios("language", &reports);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let summary = summary(&reports);
    for profile in ["prosody+kamailio", "ejabberd"] {
        let verdict = |id: &str| cli::result_of(&summary, id, profile)["verdict"].as_str().unwrap().to_string();
        let message = |id: &str| cli::result_of(&summary, id, profile)["message"].as_str().unwrap().to_string();
        // Two replies in the other order: any matching frame passes, the next frame fails.
        assert_eq!(verdict("order-any"), "pass", "{}", message("order-any"));
        assert_eq!(verdict("order-next"), "pass", "{}", message("order-next"));
        assert_eq!(verdict("order-next-wrong"), "fail");
        let m = message("order-next-wrong");
        assert!(m.contains("step 5") && m.contains("the next frame did not match") && m.contains("<body>one</body>"), "{m}");
        // A strict pattern: the version answer passes it, the chat with a chat state beside its body fails.
        assert_eq!(verdict("strict"), "fail");
        let m = message("strict");
        assert!(m.contains("step 6") && m.contains("the strict pattern has children <body>, the frame ") && m.contains("<active>"), "{m}");
        // Captured values carry over (Call-ID, a From tag, an iq id); a capture that finds nothing fails its step.
        assert_eq!(verdict("capture"), "pass", "{}", message("capture"));
        let m = message("capture-missing");
        assert!(m.contains("step 3") && m.contains("capture q: `iq/query@node` found nothing"), "{m}");
    }
}

#[test]
fn server_features_pass_where_the_profile_serves_them_and_are_inconclusive_where_it_lacks_them() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("features");
    let out = run_test_scenarios("features", &reports);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = summary(&reports);
    for feature in ["ping", "version", "last", "offline", "blocking", "muc", "carbons", "mam"] {
        for profile in ["prosody+kamailio", "ejabberd"] {
            let r = cli::result_of(&summary, feature, profile);
            assert_eq!(r["verdict"], "pass", "{feature} on {profile}: {}", r["message"]);
        }
    }
    let lacking = cli::result_of(&summary, "lacking", "ejabberd");
    assert_eq!(lacking["verdict"], "inconclusive");
    assert!(lacking["message"].as_str().unwrap().contains("profile ejabberd lacks `sip-presence`"), "{lacking}");
    assert_eq!(lacking["frames"], 0, "a scenario a profile cannot serve does not run");
}

#[test]
fn a_need_no_profile_serves_is_refused_where_it_is_written() {
    let dir = scratch("needs");
    std::fs::write(
        dir.join("typo.yaml"),
        "title: T\nneeds: [ofline]\nprofiles: [prosody+kamailio]\nactors:\n  alice: xmpp\nsteps:\n  - alice: connect\n",
    )
    .unwrap();
    let out = sixpac(&["check", "--scenarios", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("typo.yaml:2:1: unknown feature `ofline` in needs") && t.contains("offline"), "{t}");
}

#[test]
fn the_reference_client_can_leave_presence_roster_and_answers_to_the_scenario() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("client-switches");
    let out = run_test_scenarios("client", &reports);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let latest = reports.join("latest");
    for profile in ["prosody+kamailio", "ejabberd"] {
        let raw = |s: &str| std::fs::read_to_string(latest.join(format!("traces/{s}.{profile}.raw"))).unwrap();
        let quiet = raw("quiet-connect");
        assert!(!quiet.contains("jabber:iq:roster") && quiet.matches("<presence/>").count() == 1, "{profile}: one presence, sent by the scenario");
        assert!(raw("priority").contains("<presence><priority>-1</priority></presence>"), "{profile}");
        let hand = raw("answers-off");
        assert!(hand.contains("answered by hand") && !hand.contains("sixpac reference client"), "{profile}: only the scenario answered");
    }
}

#[test]
fn two_resources_of_one_account_are_told_apart_by_their_bound_jids() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("resources");
    let out = run_test_scenarios("resources", &reports);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let latest = reports.join("latest");
    for profile in ["prosody+kamailio", "ejabberd"] {
        let trace = std::fs::read_to_string(latest.join(format!("traces/full-and-bare.{profile}.trace"))).unwrap();
        // Each resource is a leg of its own actor, though both log in as juliet.
        assert!(trace.contains("== juliet xmpp/tcp") && trace.contains("== juliet_phone xmpp/tcp"), "{profile}:\n{trace}");
        let phone = trace.split("== juliet_phone xmpp/tcp").nth(1).unwrap().split("\n== ").next().unwrap();
        assert!(phone.contains("<body>to the phone</body>") && !phone.contains("<body>to juliet</body>"), "{profile}: {phone}");
    }
}

#[test]
fn scansion_scripts_import_whole_and_pass_on_both_servers_and_what_does_not_convert_is_named() {
    let Some(_serial) = servers_ready() else { return };
    let dir = scratch("scansion");
    let out_dir = dir.join("imported");
    let scripts: Vec<String> = std::fs::read_dir(root().join("harness/tests/scansion"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".scs"))
        .collect();
    assert!(scripts.len() >= 8, "{scripts:?}");
    let mut args = vec!["import", "scansion", "--out", out_dir.to_str().unwrap()];
    args.extend(scripts.iter().map(String::as_str));
    let imported = sixpac(&args);
    assert_eq!(imported.status.code(), Some(0), "{}", text(&imported));
    assert!(text(&imported).contains(&format!("{} converted whole, 0 with parts not converted", scripts.len())), "{}", text(&imported));
    let reports = dir.join("reports");
    let run = sixpac(&["run", "--backend", "process", "--scenarios", out_dir.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let s = summary(&reports);
    assert_eq!(s["totals"]["pass"].as_u64(), Some(2 * scripts.len() as u64), "every script on both profiles: {}", s["totals"]);
    // A statement the importer does not know: named by file and line, the scenario marked.
    let bad = dir.join("bad.scs");
    std::fs::write(&bad, "# Bad\n[Client] Romeo\n\tjid: romeo@localhost\n\tpassword: p\n---\nRomeo connects\nRomeo dances\n").unwrap();
    let partial = sixpac(&["import", "scansion", "--out", out_dir.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(partial.status.code(), Some(1), "{}", text(&partial));
    assert!(text(&partial).contains(&format!("{}:7: `Romeo dances`: the statement `dances`", bad.display())), "{}", text(&partial));
    let only_bad = dir.join("only-bad");
    std::fs::create_dir_all(&only_bad).unwrap();
    std::fs::copy(out_dir.join("bad.yaml"), only_bad.join("bad.yaml")).unwrap();
    let r = sixpac(&["run", "--backend", "process", "--profile", "prosody+kamailio", "--scenarios", only_bad.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "inconclusive does not fail the run: {}", text(&r));
    let result = &summary(&reports)["results"][0];
    assert_eq!(result["verdict"], "inconclusive");
    assert!(result["message"].as_str().unwrap().contains("bad.scs:7"), "{result}");
}

#[test]
fn three_shards_of_the_default_suite_merge_into_the_unsharded_report() {
    let Some(_serial) = servers_ready() else { return };
    let dir = scratch("shards");
    let run = |args: &[&str], reports: &std::path::Path| {
        let mut a = vec!["run", "--backend", "process", "--report-dir", reports.to_str().unwrap()];
        a.extend_from_slice(args);
        let out = sixpac(&a);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        reports.join("latest").canonicalize().unwrap()
    };
    let whole = run(&[], &dir.join("whole"));
    let shards: Vec<std::path::PathBuf> = (1..=3).map(|i| run(&["--shard", &format!("{i}/3")], &dir.join(format!("s{i}")))).collect();
    let sizes: Vec<usize> = shards.iter().map(|s| summary(s.parent().unwrap())["results"].as_array().unwrap().len()).collect();
    assert!(sizes.iter().all(|&n| n > 0) && sizes.iter().sum::<usize>() == cli::default_suite_outcomes(), "{sizes:?}");
    let merged = dir.join("merged");
    let mut args = vec!["merge", "--out", merged.to_str().unwrap()];
    args.extend(shards.iter().map(|s| s.to_str().unwrap()));
    let out = sixpac(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let read = |d: &std::path::Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap() };
    let (w, m) = (read(&whole), read(&merged));
    // Equal apart from times (and what is drawn from them).
    let timeless = |r: &serde_json::Value| {
        let mut r = r.clone();
        for k in ["duration_ms", "started_unix_ms", "ended_unix_ms", "clock_unix_ms", "steps", "cast", "tshark", "normalized_seqs", "frames"] {
            r.as_object_mut().unwrap().remove(k);
        }
        r
    };
    let (wr, mr): (Vec<_>, Vec<_>) = (w["results"].as_array().unwrap().iter().map(timeless).collect(), m["results"].as_array().unwrap().iter().map(timeless).collect());
    assert_eq!(wr, mr, "results, in the suite's order");
    for k in ["totals", "requirements", "exit_code", "sixpac_version"] {
        assert_eq!(w[k], m[k], "{k}");
    }
    assert_eq!(w["suite"]["id"], m["suite"]["id"]);
    let junit = std::fs::read_to_string(merged.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), cli::default_suite_outcomes());
    assert!(merged.join("index.html").exists() && merged.join("traces/cusax.escalation.ejabberd.raw").exists());
    // Refused: a run of another suite, a run of another version, a shard given twice.
    let other = run(&["--filter", "basics"], &dir.join("other"));
    let refused = sixpac(&["merge", "--out", dir.join("x").to_str().unwrap(), shards[0].to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).contains("runs of different suites"), "{}", text(&refused));
    let old = dir.join("old");
    std::fs::create_dir_all(&old).unwrap();
    let mut s = read(&shards[1]);
    s["sixpac_version"] = "0.0.1".into();
    std::fs::write(old.join("summary.json"), s.to_string()).unwrap();
    let refused = sixpac(&["merge", "--out", dir.join("y").to_str().unwrap(), shards[0].to_str().unwrap(), old.to_str().unwrap()]);
    assert!(text(&refused).contains("of sixpac 0.0.1") && text(&refused).contains("different versions"), "{}", text(&refused));
    let twice = sixpac(&["merge", "--out", dir.join("z").to_str().unwrap(), shards[0].to_str().unwrap(), shards[0].to_str().unwrap()]);
    assert!(text(&twice).contains("ran twice"), "{}", text(&twice));
}

#[test]
fn load_runs_every_operation_against_real_servers_and_reports_each_second() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("load");
    let r = reports.to_str().unwrap();
    let out = sixpac(&["load", "--backend", "process", "--users", "6", "--rate", "40", "--duration", "3s", "--report-dir", r]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let s = summary(&reports);
    assert_eq!(s["kind"], "load");
    assert_eq!((s["joined"].as_u64(), s["issued"].as_u64()), (Some(6), Some(120)));
    let ops = s["operations"].as_array().unwrap();
    let names: Vec<&str> = ops.iter().map(|o| o["op"].as_str().unwrap()).collect();
    assert_eq!(names, ["join", "register", "message", "chat", "call", "leave"]);
    for o in ops {
        assert_eq!(o["attempts"], o["successes"], "{o}");
        assert!(o["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{o}");
        assert!(!o["series"].as_array().unwrap().is_empty(), "{o}");
    }
    // The steady phase's operations are paced: about 10 of each per second.
    let chat = &ops[3]["series"];
    let busiest = chat.as_array().unwrap().iter().map(|s| s["attempts"].as_u64().unwrap()).max().unwrap();
    assert!((9..=12).contains(&busiest), "{chat}");
    // Each second told on stderr; the frames went through the taps and are in the raw trace.
    assert!(text(&out).matches("[load]").count() >= 4, "{}", text(&out));
    let raw = std::fs::read_to_string(reports.join("latest/traces/load.prosody+kamailio.raw")).unwrap();
    assert!(raw.contains("MESSAGE sip:user0") && raw.contains("INVITE sip:user0") && raw.contains("<body>load "), "the raw trace");
    let page = std::fs::read_to_string(reports.join("latest/index.html")).unwrap();
    assert!(page.matches("<svg").count() >= 12 && page.contains("every goal met"), "index.html");
    // `sixpac report` makes the same page again from summary.json; `show` and `merge` say
    // what a load run is instead of treating it as an empty suite.
    let latest = reports.join("latest");
    std::fs::remove_file(latest.join("index.html")).unwrap();
    let out = sixpac(&["report", latest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(latest.join("index.html")).unwrap(), page);
    let out = sixpac(&["show", "chat", "--run", latest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is a `sixpac load` run"), "{}", text(&out));
    // Straight at the servers: nothing recorded; an impossible goal exits 1 and says which.
    let out = sixpac(&["load", "--backend", "process", "--users", "2", "--rate", "10", "--duration", "1s", "--mix", "register", "--no-record", "--max-p99", "0.001", "--report-dir", r]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("missed: register: p99"), "{}", text(&out));
    let s = summary(&reports);
    assert_eq!((s["through"].as_str(), s["frames_recorded"].as_u64()), (Some("servers"), Some(0)));
}

#[test]
fn load_bounds_are_refused_before_any_server_starts() {
    for (args, says) in [
        (&["--users", "5000"][..], "--users takes 1 to 2000"),
        (&["--rate", "0"][..], "--rate takes 1 to 20000"),
        (&["--duration", "11m"][..], "--duration takes"),
        (&["--mix", "register,dance"][..], "`dance` is not an operation"),
        (&["--rate", "10000", "--duration", "60s"][..], "add --no-record"),
    ] {
        let mut argv = vec!["load", "--backend", "process"];
        argv.extend_from_slice(args);
        let out = sixpac(&argv);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
        assert!(!text(&out).contains("starting"), "{args:?}: {}", text(&out));
    }
}

#[test]
fn sigint_while_load_users_join_leaves_and_reports_and_no_server_is_left() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("load-sigint");
    let r = reports.to_str().unwrap();
    let (mut child, needle, mut lines) = cli::spawn_reading_stderr(&["load", "--backend", "process", "--users", "40", "--ramp", "20", "--duration", "20s", "--report-dir", r]);
    // Interrupted in the middle of the ramp: some users joined, some still joining.
    let joining = lines.by_ref().map_while(Result::ok).find(|l| l.contains("joining  joined"));
    assert!(joining.is_some(), "no ramp line");
    cli::drain(lines);
    assert!(!procs_mentioning(&needle).is_empty(), "servers should be running now");
    assert_eq!(interrupt(&mut child, Duration::from_secs(20)), Some(130));
    let left = wait_gone(&needle, Duration::from_secs(5));
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let s = summary(&reports);
    assert_eq!(s["interrupted"], true);
    let ops = s["operations"].as_array().unwrap();
    let join = &ops[0];
    assert_eq!(join["op"], "join");
    let joined = join["successes"].as_u64().unwrap();
    assert!((1..40).contains(&joined), "{join}");
    // Every user that joined was told to leave, once.
    let leave = ops.iter().find(|o| o["op"] == "leave").unwrap();
    assert_eq!(leave["attempts"].as_u64(), Some(joined), "{leave}");
    assert_eq!(leave["successes"].as_u64(), Some(joined), "{leave}");
}
