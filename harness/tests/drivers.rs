//! End-to-end: actors played by driver processes (docs/driver-protocol.md) against real servers.

mod cli;

use cli::{procs_mentioning, scratch, servers_ready, sixpac, summary, text};
use std::time::{Duration, Instant};

#[test]
fn the_default_suite_passes_with_every_actor_played_through_the_reference_adapter() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("reference-adapter");
    let out = sixpac(&["run", "--backend", "process", "--client", "all=adapters/reference/client.yaml", "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", cli::run_text(&out, &reports));
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

/// The interfaces other than loopback, for a capture that must stay empty.
fn outside_interfaces() -> Vec<String> {
    let out = std::process::Command::new("ip").args(["-o", "link"]).output().expect("ip -o link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n != "lo")
        .collect()
}

/// What a client looking things up on its own would send: DNS, mDNS, SSDP (UPnP), NAT-PMP,
/// STUN/TURN, SIP and XMPP on their well-known ports. Only these are captured off loopback, so
/// that the machine's own unrelated traffic cannot make the test flaky.
const LOOKUPS: &str = "port 53 or port 5353 or port 1900 or port 5351 or port 3478 or port 5349 or port 5060 or port 5061 or port 5222 or port 5269";

/// tshark on every interface but loopback, for the duration of `f`; the packets it saw.
fn captured_outside<T>(dir: &std::path::Path, f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let mut args: Vec<String> = Vec::new();
    for i in outside_interfaces() {
        args.extend(["-i".to_string(), i]);
    }
    args.extend(["-f".into(), LOOKUPS.into()]);
    let capture = cli::Capture::start(&args, &dir.join("outside.pcapng"));
    let out = f();
    let pcap = capture.stop();
    let read = std::process::Command::new("tshark").args(["-r", pcap.to_str().unwrap()]).output().expect("tshark -r");
    (out, String::from_utf8_lossy(&read.stdout).lines().map(str::to_string).collect())
}

/// The third-party clients and tshark are there, and we are root; outside CI their absence
/// skips.
fn adapters_ready() -> bool {
    let bins = ["baresip", "mcabber", "tshark"];
    let ok = bins.iter().all(|b| sixpac::servers::process::binary_exists(b)) && cli::is_root();
    assert!(ok || std::env::var("CI").ok().as_deref() != Some("true"), "CI=true but one of {bins:?} or root is missing; .ci/run installs them");
    if !ok {
        eprintln!("SKIP: one of {bins:?} or root missing");
    }
    ok
}

/// Run `scenario` on the default profile with `bindings`; the exit code and summary.json.
fn run_with(dir: &std::path::Path, name: &str, scenario: &str, bindings: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let reports = dir.join(name);
    let mut args = vec!["run", "--backend", "process", "--profile", "prosody+kamailio", "--filter", scenario, "--report-dir", reports.to_str().unwrap()];
    for b in bindings {
        args.extend(["--client", b]);
    }
    let out = sixpac(&args);
    (out.status.code(), summary(&reports), text(&out))
}

#[test]
fn third_party_clients_play_their_scenarios_and_send_nothing_off_loopback() {
    let Some(_serial) = servers_ready() else { return };
    if !adapters_ready() {
        return;
    }
    let dir = scratch("adapters");
    let ((), outside) = captured_outside(&dir, || {
        // baresip as caller and as callee: its ACK and BYE follow the Record-Route (the tap).
        for actor in ["alice", "bob"] {
            let (code, s, out) = run_with(&dir, &format!("baresip-{actor}"), "sip/call-answered", &[&format!("{actor}=adapters/baresip/client.yaml")]);
            assert_eq!(code, Some(0), "{actor}=baresip: {out}");
            let r = &s["results"][0];
            assert_eq!(r["verdict"], "pass", "{r}");
            assert!(r["clients"][actor].as_str().unwrap().starts_with("baresip "), "{r}");
            let raw = std::fs::read(dir.join(format!("baresip-{actor}/latest/traces/sip.call-answered.prosody+kamailio.raw"))).unwrap();
            let raw = String::from_utf8_lossy(&raw);
            assert!(raw.contains("User-Agent: baresip"), "baresip's own messages are recorded");
            for method in ["ACK", "BYE"] {
                assert!(raw.lines().any(|l| l.starts_with(&format!("{method} sip:"))), "{actor}=baresip: no {method} in the raw trace");
            }
        }
        // mcabber, an XMPP-only client, on both sides of a subscription.
        for actor in ["alice", "bob"] {
            let (code, s, out) = run_with(&dir, &format!("mcabber-{actor}"), "xmpp/subscriptions", &[&format!("{actor}=adapters/mcabber/client.yaml")]);
            assert_eq!(code, Some(0), "{actor}=mcabber: {out}");
            assert_eq!(s["results"][0]["verdict"], "pass", "{}", s["results"][0]);
        }
        // baresip + mcabber as one dual-stack client: it passes what it can do, and fails
        // RFC 7081 where a pair of unrelated clients falls short, with the wire as evidence.
        let composite = |id: &str| {
            let (code, s, out) = run_with(&dir, &format!("composite-{}", id.replace('/', "-")), id, &["alice=adapters/baresip+mcabber/client.yaml"]);
            (code, s["results"][0].clone(), out)
        };
        let (code, r, out) = composite("cusax/sip-only-peer");
        assert_eq!((code, r["verdict"].as_str()), (Some(0), Some("pass")), "{out}");
        let (code, r, out) = composite("cusax/vcard-call");
        assert_eq!((code, r["verdict"].as_str()), (Some(1), Some("fail")), "{out}");
        assert!(r["message"].as_str().unwrap().contains("no Call-Info header"), "{r}");
        let (code, r, out) = composite("cusax/advertising");
        assert_eq!((code, r["verdict"].as_str()), (Some(0), Some("inconclusive")), "{out}");
        assert!(r["message"].as_str().unwrap().contains("cannot `send-raw`"), "{r}");
    });
    assert!(outside.is_empty(), "packets off loopback during the adapter runs:\n{}", outside.join("\n"));
}

#[test]
fn finch_a_dual_stack_client_logs_in_on_both_legs_and_messages_over_simple_in_its_own_network() {
    let Some(_serial) = servers_ready() else { return };
    let ok = ["finch", "dbus-daemon", "openssl", "/usr/bin/python3"].iter().all(|b| sixpac::servers::process::binary_exists(b))
        && std::process::Command::new("/usr/bin/python3").args(["-c", "import dbus"]).status().is_ok_and(|s| s.success())
        && cli::is_root();
    assert!(ok || std::env::var("CI").ok().as_deref() != Some("true"), "CI=true but finch, dbus-daemon, python3-dbus, openssl or root is missing");
    if !ok {
        eprintln!("SKIP: finch, dbus-daemon, python3-dbus, openssl or root missing");
        return;
    }
    let dir = scratch("finch");
    // SIMPLE binds 0.0.0.0:5060: only in a network namespace of sixpac's own (--isolate).
    for scenario in ["basics/dual-login", "sip/message-both-ways"] {
        let reports = dir.join(scenario.replace('/', "-"));
        let out = sixpac(&[
            "run", "--backend", "process", "--isolate", "--profile", "prosody+kamailio", "--filter", scenario,
            "--client", "alice=adapters/finch/client.yaml", "--report-dir", reports.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{scenario}: {}", text(&out));
        let s = summary(&reports);
        assert_eq!(s["results"][0]["verdict"], "pass", "{}", s["results"][0]);
        assert!(s["results"][0]["clients"]["alice"].as_str().unwrap().starts_with("finch 2."), "{}", s["results"][0]);
    }
    let raw = std::fs::read(dir.join("sip-message-both-ways/latest/traces/sip.message-both-ways.prosody+kamailio.raw")).unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("User-Agent: Purple/"), "finch's SIMPLE messages are in the trace");
    let left = procs_mentioning("finch -d");
    assert!(left.is_empty(), "left running: {left:?}");
}

#[test]
fn what_a_client_tells_its_user_is_judged_on_its_told_user_events() {
    let Some(_serial) = servers_ready() else { return };
    let dir = scratch("told");
    let run = |name: &str, file: &str| {
        let reports = dir.join(name);
        let out = sixpac(&[
            "run", "--backend", "process", "--profile", "prosody+kamailio", "--scenarios", "harness/tests/scenarios/told",
            "--client", &format!("alice={file}"), "--report-dir", reports.to_str().unwrap(),
        ]);
        let s = summary(&reports);
        let verdict = |id: &str| s["results"].as_array().unwrap().iter().find(|r| r["scenario"] == id).cloned().unwrap();
        (out.status.code(), verdict("warned"), verdict("silent"))
    };
    // It reports told-user: the warning it gave passes `expect`, and fails `expect no`.
    let (code, warned, silent) = run("report", "harness/tests/drivers/tells-report.yaml");
    assert_eq!(code, Some(1));
    assert_eq!(warned["verdict"], "pass", "{warned}");
    assert_eq!(silent["verdict"], "fail", "{silent}");
    assert!(silent["message"].as_str().unwrap().contains("told its user: XMPP is encrypted, SIP is not"), "{silent}");
    // It does not say it reports them: neither can be decided.
    let (code, warned, silent) = run("mute", "harness/tests/drivers/tells-mute.yaml");
    assert_eq!(code, Some(0));
    for r in [warned, silent] {
        assert_eq!(r["verdict"], "inconclusive", "{r}");
    }
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
}
