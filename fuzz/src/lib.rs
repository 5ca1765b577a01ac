//! Properties the fuzz targets check, where two targets check the same one.

use sixpac::tap::cut::StreamCutter;
use sixpac::wire::Proto;

/// A tap's stream cutter for `proto`, fed `data` after its first byte in chunks of that byte's
/// size (so reads split frames anywhere): no panic, and the frames hold every byte in order
/// (bytes are the truth).
pub fn frames_are_the_stream(proto: Proto, data: &[u8]) {
    let Some((&size, bytes)) = data.split_first() else { return };
    let mut cutter = StreamCutter::new(proto);
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
}
