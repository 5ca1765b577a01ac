//! The raw trace reader (what `sixpac report` and `sixpac show` read back) over arbitrary
//! bytes: no panic, and a file it reads is one it writes again byte for byte.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frames) = sixpac::trace::raw::read(data) {
        let mut out = Vec::new();
        sixpac::trace::raw::write(&frames, &mut out).unwrap();
        let again = sixpac::trace::raw::read(&out).expect("what was written reads back");
        assert_eq!(again.len(), frames.len());
        for (a, b) in frames.iter().zip(&again) {
            assert_eq!((&a.bytes, &a.kind, a.seq, a.conn, a.fault), (&b.bytes, &b.kind, b.seq, b.conn, b.fault));
        }
        // Every frame read can be drawn and written as pcapng.
        let ladder = sixpac::report::ladder::build(&frames, &[], &[]);
        assert_eq!(ladder.arrows.len(), frames.len());
        let _ = sixpac::report::pcapng::render(&frames, 0);
    }
});
