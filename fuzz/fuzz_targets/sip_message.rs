//! The SIP message parser and the RFC 3261 grammar checks: no panic on any bytes, and a parsed
//! message keeps its bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sixpac::sip::{validate, SipMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = SipMessage::parse(data) else { return };
    assert_eq!(m.raw(), data, "the parsed message is the bytes it came from");
    let _ = validate::problems(&m);
    for h in m.header_lines() {
        let _ = (m.name_of(h), m.value_of(h));
    }
    let _ = (m.cseq(), m.top_via(), m.method(), m.status(), m.body(), m.trailing());
    for v in m.headers("Contact") {
        let _ = sixpac::sip::message::split_list(&v);
        let _ = sixpac::sip::message::header_param(&v, "expires");
        let _ = sixpac::sip::message::addr_uri(&v);
    }
});
