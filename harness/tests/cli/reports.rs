//! Looking at a run's reports the way users do: index.html in headless Chromium, the pcapng
//! files in tshark, `sixpac show` in a terminal.

use super::{scratch, text};
use std::path::Path;
use std::process::Command;

/// The program, or None outside CI when it is missing (with CI=true a missing one fails).
fn tool(name: &str) -> Option<String> {
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().map(|o| o.status.success()).unwrap_or(false);
    if found {
        return Some(name.to_string());
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {name} is missing; .ci/run must install it (scripts/install-servers)");
    }
    eprintln!("SKIP: {name} is missing");
    None
}

/// What headless Chromium made of a page: the DOM after its scripts ran, and its console.
pub struct Page {
    pub dom: String,
    pub console: Vec<String>,
}

/// Open `file` (with `#fragment`, if any) in headless Chromium and dump the DOM once loaded.
pub fn open_in_chromium(file: &Path, fragment: &str) -> Option<Page> {
    let chromium = tool("chromium")?;
    let profile = scratch("chromium-profile");
    let url = format!("file://{}{fragment}", file.canonicalize().unwrap().display());
    let out = Command::new("timeout")
        .args(["60", &chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", text(&out));
    let console = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    Some(Page { dom: String::from_utf8_lossy(&out.stdout).into_owned(), console })
}

/// A screenshot of `file` (with `#fragment`, e.g. `#only=<result>`) at `into`, for the test's
/// artifacts.
pub fn screenshot(file: &Path, fragment: &str, into: &Path) {
    let Some(chromium) = tool("chromium") else { return };
    let profile = scratch("chromium-shot");
    let out = Command::new("timeout")
        .args(["60", &chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,2000"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", into.display()))
        .arg(format!("file://{}{fragment}", file.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    assert!(out.status.success() && into.exists(), "chromium screenshot: {}", text(&out));
}

/// The HTML of each result's section in a dumped DOM, by its id (`s-<file base>`).
pub fn sections(dom: &str) -> Vec<(String, String)> {
    dom.split("<section class=\"result\" id=\"s-")
        .skip(1)
        .map(|s| {
            let id = s[..s.find('"').unwrap()].to_string();
            (id, s[..s.find("</section>").unwrap_or(s.len())].to_string())
        })
        .collect()
}

/// Check, for every result of `run` (a run directory), that the page draws one arrow per
/// frame and that its matrix cells are summary.json's. Returns the page.
pub fn check_page(run: &Path) -> Option<Page> {
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let page = open_in_chromium(&run.join("index.html"), "")?;
    assert!(page.dom.contains("data-render-ms="), "the page's script ran to its end");
    let secs = sections(&page.dom);
    let results = summary["results"].as_array().unwrap();
    assert_eq!(secs.len(), results.len(), "a section per result");
    for r in results {
        let base = format!("{}.{}", r["scenario"].as_str().unwrap().replace('/', "."), r["profile"].as_str().unwrap());
        let html = &secs.iter().find(|(id, _)| *id == base).unwrap_or_else(|| panic!("no section for {base}")).1;
        let arrows = html.matches("<g class=\"arrow ").count();
        assert_eq!(arrows as u64, r["frames"].as_u64().unwrap(), "{base}: one arrow per frame");
    }
    let mut cells = 0;
    for req in summary["requirements"].as_array().unwrap() {
        for (col, verdict) in req["profiles"].as_object().unwrap() {
            let cell = format!("data-req=\"{}\" data-col=\"{col}\" data-verdict=\"{}\"", req["id"].as_str().unwrap(), verdict.as_str().unwrap());
            assert!(page.dom.contains(&cell), "matrix cell {cell} missing");
            cells += 1;
        }
    }
    assert_eq!(page.dom.matches("<td class=\"cell ").count(), cells, "no cell summary.json does not have");
    Some(page)
}

/// For every result of `run`, tshark (with the decode-as options summary.json gives) decodes
/// as SIP and as XMPP exactly as many packets as the raw trace has SIP and XMPP frames, and
/// flags nothing in the TCP streams. Returns (SIP, XMPP) packets over the whole run.
pub fn check_pcapngs(run: &Path) -> Option<(usize, usize)> {
    tool("tshark")?;
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let (mut sip_all, mut xmpp_all) = (0, 0);
    for r in summary["results"].as_array().unwrap().iter().filter(|r| r["frames"].as_u64() > Some(0)) {
        let raw = std::fs::read(run.join(r["raw"].as_str().unwrap())).unwrap();
        let frames = sixpac::trace::raw::read(&raw).unwrap();
        let want_sip = frames.iter().filter(|f| f.kind == sixpac::trace::frame::FrameKind::Sip).count();
        let want_xmpp = frames
            .iter()
            .filter(|f| matches!(f.kind, sixpac::trace::frame::FrameKind::XmppHeader | sixpac::trace::frame::FrameKind::XmppElement | sixpac::trace::frame::FrameKind::XmppClose))
            .count();
        let cmd = r["tshark"].as_str().unwrap();
        let args: Vec<&str> = cmd.split(' ').skip(1).collect();
        let tshark = |extra: &[&str]| {
            let out = Command::new("tshark").args(&args).args(extra).current_dir(run).output().unwrap();
            assert!(out.status.success(), "{cmd}: {}", text(&out));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let protocols = tshark(&["-T", "fields", "-e", "frame.protocols"]);
        let sip = protocols.lines().filter(|l| l.split(':').any(|p| p == "sip")).count();
        let xmpp = protocols.lines().filter(|l| l.split(':').any(|p| p == "xmpp")).count();
        assert_eq!((sip, xmpp), (want_sip, want_xmpp), "{cmd}: SIP and XMPP packets against frames");
        let flagged = tshark(&["-Y", "tcp.analysis.flags", "-T", "fields", "-e", "frame.number"]);
        assert!(flagged.trim().is_empty(), "{cmd}: TCP analysis flags packets {flagged}");
        sip_all += sip;
        xmpp_all += xmpp;
    }
    Some((sip_all, xmpp_all))
}
