//! End-to-end: no packet between a client and a server's own port goes around the taps.
//!
//! The default suite runs while tshark captures loopback (as root). Within each profile's
//! scenarios, every packet to or from one of the servers' own sockets (summary.json's
//! `listens`) must come from or go to a tap's upstream socket (the raw traces' `up=`): any
//! other peer reached the server directly, and its bytes are in no trace.

mod cli;

use cli::{scratch, sixpac, summary, text};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Command;

/// The capture needs root and tshark. Outside CI their absence skips the test; with CI=true it
/// fails it (.ci/run installs tshark and runs as root).
fn capture_possible() -> bool {
    let root_user = cli::is_root();
    let tshark = sixpac::servers::process::binary_exists("tshark");
    let servers = ["prosody", "kamailio", "ejabberdctl"].iter().all(|b| sixpac::servers::process::binary_exists(b));
    if root_user && tshark && servers {
        return true;
    }
    let why = format!("root: {root_user}, tshark: {tshark}, servers: {servers}");
    assert!(std::env::var("CI").ok().as_deref() != Some("true"), "CI=true but the loopback capture cannot run ({why}); .ci/run must install tshark and run as root");
    eprintln!("SKIP: loopback capture not possible ({why})");
    false
}


/// A packet's transport and both ends.
#[derive(Debug)]
struct Packet {
    at_ms: u128,
    udp: bool,
    src: SocketAddr,
    dst: SocketAddr,
}

fn read_capture(pcap: &std::path::Path) -> Vec<Packet> {
    let out = Command::new("tshark")
        .args(["-r", pcap.to_str().unwrap(), "-T", "fields", "-E", "separator=,"])
        .args(["-e", "frame.time_epoch", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "udp.srcport", "-e", "udp.dstport"])
        .output()
        .expect("tshark -r");
    assert!(out.status.success(), "tshark -r: {}", String::from_utf8_lossy(&out.stderr));
    let mut packets = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split(',').collect();
        // ICMP quoting a UDP header has two ip.src values; such lines are not payload.
        if f.len() != 7 || f[1].is_empty() || f[1].contains(';') {
            continue;
        }
        let (udp, sp, dp) = if !f[3].is_empty() { (false, f[3], f[4]) } else { (true, f[5], f[6]) };
        let (Ok(src), Ok(dst)) = (format!("{}:{sp}", f[1]).parse(), format!("{}:{dp}", f[2]).parse()) else { continue };
        let at_ms = (f[0].parse::<f64>().unwrap_or(0.0) * 1000.0) as u128;
        packets.push(Packet { at_ms, udp, src, dst });
    }
    packets
}

/// Every tap upstream socket in a run's raw traces, with whether it is UDP.
fn upstreams(traces: &std::path::Path) -> HashSet<(bool, SocketAddr)> {
    let mut out = HashSet::new();
    for e in std::fs::read_dir(traces).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "raw")) {
        let bytes = std::fs::read(e.path()).unwrap();
        for line in bytes.split(|b| *b == b'\n').filter(|l| l.starts_with(b"#frame ")) {
            let line = String::from_utf8_lossy(line);
            let field = |k: &str| line.split(' ').find_map(|w| w.strip_prefix(k)).map(str::to_string);
            if let (Some(t), Some(up)) = (field("transport="), field("up=").and_then(|u| u.parse().ok())) {
                out.insert((t == "udp", up));
            }
        }
    }
    out
}

#[test]
fn no_packet_between_a_client_and_a_server_port_bypasses_the_taps() {
    if !capture_possible() {
        return;
    }
    let _serial = cli::serial();
    let dir = scratch("bypass");
    let pcap = dir.join("lo.pcapng");
    let capture = cli::Capture::start(&["-i".into(), "lo".into(), "-f".into(), "tcp or udp".into()], &pcap);
    let reports = dir.join("reports");
    let out = sixpac(&["run", "--backend", "process", "--report-dir", reports.to_str().unwrap()]);
    capture.stop();

    let latest = reports.join("latest");
    let summary = summary(&reports);
    let ups = upstreams(&latest.join("traces"));
    let packets = read_capture(&pcap);
    // A TCP connection, or a UDP exchange between two sockets, counts from its first packet:
    // the version probe's connection closes as the first scenario starts, and the readiness
    // OPTIONS can be answered in the millisecond the first scenario is stamped with (seen in
    // CI); their last packets are no client's.
    let mut opened: HashMap<(bool, SocketAddr, SocketAddr), u128> = HashMap::new();
    for p in &packets {
        opened.entry((p.udp, p.src.min(p.dst), p.src.max(p.dst))).or_insert(p.at_ms);
    }
    let mut checked = 0;
    let mut bypass = Vec::new();
    for profile in ["prosody+kamailio", "ejabberd"] {
        let mut own: HashMap<(bool, SocketAddr), String> = HashMap::new();
        for s in summary["servers"].as_array().unwrap().iter().filter(|s| s["profile"] == profile) {
            for l in s["listens"].as_array().unwrap() {
                let addr: SocketAddr = l["addr"].as_str().unwrap().parse().unwrap();
                own.insert((l["transport"] == "udp", addr), s["name"].as_str().unwrap().to_string());
            }
        }
        assert!(!own.is_empty(), "summary.json lists no sockets for {profile}");
        let results: Vec<&serde_json::Value> = summary["results"].as_array().unwrap().iter().filter(|r| r["profile"] == profile).collect();
        let from = results.iter().map(|r| r["started_unix_ms"].as_u64().unwrap() as u128).min().unwrap();
        let to = results.iter().map(|r| r["ended_unix_ms"].as_u64().unwrap() as u128).max().unwrap();
        let in_window = |p: &&Packet| {
            let began = opened[&(p.udp, p.src.min(p.dst), p.src.max(p.dst))];
            began >= from && p.at_ms <= to
        };
        for p in packets.iter().filter(in_window) {
            for (server_end, other) in [(p.dst, p.src), (p.src, p.dst)] {
                let Some(server) = own.get(&(p.udp, server_end)) else { continue };
                checked += 1;
                if !ups.contains(&(p.udp, other)) {
                    bypass.push(format!("{profile}: {} {other} <-> {server} {server_end}", if p.udp { "udp" } else { "tcp" }));
                }
            }
        }
    }
    eprintln!("{} packets captured; {checked} to or from a server's own socket; {} around the taps", packets.len(), bypass.len());
    assert!(checked > 1000, "too few packets at the servers' sockets to prove anything: {checked}");
    assert!(bypass.is_empty(), "{} packets went around the taps, e.g.:\n{}", bypass.len(), bypass.iter().take(10).cloned().collect::<Vec<_>>().join("\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // What used to go around them: the 200s to NOTIFYs and the terminated NOTIFY.
    let trace = std::fs::read_to_string(latest.join("traces/sip.presence-subscribe.prosody+kamailio.trace")).unwrap();
    assert!(trace.contains("Subscription-State: terminated"), "{trace}");
    let frames: Vec<&str> = trace.split("\n0").collect();
    let notifies = frames.iter().filter(|f| f.contains("    NOTIFY sip:")).count();
    let answered = frames.iter().filter(|f| f.contains("    SIP/2.0 200 OK") && f.lines().any(|l| l.trim_start().starts_with("CSeq:") && l.ends_with(" NOTIFY"))).count();
    assert!(notifies >= 3 && answered >= notifies, "{notifies} NOTIFYs, {answered} answers to them:\n{trace}");
}

