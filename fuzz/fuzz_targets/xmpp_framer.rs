//! The Xmpp stream cutter as a tap runs it: bytes in chunks of any size, frames out. No
//! panic, and the frames hold every byte in order (bytes are the truth).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sixpac::tap::cut::StreamCutter;
use sixpac::wire::Proto;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so reads split frames anywhere.
    let Some((&size, bytes)) = data.split_first() else { return };
    let mut cutter = StreamCutter::new(Proto::Xmpp);
    let mut out = Vec::with_capacity(bytes.len());
    for chunk in bytes.chunks(usize::from(size).max(1)) {
        for (_, frame) in cutter.push(chunk) {
            out.extend_from_slice(&frame);
        }
    }
    if let Some((_, frame)) = cutter.finish() {
        out.extend_from_slice(&frame);
    }
    assert_eq!(out, bytes, "frames are the stream, every byte in order");
});
