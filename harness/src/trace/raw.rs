//! The raw trace file: every frame's exact bytes behind a one-line heading.
//!
//! Format, per frame: `#frame seq=N t=SECONDS server=S proto=P transport=T conn=C client=ADDR
//! tap=ADDR up=ADDR|- dir=to-server|to-client kind=K [fault=dropped] len=LEN` + `\n` + exactly
//! LEN bytes + `\n`
//! (`tap` the tap's listening address, `up` its socket towards the server for this client).
//!
//! The raw trace holds credentials as they crossed the wire: SASL payloads (PLAIN's is the
//! password in base64) and Digest responses. [`write_redacted`] masks exactly those spans, byte
//! for byte, for a trace that is to be shared.

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
        FrameKind::Closed(how) => format!("closed:{how:?}"),
        FrameKind::Lost { datagrams, .. } => format!("lost:{datagrams}"),
        FrameKind::Fault(what) => format!("fault:{what:?}"),
    }
}

/// Write frames in arrival order.
pub fn write(frames: &[Frame], out: &mut impl Write) -> std::io::Result<()> {
    write_frames(frames, out, false)
}

/// The same, with every credential span masked by `*` of the same length (so `len=` stays true
/// and nothing else moves).
pub fn write_redacted(frames: &[Frame], out: &mut impl Write) -> std::io::Result<()> {
    write_frames(frames, out, true)
}

/// Digest parameters that are secrets or derived from them.
const DIGEST_SECRETS: [&str; 4] = ["nonce", "cnonce", "response", "opaque"];

/// Byte ranges of a frame that carry credentials.
pub fn secret_spans(f: &Frame) -> Vec<std::ops::Range<usize>> {
    let b = &f.bytes;
    let mut out = Vec::new();
    match f.proto {
        crate::wire::Proto::Xmpp => {
            let text = String::from_utf8_lossy(b);
            // SASL elements: their text is the payload (RFC 6120 §6.4).
            if text.contains("urn:ietf:params:xml:ns:xmpp-sasl") {
                for tag in ["auth", "response", "challenge", "success"] {
                    let open = format!("<{tag}");
                    let mut from = 0;
                    while let Some(i) = text[from..].find(&open).map(|i| i + from) {
                        let Some(gt) = text[i..].find('>').map(|g| g + i) else { break };
                        let Some(end) = text[gt..].find(&format!("</{tag}>")).map(|e| e + gt) else { break };
                        if !text[i..gt].ends_with('/') && end > gt + 1 {
                            out.push(gt + 1..end);
                        }
                        from = end;
                    }
                }
            }
        }
        crate::wire::Proto::Sip => {
            let text = String::from_utf8_lossy(b);
            let mut offset = 0;
            for line in text.split_inclusive('\n') {
                let lower = line.to_ascii_lowercase();
                if ["authorization:", "proxy-authorization:", "www-authenticate:", "proxy-authenticate:"].iter().any(|h| lower.starts_with(h)) {
                    for k in DIGEST_SECRETS {
                        let mut from = 0;
                        while let Some(i) = lower[from..].find(&format!("{k}=")).map(|i| i + from) {
                            // The whole word: `nonce=` is not the tail of `cnonce=`.
                            let word = i == 0 || !lower.as_bytes()[i - 1].is_ascii_alphanumeric();
                            let start = i + k.len() + 1;
                            let quoted = line[start..].starts_with('"');
                            let value_start = start + quoted as usize;
                            let value_end = if quoted {
                                line[value_start..].find('"').map_or(line.len(), |e| e + value_start)
                            } else {
                                line[value_start..].find([',', ' ', '\r', '\n']).map_or(line.len(), |e| e + value_start)
                            };
                            if word && value_end > value_start {
                                out.push(offset + value_start..offset + value_end);
                            }
                            from = value_end.max(i + 1);
                        }
                    }
                }
                offset += line.len();
            }
        }
    }
    out
}

fn write_frames(frames: &[Frame], out: &mut impl Write, redact: bool) -> std::io::Result<()> {
    for f in frames {
        let dir = match f.dir {
            Direction::ToServer => "to-server",
            Direction::ToClient => "to-client",
        };
        writeln!(
            out,
            "#frame seq={} t={:.6} server={} proto={} transport={} conn={} client={} tap={} up={} dir={dir} kind={}{} len={}",
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
            f.fault.map(|x| format!(" fault={}", x.name())).unwrap_or_default(),
            f.bytes.len()
        )?;
        if redact {
            let mut bytes = f.bytes.clone();
            for r in secret_spans(f) {
                bytes[r].fill(b'*');
            }
            out.write_all(&bytes)?;
        } else {
            out.write_all(&f.bytes)?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::frame::{Direction, Origin, Recorder};
    use crate::wire::{Proto, Transport};

    #[test]
    fn redaction_masks_the_credentials_and_changes_nothing_else() {
        let rec = Recorder::new();
        let origin = |proto, conn| Origin {
            server: "s".into(), proto, transport: Transport::Tcp, conn,
            client: "127.0.0.1:4000".parse().unwrap(), tap: "127.0.0.1:5222".parse().unwrap(), upstream: None,
        };
        let plain = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHMzY3IzdA==</auth>";
        let digest = "REGISTER sip:d SIP/2.0\r\nAuthorization: Digest username=\"alice\", realm=\"d\", nonce=\"N0NCE\", uri=\"sip:d\", response=\"0123abcd\", cnonce=\"CN\", nc=00000001\r\nContent-Length: 0\r\n\r\n";
        rec.record(&origin(Proto::Xmpp, 1), Direction::ToServer, FrameKind::XmppElement, plain.as_bytes().to_vec());
        rec.record(&origin(Proto::Xmpp, 1), Direction::ToClient, FrameKind::XmppElement, b"<message><body>hi</body></message>".to_vec());
        rec.record(&origin(Proto::Sip, 2), Direction::ToServer, FrameKind::Sip, digest.as_bytes().to_vec());
        let frames = rec.frames_for_all();
        let (mut plain_out, mut red) = (Vec::new(), Vec::new());
        write(&frames, &mut plain_out).unwrap();
        write_redacted(&frames, &mut red).unwrap();
        assert_eq!(plain_out.len(), red.len(), "same length: len= stays true");
        let text = String::from_utf8(red.clone()).unwrap();
        for secret in ["AGFsaWNlAHMzY3IzdA==", "N0NCE", "0123abcd", "\"CN\""] {
            assert!(!text.contains(secret), "{secret} left in:\n{text}");
        }
        assert!(text.contains("username=\"alice\"") && text.contains("<body>hi</body>") && text.contains("nc=00000001"));
        // Every changed byte is a `*` inside a secret span.
        let changed = plain_out.iter().zip(&red).filter(|(a, b)| a != b).count();
        let masked: usize = frames.iter().flat_map(secret_spans).map(|r| r.len()).sum();
        assert_eq!(changed, masked);
        assert!(plain_out.iter().zip(&red).all(|(a, b)| a == b || *b == b'*'));
    }
}
