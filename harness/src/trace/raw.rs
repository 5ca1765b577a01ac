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

use super::frame::{Direction, Fault, Frame, FrameKind};
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

/// A frame's bytes with every credential span masked by `*` of the same length.
pub fn redacted(f: &Frame) -> Vec<u8> {
    let mut bytes = f.bytes.clone();
    for r in secret_spans(f) {
        bytes[r].fill(b'*');
    }
    bytes
}

fn write_frames(frames: &[Frame], out: &mut impl Write, redact: bool) -> std::io::Result<()> {
    for f in frames {
        let dir = match f.dir {
            Direction::ToServer => "to-server",
            Direction::ToClient => "to-client",
        };
        writeln!(
            out,
            "#frame seq={} t={}.{:06} server={} proto={} transport={} conn={} client={} tap={} up={} dir={dir} kind={}{} len={}",
            f.seq,
            micros(f.at) / 1_000_000,
            micros(f.at) % 1_000_000,
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
            out.write_all(&redacted(f))?;
        } else {
            out.write_all(&f.bytes)?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Why a raw trace file could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {offset}: {what}")]
pub struct ReadError {
    pub offset: usize,
    pub what: String,
}

/// Undo Rust's `{:?}` quoting of a string (how `unparsed:` and `closed:` reasons are written).
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'u' => {
                let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

fn parse_kind(k: &str) -> Option<FrameKind> {
    Some(match k {
        "sip" => FrameKind::Sip,
        "xmpp-header" => FrameKind::XmppHeader,
        "xmpp-element" => FrameKind::XmppElement,
        "xmpp-close" => FrameKind::XmppClose,
        "whitespace" => FrameKind::Whitespace,
        "opaque" => FrameKind::Opaque,
        "tls-handshake" => FrameKind::TlsHandshake,
        _ => {
            let (tag, rest) = k.split_once(':')?;
            match tag {
                "unparsed" => FrameKind::Unparsed(unquote(rest)?),
                "closed" => FrameKind::Closed(unquote(rest)?),
                "fault" => FrameKind::Fault(unquote(rest)?),
                // The heading keeps only the count.
                "lost" => FrameKind::Lost { datagrams: rest.parse().ok()?, why: String::new() },
                _ => return None,
            }
        }
    })
}

fn parse_fault(s: &str) -> Option<Fault> {
    let ms = |p: &str| s.strip_prefix(p).and_then(|r| r.strip_suffix("ms")).and_then(|n| n.parse().ok()).map(std::time::Duration::from_millis);
    Some(match s {
        "dropped" => Fault::Dropped,
        "not-forwarded" => Fault::NoUpstream,
        "duplicated" => Fault::Duplicated,
        "reordered" => Fault::Reordered,
        "reset" => Fault::Reset,
        _ => ms("delayed-").map(Fault::Delayed).or_else(|| ms("stalled-").map(Fault::Stalled))?,
    })
}

/// Read a raw trace back into frames: what `sixpac report` and `sixpac show` draw from. The
/// headings' `key=value` fields are read by name; a reason in quotes may hold spaces.
pub fn read(bytes: &[u8]) -> Result<Vec<Frame>, ReadError> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let err = |what: String| ReadError { offset: at, what };
        let eol = bytes[at..].iter().position(|&b| b == b'\n').map(|i| at + i).ok_or_else(|| err("a heading without its line end".into()))?;
        let line = std::str::from_utf8(&bytes[at..eol]).map_err(|_| err("a heading that is not UTF-8".into()))?;
        let rest = line.strip_prefix("#frame ").ok_or_else(|| err(format!("expected `#frame`, found {:?}", line.chars().take(40).collect::<String>())))?;
        let mut fields: std::collections::HashMap<&str, String> = Default::default();
        let mut words = rest;
        while !words.is_empty() {
            let (key, after) = words.split_once('=').ok_or_else(|| err(format!("a field without `=`: {words:?}")))?;
            // A value ends at the next ` key=`; a quoted reason is read to its closing quote.
            let value_end = if after.contains(":\"") && key == "kind" {
                let q = after.find('"').unwrap_or(0);
                let mut i = q + 1;
                let b = after.as_bytes();
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                (i + 1).min(after.len())
            } else {
                after.find(' ').unwrap_or(after.len())
            };
            fields.insert(key, after[..value_end].to_string());
            words = after[value_end..].trim_start();
        }
        let get = |k: &str| fields.get(k).cloned().ok_or_else(|| err(format!("no `{k}=`")));
        let num = |k: &str| get(k)?.parse::<u64>().map_err(|_| err(format!("`{k}=` is not a number")));
        let addr = |k: &str| get(k)?.parse::<std::net::SocketAddr>().map_err(|_| err(format!("`{k}=` is not an address")));
        let len = num("len")? as usize;
        let start = eol + 1;
        let end = start.checked_add(len).filter(|&e| e < bytes.len() + 1 && bytes.get(e) == Some(&b'\n')).ok_or_else(|| err(format!("{len} bytes and a line end do not follow the heading")))?;
        let proto = match get("proto")?.as_str() {
            "sip" => crate::wire::Proto::Sip,
            "xmpp" => crate::wire::Proto::Xmpp,
            p => return Err(err(format!("unknown proto {p:?}"))),
        };
        let transport = match get("transport")?.as_str() {
            "udp" => crate::wire::Transport::Udp,
            "tcp" => crate::wire::Transport::Tcp,
            "tls" => crate::wire::Transport::Tls,
            t => return Err(err(format!("unknown transport {t:?}"))),
        };
        let kind = get("kind")?;
        frames.push(Frame {
            seq: num("seq")?,
            at: seconds(&get("t")?).ok_or_else(|| err("`t=` is not a time in seconds".into()))?,
            server: get("server")?.into(),
            proto,
            transport,
            conn: num("conn")?,
            client: addr("client")?,
            tap: addr("tap")?,
            upstream: match get("up")?.as_str() {
                "-" => None,
                _ => Some(addr("up")?),
            },
            dir: match get("dir")?.as_str() {
                "to-server" => Direction::ToServer,
                "to-client" => Direction::ToClient,
                d => return Err(err(format!("unknown dir {d:?}"))),
            },
            kind: parse_kind(&kind).ok_or_else(|| err(format!("unknown kind {kind:?}")))?,
            bytes: bytes[start..end].to_vec(),
            fault: match fields.get("fault") {
                Some(x) => Some(parse_fault(x).ok_or_else(|| err(format!("unknown fault {x:?}")))?),
                None => None,
            },
        });
        at = end + 1;
    }
    Ok(frames)
}

/// A frame's time as the raw trace writes it, in whole microseconds (rounded): what the
/// pcapng written during a run uses too, so that one rendered again from the raw trace is the
/// same byte for byte.
pub fn micros(at: std::time::Duration) -> u64 {
    ((at.as_nanos() + 500) / 1000) as u64
}

/// `SECONDS[.FRACTION]` read exactly, in decimal (no float on the way): None if it is not one.
fn seconds(t: &str) -> Option<std::time::Duration> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) if digits(f) => (w, f),
        Some(_) => return None,
        None => (t, ""),
    };
    if !digits(whole) {
        return None;
    }
    let nanos: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(std::time::Duration::new(whole.parse().ok()?, nanos.parse().ok()?))
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

    #[test]
    fn a_time_reads_back_to_the_microsecond_it_was_written_as() {
        // Half a microsecond: a float's rounding and the writer's could disagree here.
        for ns in [1_234_567_500u64, 999_999_999, 0, 5_000_000_499] {
            let at = std::time::Duration::from_nanos(ns);
            let t = format!("{}.{:06}", micros(at) / 1_000_000, micros(at) % 1_000_000);
            assert_eq!(micros(seconds(&t).unwrap()), micros(at), "{t}");
        }
        assert_eq!(seconds("12"), Some(std::time::Duration::from_secs(12)));
        for bad in ["-0.5", "1.", ".5", "1.2.3", "x", ""] {
            assert_eq!(seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn what_is_written_reads_back() {
        let rec = Recorder::new();
        let o = Origin {
            server: "kamailio".into(), proto: Proto::Sip, transport: Transport::Udp, conn: 3,
            client: "127.0.0.1:4000".parse().unwrap(), tap: "127.0.0.1:5060".parse().unwrap(), upstream: Some("127.0.0.1:4100".parse().unwrap()),
        };
        rec.record(&o, Direction::ToServer, FrameKind::Sip, b"OPTIONS sip:d SIP/2.0\r\n\r\n".to_vec());
        rec.record_with(&o, Direction::ToServer, FrameKind::Sip, b"x\n#frame seq=9 len=1\n".to_vec(), Some(Fault::Delayed(std::time::Duration::from_millis(800))));
        rec.record(&o, Direction::ToClient, FrameKind::Unparsed("bad \"start\" line\n \u{1}".into()), vec![0, 255, b'\n']);
        rec.record(&o, Direction::ToClient, FrameKind::Closed("eof".into()), Vec::new());
        rec.record(&o, Direction::ToServer, FrameKind::Lost { datagrams: 4, why: String::new() }, Vec::new());
        let frames = rec.frames_for_all();
        let mut out = Vec::new();
        write(&frames, &mut out).unwrap();
        let back = read(&out).unwrap();
        assert_eq!(back.len(), frames.len());
        for (a, b) in frames.iter().zip(&back) {
            assert_eq!((a.seq, &a.server, a.proto, a.transport, a.conn, a.client, a.tap, a.upstream, a.dir, &a.kind, &a.bytes, a.fault),
                (b.seq, &b.server, b.proto, b.transport, b.conn, b.client, b.tap, b.upstream, b.dir, &b.kind, &b.bytes, b.fault));
            assert!((a.at.as_secs_f64() - b.at.as_secs_f64()).abs() < 1e-6);
        }
        assert!(read(&out[..out.len() - 1]).unwrap_err().what.contains("do not follow"), "the last line end missing");
        let first_len = out.iter().position(|&b| b == b'\n').unwrap() + 5;
        assert!(read(&out[..first_len]).unwrap_err().what.contains("do not follow"));
        assert!(read(b"garbage\n").unwrap_err().what.contains("expected `#frame`"));
        // Found by fuzzing: a negative time.
        let negative = String::from_utf8_lossy(&out).replacen(" t=0.", " t=-0.", 1);
        assert!(read(negative.as_bytes()).unwrap_err().what.contains("`t=`"));
    }
}
