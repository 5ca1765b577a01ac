//! SDP (RFC 4566) offers and answers for calls (RFC 3264), and the checks the suite applies
//! to SDP it receives. No media flows yet: ports are announced, nothing listens on them.

/// One media line, as far as offer/answer cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio` or `video`.
    pub kind: String,
    /// 0 means the stream is rejected (RFC 3264 §6).
    pub port: u16,
    pub proto: String,
    pub formats: Vec<String>,
}

/// The parts of a session description offer/answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub origin_user: String,
    pub session_id: u64,
    pub version: u64,
    pub address: String,
    pub media: Vec<Media>,
}

const AUDIO_FORMATS: [&str; 2] = ["0", "8"];
const VIDEO_FORMATS: [&str; 1] = ["96"];

fn rtpmap(kind: &str, fmt: &str) -> Option<&'static str> {
    match (kind, fmt) {
        ("audio", "0") => Some("PCMU/8000"),
        ("audio", "8") => Some("PCMA/8000"),
        ("video", "96") => Some("H264/90000"),
        _ => None,
    }
}

impl Session {
    /// An offer: audio, and video when asked for. The origin's username is `-` (RFC 4566
    /// §5.2), so no account name appears in the body.
    pub fn offer(address: &str, audio_port: u16, video: bool) -> Session {
        let mut media = vec![Media { kind: "audio".into(), port: audio_port, proto: "RTP/AVP".into(), formats: AUDIO_FORMATS.map(String::from).to_vec() }];
        if video {
            media.push(Media { kind: "video".into(), port: audio_port + 2, proto: "RTP/AVP".into(), formats: VIDEO_FORMATS.map(String::from).to_vec() });
        }
        Session { origin_user: "-".into(), session_id: session_id(), version: 1, address: address.into(), media }
    }

    /// The answer to `offer`: one m-line per offered m-line, in order (§6); streams of a
    /// kind we do not take, or with no format in common, get port 0.
    pub fn answer(offer: &Session, address: &str, audio_port: u16, accept_video: bool) -> Session {
        let media = offer
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let ours: &[&str] = match m.kind.as_str() {
                    "audio" => &AUDIO_FORMATS,
                    "video" if accept_video => &VIDEO_FORMATS,
                    _ => &[],
                };
                let common: Vec<String> = m.formats.iter().filter(|f| ours.contains(&f.as_str())).cloned().collect();
                if m.port == 0 || common.is_empty() {
                    // A rejected stream still lists a format (RFC 4566 needs one).
                    Media { kind: m.kind.clone(), port: 0, proto: m.proto.clone(), formats: m.formats.iter().take(1).cloned().collect() }
                } else {
                    Media { kind: m.kind.clone(), port: audio_port + 2 * i as u16, proto: m.proto.clone(), formats: common }
                }
            })
            .collect();
        Session { origin_user: "-".into(), session_id: session_id(), version: 1, address: address.into(), media }
    }

    /// The text, with CRLF line ends, fields in RFC 4566 §5 order.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "v=0\r\no={} {} {} IN IP4 {}\r\ns=sixpac\r\nc=IN IP4 {}\r\nt=0 0\r\n",
            self.origin_user, self.session_id, self.version, self.address, self.address
        );
        for m in &self.media {
            s.push_str(&format!("m={} {} {} {}\r\n", m.kind, m.port, m.proto, m.formats.join(" ")));
            if m.port != 0 {
                for f in &m.formats {
                    if let Some(map) = rtpmap(&m.kind, f) {
                        s.push_str(&format!("a=rtpmap:{f} {map}\r\n"));
                    }
                }
                s.push_str("a=sendrecv\r\n");
            }
        }
        s
    }

    /// Read a session description, checking what RFC 4566 requires of its shape.
    pub fn parse(text: &str) -> Result<Session, SdpError> {
        let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).filter(|l| !l.is_empty()).collect();
        let bad = |n: usize, why: &str| SdpError { line: n + 1, problem: why.to_string() };
        let mut session = Session { origin_user: String::new(), session_id: 0, version: 0, address: String::new(), media: vec![] };
        // Session-level fields must come in this order (§5); `m=` starts media sections.
        let order = ["v", "o", "s", "i", "u", "e", "p", "c", "b", "t", "r", "z", "k", "a"];
        let mut last = 0usize;
        let (mut seen_v, mut seen_o, mut seen_s, mut seen_t, mut session_c) = (false, false, false, false, false);
        for (n, line) in lines.iter().enumerate() {
            let Some((key, value)) = line.split_once('=') else { return Err(bad(n, "not a `<type>=<value>` line")) };
            if key.len() != 1 {
                return Err(bad(n, "the type is one letter"));
            }
            if key == "m" {
                let parts: Vec<&str> = value.split(' ').collect();
                if parts.len() < 4 {
                    return Err(bad(n, "m= needs media, port, proto and at least one format"));
                }
                let port = parts[1].split('/').next().and_then(|p| p.parse().ok()).ok_or_else(|| bad(n, "m= port is not a number"))?;
                session.media.push(Media { kind: parts[0].into(), port, proto: parts[2].into(), formats: parts[3..].iter().map(|s| s.to_string()).collect() });
                continue;
            }
            if session.media.is_empty() {
                let pos = order.iter().position(|k| *k == key).ok_or_else(|| bad(n, "unknown session-level type"))?;
                if pos < last {
                    return Err(bad(n, &format!("`{key}=` is out of the order RFC 4566 §5 gives")));
                }
                last = pos;
            }
            match key {
                "v" => {
                    seen_v = true;
                    if value != "0" {
                        return Err(bad(n, "v= must be 0"));
                    }
                }
                "o" => {
                    seen_o = true;
                    let p: Vec<&str> = value.split(' ').collect();
                    if p.len() != 6 {
                        return Err(bad(n, "o= has six fields"));
                    }
                    session.origin_user = p[0].into();
                    session.session_id = p[1].parse().map_err(|_| bad(n, "o= session id is not a number"))?;
                    session.version = p[2].parse().map_err(|_| bad(n, "o= version is not a number"))?;
                }
                "s" => seen_s = true,
                "t" => seen_t = true,
                "c" => {
                    if session.media.is_empty() {
                        session_c = true;
                    }
                    session.address = value.rsplit(' ').next().unwrap_or("").into();
                }
                _ => {}
            }
        }
        if !(seen_v && seen_o && seen_s && seen_t) {
            return Err(SdpError { line: 0, problem: "v=, o=, s= and t= are all required".into() });
        }
        if !session_c && !text.contains("\nc=") {
            return Err(SdpError { line: 0, problem: "no c= line at session level or in every media section".into() });
        }
        Ok(session)
    }
}

