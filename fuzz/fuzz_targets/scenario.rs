//! The scenario parser and the pattern compilers: any text gives a scenario or an error with a
//! place, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sixpac::scenario::{matching, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let profiles = ["prosody+kamailio".to_string(), "ejabberd".to_string()];
    let _ = parse::parse_scenario(std::path::Path::new("fuzz.yaml"), "fuzz", text, &profiles, None);
    // The same text as a pattern on its own, as `receives xmpp` and `receives sip` compile it.
    if let Ok(el) = matching::parse_xml_pattern(text) {
        let _ = matching::lint_xml_pattern(&el);
        let _ = matching::match_xml(&el, &el);
    }
    let _ = matching::lint_sip_pattern(text);
});
