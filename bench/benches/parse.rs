//! Parse + normalize of three typical messages (REGISTER, INVITE with SDP, NOTIFY with PIDF);
//! the same parse by the SIP crates a Rust user would otherwise pick (rsip, ezk-sip-types), on
//! the same bytes, in the same run; for the XML body the project reads with quick-xml,
//! quick-xml alone; and XMPP stream framing of 10,000 stanzas against quick-xml's reader alone.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sixpac::sip::SipMessage;
use sixpac::trace::frame::{Direction, Frame, Proto, Transport};
use sixpac::trace::normalize::{normalize, AddrName, NormalizeContext};
use sixpac::wire::Carrier;
use std::hint::black_box;
use std::time::Duration;

const REGISTER: &str = "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;rport;branch=z9hG4bK8f2a9c41d7e0b356\r\nMax-Forwards: 70\r\nFrom: <sip:alice_1a2b3c4d@example.test>;tag=4f1e2d3c4b\r\nTo: <sip:alice_1a2b3c4d@example.test>\r\nCall-ID: 9a8b7c6d5e4f3a2b1c0d\r\nCSeq: 2 REGISTER\r\nAuthorization: Digest username=\"alice_1a2b3c4d\", realm=\"example.test\", nonce=\"Z0f1e2d3c4b5a69788f\", uri=\"sip:example.test\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, cnonce=\"abcdef0123456789\", qop=auth, nc=00000001\r\nContact: <sip:alice_1a2b3c4d@127.0.0.1:40001>\r\nExpires: 3600\r\nUser-Agent: sixpac/0.1.0\r\nContent-Length: 0\r\n\r\n";

const SDP: &str = "v=0\r\no=- 1234567890 1 IN IP4 127.0.0.1\r\ns=sixpac\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\nm=video 40004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=sendrecv\r\n";

const PIDF: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"sip:bob_5e6f7a8b@example.test\"><tuple id=\"t1\"><status><basic>open</basic></status><contact>sip:bob_5e6f7a8b@127.0.0.1:40003</contact><note>Available</note></tuple><dm:person id=\"p1\"><rpid:activities><rpid:unknown/></rpid:activities></dm:person></presence>";

fn invite() -> String {
    format!("INVITE sip:bob_5e6f7a8b@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;rport;branch=z9hG4bK77aa88bb99cc00dd\r\nMax-Forwards: 70\r\nFrom: <sip:alice_1a2b3c4d@example.test>;tag=1122334455\r\nTo: <sip:bob_5e6f7a8b@example.test>\r\nCall-ID: 0f1e2d3c4b5a69788796\r\nCSeq: 1 INVITE\r\nContact: <sip:alice_1a2b3c4d@127.0.0.1:40001>\r\nUser-Agent: sixpac/0.1.0\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}", SDP.len())
}

fn notify() -> String {
    format!("NOTIFY sip:alice_1a2b3c4d@127.0.0.1:40009 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcd10.3fd2a1b0c9e8f7a6.0\r\nTo: <sip:alice_1a2b3c4d@example.test>;tag=aa11bb22cc\r\nFrom: <sip:bob_5e6f7a8b@example.test>;tag=dd33ee44ff\r\nCSeq: 2 NOTIFY\r\nCall-ID: 5566778899aabbccddee\r\nMax-Forwards: 70\r\nEvent: presence\r\nContact: <sip:127.0.0.1:5060>\r\nSubscription-State: active;expires=3600\r\nContent-Type: application/pidf+xml\r\nContent-Length: {}\r\n\r\n{PIDF}", PIDF.len())
}

fn frame(bytes: &[u8]) -> Frame {
    Frame {
        seq: 1,
        at: Duration::ZERO,
        server: "kamailio".into(),
        proto: Proto::Sip,
        transport: Transport::Udp,
        conn: 1,
        client: "127.0.0.1:40001".parse().unwrap(),
        tap: "127.0.0.1:5060".parse().unwrap(),
        upstream: Some("127.0.0.1:40100".parse().unwrap()),
        dir: Direction::ToServer,
        kind: sixpac::trace::frame::FrameKind::of_sip(bytes),
        bytes: bytes.to_vec(),
        fault: None,
    }
}

fn context() -> NormalizeContext {
    NormalizeContext {
        title: "bench".into(),
        actors: vec![("alice".into(), vec![("127.0.0.1:40001".parse().unwrap(), Proto::Sip)])],
        addr_names: vec![AddrName { addr: "127.0.0.1:5060".parse().unwrap(), proto: Proto::Sip, carrier: Carrier::Datagram, name: "kamailio".into() }],
        literals: vec![("alice_1a2b3c4d".into(), "alice".into()), ("bob_5e6f7a8b".into(), "bob".into())],
        caps_node: None,
    }
}

