//! Lossless SIP message view: the received bytes plus ranges into them.
//!
//! Nothing here re-serializes. Header names are kept as written (compact or long); accessors
//! understand both forms so a check for `Contact` also sees `m:`.

use std::ops::Range;

/// Why bytes could not be read as a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no empty line ends the header section")]
    NoHeaderEnd,
    #[error("start line is neither a request line nor a status line: {0:?}")]
    BadStartLine(String),
    #[error("header line {line} has no colon: {text:?}")]
    BadHeader { line: usize, text: String },
    #[error("Content-Length {declared} is larger than the {available} body bytes present")]
    ContentLengthTooLarge { declared: usize, available: usize },
    #[error("Content-Length is not a number: {0:?}")]
    BadContentLength(String),
    #[error("message is not valid UTF-8 in its header section")]
    NotUtf8,
}

/// One header line: ranges of its name and its (possibly folded) value in the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLine {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// The parsed start line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String, version: String },
    Response { version: String, code: u16, reason: String },
}

/// A SIP message: raw bytes are the truth, everything else is a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    raw: Vec<u8>,
    start: StartLine,
    headers: Vec<HeaderLine>,
    body: Range<usize>,
    /// Bytes after the body that Content-Length excluded (RFC 3261 §18.3: discard for UDP).
    trailing: Range<usize>,
}

/// Long form for each compact header name (RFC 3261 §7.3.3 and later extensions).
pub fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => name,
    }
}

/// True when two header names denote the same header, compact or long, any case.
pub fn same_header(a: &str, b: &str) -> bool {
    expand_compact(a.trim()).eq_ignore_ascii_case(expand_compact(b.trim()))
}

/// Where the header section ends: (index of first header-section terminator, length of it).
fn find_header_end(raw: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\n' {
            if raw.get(i + 1) == Some(&b'\n') {
                return Some((i + 1, 1));
            }
            if raw.get(i + 1) == Some(&b'\r') && raw.get(i + 2) == Some(&b'\n') {
                return Some((i + 1, 2));
            }
        }
        i += 1;
    }
    None
}

/// For stream transports: how many bytes the first message in `buf` takes, if it is complete.
/// `Ok(None)` means more bytes are needed.
pub fn stream_frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some((blank, term)) = find_header_end(buf) else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..blank]).map_err(|_| ParseError::NotUtf8)?;
    let mut len = 0usize;
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            if same_header(name, "Content-Length") {
                len = value
                    .trim()
                    .parse()
                    .map_err(|_| ParseError::BadContentLength(value.trim().to_string()))?;
            }
        }
    }
    // A declared length near usize::MAX must not wrap around: it is no frame at all.
    let total = (blank + term).checked_add(len).ok_or_else(|| ParseError::BadContentLength(len.to_string()))?;
    Ok((buf.len() >= total).then_some(total))
}

/// Leading CRLFs between messages on a stream are keepalives (RFC 5626 §3.5.1), not messages.
pub fn keepalive_prefix_len(buf: &[u8]) -> usize {
    buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count()
}

impl SipMessage {
    /// Parse one whole message (a datagram, or a frame cut by [`stream_frame_len`]).
    pub fn parse(raw: &[u8]) -> Result<SipMessage, ParseError> {
        let raw = raw.to_vec();
        let (blank, term) = find_header_end(&raw).ok_or(ParseError::NoHeaderEnd)?;
        let head = std::str::from_utf8(&raw[..blank]).map_err(|_| ParseError::NotUtf8)?;
        // Lines with their byte offsets, CR stripped from the end.
        let mut lines: Vec<Range<usize>> = Vec::new();
        let mut at = 0;
        for piece in head.split_inclusive('\n') {
            let mut end = at + piece.len();
            if head.as_bytes()[end - 1] == b'\n' {
                end -= 1;
            }
            if end > at && head.as_bytes()[end - 1] == b'\r' {
                end -= 1;
            }
            lines.push(at..end);
            at += piece.len();
        }
        let first = lines.first().cloned().ok_or(ParseError::NoHeaderEnd)?;
        let start = parse_start_line(&head[first])?;
        let mut headers: Vec<HeaderLine> = Vec::new();
        for (idx, line) in lines.iter().enumerate().skip(1) {
            let text = &head[line.clone()];
            if text.is_empty() {
                continue;
            }
            if text.starts_with(' ') || text.starts_with('\t') {
                // Folded continuation: extend the previous header's value.
                match headers.last_mut() {
                    Some(h) => h.value.end = line.end,
                    None => {
                        return Err(ParseError::BadHeader { line: idx + 1, text: text.to_string() })
                    }
                }
                continue;
            }
            let colon = text
                .find(':')
                .ok_or_else(|| ParseError::BadHeader { line: idx + 1, text: text.to_string() })?;
            let name_end = line.start + text[..colon].trim_end().len();
            let mut value_start = line.start + colon + 1;
            while value_start < line.end && matches!(raw[value_start], b' ' | b'\t') {
                value_start += 1;
            }
            headers.push(HeaderLine { name: line.start..name_end, value: value_start..line.end });
        }
        let body_start = blank + term;
        let available = raw.len() - body_start;
        let mut msg = SipMessage {
            start,
            headers,
            body: body_start..raw.len(),
            trailing: raw.len()..raw.len(),
            raw: Vec::new(),
        };
        msg.raw = raw;
        if let Some(cl) = msg.header("Content-Length") {
            let declared: usize =
                cl.trim().parse().map_err(|_| ParseError::BadContentLength(cl.clone()))?;
            if declared > available {
                return Err(ParseError::ContentLengthTooLarge { declared, available });
            }
            msg.body = body_start..body_start + declared;
            msg.trailing = body_start + declared..msg.raw.len();
        }
        Ok(msg)
    }

