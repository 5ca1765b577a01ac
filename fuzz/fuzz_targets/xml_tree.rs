//! The XML tree builder: no panic, a depth limit instead of a stack overflow, and what it
//! builds serializes to XML it can read again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sixpac::xml;

fuzz_target!(|data: &[u8]| {
    let scope = xml::client_stream_scope();
    let Ok(el) = xml::parse(data, &scope, false) else { return };
    let again = el.to_xml();
    let reread = xml::parse(again.as_bytes(), &scope, false);
    assert!(reread.is_ok(), "serialized tree does not parse again: {again:?}: {reread:?}");
    let _ = (el.text(), el.start_tag(), el.local_name());
});