/// Why a session description is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {problem}")]
pub struct SdpError {
    pub line: usize,
    pub problem: String,
}

/// Whether `answer` answers `offer` as RFC 3264 §6 requires: the same number of m-lines,
/// each of the same media type, in order.
pub fn check_answer(offer: &Session, answer: &Session) -> Result<(), String> {
    if offer.media.len() != answer.media.len() {
        return Err(format!("the offer has {} m-lines, the answer {}", offer.media.len(), answer.media.len()));
    }
    for (i, (o, a)) in offer.media.iter().zip(&answer.media).enumerate() {
        if o.kind != a.kind {
            return Err(format!("m-line {} is {} in the offer and {} in the answer", i + 1, o.kind, a.kind));
        }
    }
    Ok(())
}

/// A random session id of exactly ten digits, so Content-Length does not vary between runs.
fn session_id() -> u64 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("OS random source");
    1_000_000_000 + u64::from(u32::from_be_bytes(b)) % 9_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_round_trips_and_is_valid() {
        let o = Session::offer("127.0.0.1", 40000, true);
        let text = o.to_text();
        assert!(text.starts_with("v=0\r\no=- "));
        assert_eq!(Session::parse(&text).unwrap(), o);
    }

    #[test]
    fn an_audio_only_answer_rejects_video_with_port_0_and_keeps_the_m_line_count() {
        let offer = Session::offer("127.0.0.1", 40000, true);
        let ans = Session::answer(&offer, "127.0.0.1", 42000, false);
        assert_eq!(ans.media.len(), 2);
        assert_eq!(ans.media[0].port, 42000);
        assert_eq!(ans.media[1].port, 0);
        check_answer(&offer, &Session::parse(&ans.to_text()).unwrap()).unwrap();
    }

    #[test]
    fn a_short_answer_is_named() {
        let offer = Session::offer("127.0.0.1", 40000, true);
        let ans = Session::offer("127.0.0.1", 42000, false);
        assert_eq!(check_answer(&offer, &ans).unwrap_err(), "the offer has 2 m-lines, the answer 1");
    }

    #[test]
    fn malformed_descriptions_are_refused_with_the_line() {
        assert_eq!(Session::parse("v=0\r\ns=x\r\no=a 1 1 IN IP4 1.2.3.4\r\nt=0 0\r\n").unwrap_err().line, 3);
        assert!(Session::parse("v=0\r\no=a 1 1 IN IP4 h\r\ns=x\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n").unwrap_err().problem.contains("c="));
        assert!(Session::parse("v=1\r\n").is_err());
        assert!(Session::parse("v=0\r\no=a 1 1 IN IP4 h\r\ns=x\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio x RTP/AVP 0\r\n").is_err());
    }
}