fn bench(c: &mut Criterion) {
    let messages = [("register", REGISTER.to_string()), ("invite_sdp", invite()), ("notify_pidf", notify())];
    let ctx = context();
    let mut g = c.benchmark_group("sixpac");
    g.throughput(Throughput::Elements(1));
    for (name, text) in &messages {
        let bytes = text.as_bytes();
        g.bench_function(format!("parse/{name}"), |b| b.iter(|| SipMessage::parse(black_box(bytes)).unwrap()));
        let frames = [frame(bytes)];
        g.bench_function(format!("parse+normalize/{name}"), |b| b.iter(|| normalize(black_box(&frames), &ctx)));
    }
    g.finish();

    // The same messages in a trace of 100 transactions, each with its own branch, tags and
    // Call-ID (so every volatile value is a new symbol, as in a real trace), per message: what
    // a scenario's trace costs, without the set-up of a trace counted 100 times.
    let mut t = c.benchmark_group("sixpac_trace_of_100");
    t.throughput(Throughput::Elements(100));
    for (name, text) in &messages {
        let frames: Vec<Frame> = (0..100u64).map(|i| {
            let varied = text.replace("z9hG4bK", &format!("z9hG4bK{i:03}")).replace("tag=", &format!("tag={i:03}")).replace("Call-ID: ", &format!("Call-ID: {i:03}"));
            Frame { seq: i + 1, ..frame(varied.as_bytes()) }
        }).collect();
        t.bench_function(format!("parse+normalize/{name}"), |b| b.iter(|| normalize(black_box(&frames), &ctx)));
    }
    t.finish();

    // The same bytes through the other crates: each parses the start line and cuts the
    // headers into a list, keeping values as text (typed on access), as sixpac does.
    let mut p = c.benchmark_group("sip_parse");
    p.throughput(Throughput::Elements(1));
    for (name, text) in &messages {
        let bytes = text.as_bytes();
        p.bench_function(format!("sixpac/{name}"), |b| b.iter(|| SipMessage::parse(black_box(bytes)).unwrap()));
        p.bench_function(format!("rsip/{name}"), |b| b.iter(|| rsip::SipMessage::try_from(black_box(bytes)).unwrap()));
        p.bench_function(format!("ezk-sip-types/{name}"), |b| b.iter(|| ezk_parse(black_box(bytes))));
    }
    p.finish();

    // An XMPP stream of 10,000 stanzas, cut into frames by sixpac's framer (what every tap
    // does), against quick-xml's reader alone walking the same bytes.
    let stream = xmpp_stream(10_000);
    let mut f = c.benchmark_group("xmpp_framing");
    f.throughput(Throughput::Bytes(stream.len() as u64));
    f.bench_function("sixpac::xmpp::framing", |b| {
        b.iter(|| {
            let mut framer = sixpac::xmpp::framing::XmppFramer::new();
            framer.push(black_box(&stream));
            let mut n = 0usize;
            while framer.next_frame().is_some() {
                n += 1;
            }
            assert_eq!(n, 10_002);
            n
        })
    });
    f.bench_function("quick-xml reader alone", |b| {
        b.iter(|| quick_xml_events(black_box(&stream[..])))
    });
    f.finish();

    // The PIDF body: sixpac's element tree (on quick-xml) against quick-xml's reader alone.
    let mut x = c.benchmark_group("pidf_body");
    x.throughput(Throughput::Elements(1));
    let body = PIDF.split_once("?>").unwrap().1.trim().as_bytes();
    x.bench_function("sixpac::xml::parse", |b| {
        b.iter(|| sixpac::xml::parse(black_box(body), &sixpac::xml::Scope::new(), false).unwrap())
    });
    x.bench_function("quick-xml reader alone", |b| {
        b.iter(|| quick_xml_events(black_box(body)))
    });
    x.finish();
}

/// quick-xml's reader alone over `bytes`: how many events.
fn quick_xml_events(bytes: &[u8]) -> usize {
    let mut r = quick_xml::Reader::from_reader(bytes);
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        match r.read_event_into(&mut buf).unwrap() {
            quick_xml::events::Event::Eof => break,
            _ => n += 1,
        }
        buf.clear();
    }
    n
}

/// A whole message through ezk-sip-types, as its own transport layer does it: the start line,
/// then every header line into `Headers`, then the body.
fn ezk_parse(bytes: &[u8]) -> (ezk_sip_types::msg::MessageLine, ezk_sip_types::Headers, bytes::Bytes) {
    use ezk_sip_types::msg::{Line, MessageLine, PullParser};
    use ezk_sip_types::parse::Parse;
    let src = bytes::Bytes::copy_from_slice(bytes);
    let mut lines = PullParser::new(&src, 0);
    let first = std::str::from_utf8(lines.next().unwrap().unwrap()).unwrap();
    let (_, start) = MessageLine::parse(&src)(first).unwrap();
    let mut headers = ezk_sip_types::Headers::new();
    for line in lines.by_ref() {
        let (_, l) = Line::parse(&src, std::str::from_utf8(line.unwrap()).unwrap()).unwrap();
        headers.insert(l.name, l.value);
    }
    let body = src.slice(lines.head_end()..);
    (start, headers, body)
}

/// A client stream: the stream header, `n` chat messages, the close.
fn xmpp_stream(n: usize) -> Vec<u8> {
    let mut s = String::from("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.test' version='1.0'>");
    for i in 0..n {
        s.push_str(&format!(
            "<message from='alice_1a2b3c4d@example.test/r1' to='bob_5e6f7a8b@example.test' type='chat' id='m{i}'><body>message number {i} &amp; more</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ));
    }
    s.push_str("</stream:stream>");
    s.into_bytes()
}

criterion_group!(benches, bench);
criterion_main!(benches);