    /// The bytes exactly as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// Request method, if this is a request.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Status code, if this is a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The message body bytes (as bounded by Content-Length).
    pub fn body(&self) -> &[u8] {
        &self.raw[self.body.clone()]
    }

    /// Bytes after the Content-Length-bounded body.
    pub fn trailing(&self) -> &[u8] {
        &self.raw[self.trailing.clone()]
    }

    /// Header lines in order.
    pub fn header_lines(&self) -> &[HeaderLine] {
        &self.headers
    }

    /// The name of a header line as written.
    pub fn name_of(&self, h: &HeaderLine) -> &str {
        std::str::from_utf8(&self.raw[h.name.clone()]).unwrap_or("")
    }

    /// The value of a header line, with folding collapsed to single spaces.
    pub fn value_of(&self, h: &HeaderLine) -> String {
        self.value_text(h).into_owned()
    }

    /// [`Self::value_of`], borrowed from the message where nothing had to change (no
    /// folding, valid UTF-8): most values.
    pub fn value_text(&self, h: &HeaderLine) -> std::borrow::Cow<'_, str> {
        // The header section was checked to be UTF-8 by the parse: nearly always borrowed.
        let text = crate::wire::text(&self.raw[h.value.clone()]);
        if !text.contains('\n') {
            return match text {
                std::borrow::Cow::Borrowed(t) => std::borrow::Cow::Borrowed(t.trim_end()),
                std::borrow::Cow::Owned(t) => std::borrow::Cow::Owned(t.trim_end().to_string()),
            };
        }
        let mut out = String::new();
        for (i, part) in text.split('\n').enumerate() {
            let part = part.trim_end_matches('\r');
            if i == 0 {
                out.push_str(part.trim_end());
            } else {
                out.push(' ');
                out.push_str(part.trim());
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// Every value of a header (by either form of its name), in order, one per header line.
    pub fn headers(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|h| same_header(self.name_of(h), name))
            .map(|h| self.value_of(h))
            .collect()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|h| same_header(self.name_of(h), name))
            .map(|h| self.value_of(h))
    }

    /// The topmost Via value (the first comma-separated element of the first Via line).
    pub fn top_via(&self) -> Option<String> {
        self.header("Via").map(|v| split_list(&v).into_iter().next().unwrap_or_default())
    }

    /// The CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next()?.to_string()))
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::BadStartLine(line.to_string());
    if let Some(rest) = line.strip_prefix("SIP/") {
        let mut it = line.splitn(3, ' ');
        let version = it.next().ok_or_else(bad)?.to_string();
        let code_text = it.next().ok_or_else(bad)?;
        if code_text.len() != 3 || rest.is_empty() {
            return Err(bad());
        }
        let code: u16 = code_text.parse().map_err(|_| bad())?;
        if !(100..=699).contains(&code) {
            return Err(bad());
        }
        let reason = it.next().unwrap_or("").to_string();
        return Ok(StartLine::Response { version, code, reason });
    }
    let parts: Vec<&str> = line.split(' ').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    if !parts[2].starts_with("SIP/") {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: parts[0].to_string(),
        uri: parts[1].to_string(),
        version: parts[2].to_string(),
    })
}

/// Split a header value on commas that are outside quotes and angle brackets.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle) = (false, false);
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                continue;
            }
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A `;name=value` parameter of a header value, looked up outside `<...>` and quotes.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    let mut quoted = false;
    let mut angle = false;
    let mut starts = Vec::new();
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ';' if !quoted && !angle => starts.push(i + 1),
            _ => {}
        }
    }
    for (n, s) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map(|e| e - 1).unwrap_or(value.len());
        let param = value[*s..end].trim();
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}

