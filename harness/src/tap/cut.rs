//! Cutting relayed bytes into frames: datagrams, SIP over a stream, XMPP over a stream.

use crate::sip::message::{keepalive_prefix_len, stream_frame_len};
use crate::trace::frame::{FrameKind, Proto};
use crate::xmpp::{XmppFrameKind, XmppFramer};

/// Per-direction stream cutter.
#[derive(Debug)]
pub enum StreamCutter {
    Sip(Vec<u8>),
    Xmpp(XmppFramer),
}

impl StreamCutter {
    /// A cutter for one direction of a stream of `proto`.
    pub fn new(proto: Proto) -> StreamCutter {
        match proto {
            Proto::Sip => StreamCutter::Sip(Vec::new()),
            Proto::Xmpp => StreamCutter::Xmpp(XmppFramer::new()),
        }
    }

    /// Feed bytes; return the frames they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(FrameKind, Vec<u8>)> {
        let mut out = Vec::new();
        match self {
            StreamCutter::Sip(buf) => {
                buf.extend_from_slice(bytes);
                loop {
                    let ka = keepalive_prefix_len(buf);
                    if ka > 0 && ka == buf.len() {
                        break; // wait: CRLFs may be a keepalive or precede a message
                    }
                    if ka > 0 {
                        out.push((FrameKind::Whitespace, buf.drain(..ka).collect()));
                    }
                    match stream_frame_len(buf) {
                        Ok(Some(n)) => {
                            let frame: Vec<u8> = buf.drain(..n).collect();
                            out.push((FrameKind::of_sip(&frame), frame));
                        }
                        Ok(None) if buf.len() > crate::xmpp::framing::MAX_FRAME => {
                            let why = "no complete SIP message within 1 MiB".to_string();
                            out.push((FrameKind::Unparsed(why), std::mem::take(buf)));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // Framing is lost for good on a stream: keep the rest, say why.
                            out.push((FrameKind::Unparsed(e.to_string()), std::mem::take(buf)));
                        }
                    }
                }
            }
            StreamCutter::Xmpp(f) => {
                f.push(bytes);
                while let Some(fr) = f.next_frame() {
                    let element = fr.bytes.iter().position(|b| *b == b'<').map(|p| &fr.bytes[p..]);
                    if fr.kind == XmppFrameKind::Element && element.is_some_and(|e| e.starts_with(b"<proceed")) {
                        f.set_opaque();
                    }
                    out.push((xmpp_kind(fr.kind), fr.bytes));
                }
            }
        }
        out
    }

    /// The stream ended: flush what is left.
    pub fn finish(&mut self) -> Option<(FrameKind, Vec<u8>)> {
        match self {
            StreamCutter::Sip(buf) if buf.is_empty() => None,
            StreamCutter::Sip(buf) => {
                let bytes = std::mem::take(buf);
                let kind = if keepalive_prefix_len(&bytes) == bytes.len() {
                    FrameKind::Whitespace
                } else {
                    FrameKind::Unparsed("stream closed inside a SIP message".into())
                };
                Some((kind, bytes))
            }
            StreamCutter::Xmpp(f) => f.finish().map(|fr| (xmpp_kind(fr.kind), fr.bytes)),
        }
    }
}

fn xmpp_kind(k: XmppFrameKind) -> FrameKind {
    match k {
        XmppFrameKind::StreamHeader => FrameKind::XmppHeader,
        XmppFrameKind::Element => FrameKind::XmppElement,
        XmppFrameKind::StreamClose => FrameKind::XmppClose,
        XmppFrameKind::Whitespace => FrameKind::Whitespace,
        XmppFrameKind::Opaque => FrameKind::Opaque,
        XmppFrameKind::Unparsed(r) => FrameKind::Unparsed(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_stream_cuts_on_content_length_and_keeps_garbage() {
        let mut c = StreamCutter::new(Proto::Sip);
        let two = b"\r\n\r\nOPTIONS sip:x SIP/2.0\r\nl: 2\r\n\r\nhiSIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        let frames = c.push(two);
        let kinds: Vec<_> = frames.iter().map(|f| f.0.clone()).collect();
        assert_eq!(kinds, vec![FrameKind::Whitespace, FrameKind::Sip, FrameKind::Sip]);
        let bad = c.push(b"GARBAGE\r\nContent-Length: x\r\n\r\n");
        assert!(matches!(bad[0].0, FrameKind::Unparsed(_)));
        assert_eq!(bad[0].1, b"GARBAGE\r\nContent-Length: x\r\n\r\n");
    }
}
