//! The raw trace file: every frame's exact bytes behind a one-line heading.
//!
//! Format, per frame: `#frame seq=N t=SECONDS server=S proto=P transport=T conn=C client=ADDR
//! tap=ADDR up=ADDR|- dir=to-server|to-client kind=K len=LEN` + `\n` + exactly LEN bytes + `\n`
//! (`tap` the tap's listening address, `up` its socket towards the server for this client).

use super::frame::{Direction, Frame, FrameKind};
use std::io::Write;

fn kind_name(k: &FrameKind) -> String {
    match k {
        FrameKind::Sip => "sip".into(),
        FrameKind::XmppHeader => "xmpp-header".into(),
        FrameKind::XmppElement => "xmpp-element".into(),
        FrameKind::XmppClose => "xmpp-close".into(),
        FrameKind::Whitespace => "whitespace".into(),
        FrameKind::Opaque => "opaque".into(),
        FrameKind::TlsHandshake => "tls-handshake".into(),
        FrameKind::Unparsed(why) => format!("unparsed:{:?}", why),
    }
}

/// Write frames in arrival order.
pub fn write(frames: &[Frame], out: &mut impl Write) -> std::io::Result<()> {
    for f in frames {
        let dir = match f.dir {
            Direction::ToServer => "to-server",
            Direction::ToClient => "to-client",
        };
        writeln!(
            out,
            "#frame seq={} t={:.6} server={} proto={} transport={} conn={} client={} tap={} up={} dir={dir} kind={} len={}",
            f.seq,
            f.at.as_secs_f64(),
            f.server,
            f.proto.name(),
            f.transport.name(),
            f.conn,
            f.client,
            f.tap,
            f.upstream.map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
            kind_name(&f.kind),
            f.bytes.len()
        )?;
        out.write_all(&f.bytes)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