/// The URI inside a name-addr (`"Bob" <sip:bob@x>;tag=1`) or a bare addr-spec.
pub fn addr_uri(value: &str) -> &str {
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>')) {
        if a < b {
            return &value[a + 1..b];
        }
    }
    value.split(';').next().unwrap_or(value).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG: &[u8] = b"REGISTER sip:example.test SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bK1\r\n\
f: <sip:alice@example.test>;tag=a1\r\n\
t: <sip:alice@example.test>\r\n\
i: abc@host\r\n\
CSeq: 1 REGISTER\r\n\
m: <sip:alice@127.0.0.1:5070>\r\n\
Subject: folded\r\n  across lines\r\n\
l: 0\r\n\r\n";

    #[test]
    fn compact_forms_are_understood_and_bytes_kept() {
        let m = SipMessage::parse(REG).unwrap();
        assert_eq!(m.raw(), REG);
        assert_eq!(m.method(), Some("REGISTER"));
        assert_eq!(m.header("Call-ID").as_deref(), Some("abc@host"));
        assert_eq!(m.header("contact").as_deref(), Some("<sip:alice@127.0.0.1:5070>"));
        assert_eq!(m.header("Subject").as_deref(), Some("folded across lines"));
        assert_eq!(m.cseq(), Some((1, "REGISTER".into())));
        assert_eq!(header_param(&m.top_via().unwrap(), "branch").as_deref(), Some("z9hG4bK1"));
        assert_eq!(header_param(&m.header("f").unwrap(), "tag").as_deref(), Some("a1"));
    }

    #[test]
    fn a_content_length_near_usize_max_is_an_error_not_an_overflow() {
        let raw = b"INVITE sip:x SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\nbody";
        assert!(matches!(stream_frame_len(raw), Err(ParseError::BadContentLength(_))));
        assert!(SipMessage::parse(raw).is_err());
        let mut cut = crate::tap::cut::StreamCutter::new(crate::wire::Proto::Sip);
        let frames = cut.push(raw);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(matches!(frames[0].0, crate::trace::frame::FrameKind::Unparsed(_)));
        assert_eq!(frames[0].1, raw.to_vec(), "every byte is kept");
    }

    #[test]
    fn content_length_bounds_body_and_keeps_trailing() {
        let raw = b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabcXYZ";
        let m = SipMessage::parse(raw).unwrap();
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.body(), b"abc");
        assert_eq!(m.trailing(), b"XYZ");
        let short = b"SIP/2.0 200 OK\r\nContent-Length: 30\r\n\r\nabc";
        assert!(matches!(
            SipMessage::parse(short),
            Err(ParseError::ContentLengthTooLarge { declared: 30, available: 3 })
        ));
    }

    #[test]
    fn stream_framing_waits_for_the_body() {
        let raw = b"MESSAGE sip:b@x SIP/2.0\r\nl: 5\r\n\r\nhel";
        assert_eq!(stream_frame_len(raw).unwrap(), None);
        let mut full = raw.to_vec();
        full.extend_from_slice(b"loNEXT");
        assert_eq!(stream_frame_len(&full).unwrap(), Some(full.len() - 4));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(SipMessage::parse(b"hello").is_err());
        assert!(SipMessage::parse(b"\r\n\r\n").is_err());
        assert!(SipMessage::parse(b"SIP/2.0 99999 X\r\n\r\n").is_err());
    }

    #[test]
    fn lists_split_outside_quotes() {
        let v = split_list(r#""a,b" <sip:x>, <sip:y;a=1,2>"#);
        assert_eq!(v.len(), 2);
        assert_eq!(addr_uri(&v[0]), "sip:x");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// SIP-shaped text: a start line, headers of arbitrary names and values, a body.
        fn sipish() -> impl Strategy<Value = Vec<u8>> {
            let line = "[ -~]{0,40}";
            (line, proptest::collection::vec((r"[A-Za-z-]{1,12}", line), 0..8), prop::bool::ANY, "[ -~\\r\\n]{0,60}")
                .prop_map(|(start, headers, len_ok, body)| {
                    let mut m = format!("{start}\r\n");
                    for (n, v) in headers {
                        m.push_str(&format!("{n}:{v}\r\n"));
                    }
                    if len_ok {
                        m.push_str(&format!("Content-Length: {}\r\n", body.len()));
                    }
                    m.push_str("\r\n");
                    m.push_str(&body);
                    m.into_bytes()
                })
        }

        fn check_lossless(bytes: &[u8]) {
            let Ok(m) = SipMessage::parse(bytes) else { return };
            assert_eq!(m.raw(), bytes, "raw() is the input");
            let mut last = 0;
            for h in m.header_lines() {
                assert!(h.name.start >= last && h.name.end <= h.value.start && h.value.end <= bytes.len());
                last = h.value.end;
            }
            // Body and trailing bytes are the input's tail, in order, with nothing lost.
            let tail = [m.body(), m.trailing()].concat();
            assert!(bytes.ends_with(&tail));
            assert!(last <= bytes.len() - tail.len());
        }

        proptest! {
            #[test]
            fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                check_lossless(&bytes);
                let _ = stream_frame_len(&bytes);
                let _ = crate::torture::classify_bytes(&bytes);
            }

            #[test]
            fn sip_shaped_messages_round_trip_their_bytes(bytes in sipish()) {
                check_lossless(&bytes);
                if let Ok(m) = SipMessage::parse(&bytes) {
                    for h in m.header_lines() {
                        let _ = m.value_of(h);
                    }
                    let _ = (m.top_via(), m.cseq(), m.headers("Via"), crate::sip::validate::problems(&m));
                }
            }
        }
    }
}
