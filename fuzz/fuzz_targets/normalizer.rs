//! The normalizer over frames cut from arbitrary bytes: SIP and XMPP, both directions, several
//! connections. No panic on anything a tap could record.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sixpac::trace::frame::{Direction, FrameKind, Origin, Recorder};
use sixpac::trace::normalize::{normalize, NormalizeContext};
use sixpac::wire::{Proto, Transport};

fuzz_target!(|data: &[u8]| {
    let rec = Recorder::new();
    let tap = "127.0.0.1:5060".parse().unwrap();
    // Frames are separated by 0xFF; each frame's first byte picks its connection, protocol
    // and direction.
    for part in data.split(|b| *b == 0xff) {
        let Some((&head, bytes)) = part.split_first() else { continue };
        let proto = if head & 1 == 0 { Proto::Sip } else { Proto::Xmpp };
        let dir = if head & 2 == 0 { Direction::ToServer } else { Direction::ToClient };
        let conn = u64::from(head >> 4);
        let client = format!("127.0.0.1:{}", 40000 + conn).parse().unwrap();
        let transport = if proto == Proto::Sip && head & 4 == 0 { Transport::Udp } else { Transport::Tcp };
        let origin = Origin { server: "s".into(), proto, transport, conn, client, tap, upstream: None };
        let kind = match proto {
            Proto::Sip => sixpac::trace::frame::FrameKind::of_sip(bytes),
            Proto::Xmpp if bytes.starts_with(b"<stream") || bytes.starts_with(b"<?xml") => FrameKind::XmppHeader,
            Proto::Xmpp => FrameKind::XmppElement,
        };
        rec.record(&origin, dir, kind, bytes.to_vec());
    }
    let ctx = NormalizeContext { title: "fuzz".into(), ..Default::default() };
    let _ = normalize(&rec.frames_for_all(), &ctx);
});
