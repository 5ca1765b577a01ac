//! The XMPP stream cutter as a tap runs it (see `frames_are_the_stream`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sixpac_fuzz::frames_are_the_stream(sixpac::wire::Proto::Xmpp, data));
