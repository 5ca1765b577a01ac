//! End-to-end: the reports of a real run (Prosody and Kamailio) as users look at them: the HTML
//! page in headless Chromium, the pcapng files in tshark, the text ladder, and `sixpac report`.

mod cli;

use cli::reports::{check_page, check_pcapngs, open_in_chromium, screenshot, sections};
use cli::{root, scratch, servers_ready, sixpac, text};

#[test]
fn the_html_report_highlights_the_failed_step_and_shows_markup_from_the_wire_as_text() {
    let Some(_serial) = servers_ready() else { return };
    let reports = scratch("report");
    let scen = root().join("harness/tests/scenarios/report");
    let out = sixpac(&["run", "--backend", "process", "--scenarios", scen.to_str().unwrap(), "--report-dir", reports.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "wrong-body fails: {}", text(&out));
    let run = reports.join("latest");
    let Some(page) = check_page(&run) else { return };
    screenshot(&run.join("index.html"), "", &reports.join("index.png"));
    screenshot(&run.join("index.html"), "#only=wrong-body.prosody+kamailio", &reports.join("wrong-body.png"));
    let secs = sections(&page.dom);
    let section = |id: &str| secs.iter().find(|(i, _)| i == id).map(|(_, h)| h.clone()).unwrap();

    // The failed step: its row, its rule in the ladder, and the frames it judged.
    let failed = section("wrong-body.prosody+kamailio");
    assert!(failed.contains("<tr class=\"failed-step\"><td>4</td><td>bob receives xmpp</td>"), "{failed}");
    assert!(failed.contains("<g class=\"mark failed\">"), "the failed step's rule");
    let highlighted = failed.matches("in-failed-step").count();
    assert!(highlighted >= 1, "the frames the failed step judged are highlighted");
    assert!(failed.contains("&lt;body&gt;Goodbye&lt;/body&gt;"), "the message says what was wanted");

    // JUnit carries the failing case's ladder, for CI pages.
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    let doc = sixpac::xml::parse(junit.as_bytes(), &sixpac::xml::Scope::new(), false).expect("junit.xml is well-formed");
    let cases: Vec<_> = doc.elements().flat_map(|s| s.elements()).filter(|c| c.name == "testcase").collect();
    let case = |name: &str| cases.iter().find(|c| c.attr("name") == Some(name)).unwrap();
    let out = case("wrong-body").child("system-out").expect("the failing case has its ladder").text();
    assert!(out.contains("step bob: receives xmpp ✕ FAILED") && out.contains("message chat · body"), "{out}");
    assert!(case("xss-probe").child("system-out").is_none(), "a passing case has none");

    // The XSS probe: nothing ran, nothing became markup, every probe is there as text.
    assert!(page.console.iter().all(|l| !l.contains("sixpac-xss")), "a probe ran: {:?}", page.console);
    let title = &page.dom[page.dom.find("<title>").unwrap()..page.dom.find("</title>").unwrap()];
    assert!(title.starts_with("<title>sixpac run ") && !title.contains("pwned"), "{title}");
    assert_eq!(page.dom.matches("<script").count(), 2, "only the page's own scripts");
    assert!(!page.dom.contains("<img") && !page.dom.contains("<svg onload"), "no element from the wire");
    let probe = section("xss-probe.prosody+kamailio");
    assert!(probe.contains("XSS probe &lt;script&gt;document.title='pwned-title'&lt;/script&gt; in the report"), "the title as text");
    assert!(probe.contains("chat bob &lt;script&gt;console.log('sixpac-xss-chat')"), "the step as text");
    // Open the SIP MESSAGE that carries the header probes, by its link.
    let raw = std::fs::read(run.join("traces/xss-probe.prosody+kamailio.raw")).unwrap();
    let frames = sixpac::trace::raw::read(&raw).unwrap();
    let message = frames.iter().find(|f| f.bytes.starts_with(b"MESSAGE ") && f.bytes.windows(12).any(|w| w == b"pwned-subjec")).expect("the probe MESSAGE was recorded");
    let opened = open_in_chromium(&run.join("index.html"), &format!("#f-xss-probe.prosody+kamailio-{}", message.seq)).unwrap();
    assert!(opened.console.iter().all(|l| !l.contains("sixpac-xss")), "{:?}", opened.console);
    let detail = &opened.dom[opened.dom.find("class=\"detail open\"").expect("the frame's detail opened")..];
    for shown in [
        "Subject: \"&gt;&lt;img src=x onerror=\"document.title='pwned-subject'\"&gt;",
        "From: \"&lt;/svg&gt;&lt;script&gt;document.title='pwned-from'&lt;/script&gt;\"",
        "Call-Info: &lt;javascript:document.title='pwned-uri'&gt;;purpose=info",
        "&lt;/script&gt;&lt;script&gt;document.title='pwned-body'&lt;/script&gt;",
    ] {
        assert!(detail.contains(shown), "{shown} not shown as text in {}", &detail[..detail.len().min(3000)]);
    }
    assert!(!opened.dom.contains("<img") && opened.dom.matches("<script").count() == 2);
    // Credentials are masked in the bytes the page shows, as --redact-raw masks them.
    let wrong = std::fs::read(run.join("traces/wrong-body.prosody+kamailio.raw")).unwrap();
    let mut secrets = 0;
    for f in sixpac::trace::raw::read(&wrong).unwrap() {
        for span in sixpac::trace::raw::secret_spans(&f) {
            let secret = String::from_utf8_lossy(&f.bytes[span.clone()]).into_owned();
            assert!(!page.dom.contains(&secret), "{secret} is on the page");
            secrets += 1;
        }
    }
    assert!(secrets >= 4, "the run had Digest and SASL secrets to mask ({secrets})");
    assert!(page.dom.contains("response=\\\"********************************\\\""), "masked byte for byte");

    // `sixpac report` makes the same page and pcapng files from the raw traces.
    let html = std::fs::read(run.join("index.html")).unwrap();
    let pcap = std::fs::read(run.join("traces/wrong-body.prosody+kamailio.pcapng")).unwrap();
    std::fs::remove_file(run.join("index.html")).unwrap();
    std::fs::remove_file(run.join("traces/wrong-body.prosody+kamailio.pcapng")).unwrap();
    let again = sixpac(&["report", run.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(std::fs::read(run.join("index.html")).unwrap() == html, "sixpac report renders the same page");
    assert!(std::fs::read(run.join("traces/wrong-body.prosody+kamailio.pcapng")).unwrap() == pcap, "and the same pcapng");
    let bad = sixpac(&["report", reports.join("nothing-here").to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("summary.json"), "{}", text(&bad));

    let Some((sip, xmpp)) = check_pcapngs(&run) else { return };
    assert!(sip > 10 && xmpp > 50, "{sip} SIP, {xmpp} XMPP packets");
}
