//! Cuts an XMPP byte stream into frames: the stream header, each top-level element, the close.
//!
//! Sans-IO: feed bytes with [`XmppFramer::push`], pull frames with [`XmppFramer::next_frame`].
//! Every byte pushed comes out in exactly one frame, in order, so concatenating the frames gives
//! the stream back; bytes that are not XML are returned as `Unparsed` with the reason.

/// What a frame holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmppFrameKind {
    /// `<?xml?>` (optional) plus the `<stream:stream ...>` start tag.
    StreamHeader,
    /// One complete top-level element (a stanza, features, SASL, ...).
    Element,
    /// `</stream:stream>`.
    StreamClose,
    /// Whitespace left at the end (keepalives with nothing after them).
    Whitespace,
    /// Bytes after STARTTLS, which this layer cannot read.
    Opaque,
    /// Bytes that are not a frame, with the reason.
    Unparsed(String),
}

/// One frame's kind and exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppRawFrame {
    pub kind: XmppFrameKind,
    pub bytes: Vec<u8>,
}

/// Largest frame the framer buffers before giving up on it.
pub const MAX_FRAME: usize = 1 << 20;

/// The framer's state across pushes.
#[derive(Debug, Default)]
pub struct XmppFramer {
    buf: Vec<u8>,
    /// Where the bytes not yet framed begin in `buf`: frames are taken from the front without
    /// moving the rest, which is compacted only when more bytes come.
    start: usize,
    in_stream: bool,
    opaque: bool,
}

enum Scan {
    Incomplete,
    Frame(XmppFrameKind, usize),
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    let (first, rest) = needle.split_first()?;
    let mut at = from;
    loop {
        let p = at + hay.get(at..)?.iter().position(|b| b == first)?;
        if hay[p + 1..].starts_with(rest) {
            return Some(p);
        }
        at = p + 1;
    }
}

/// End of a start or end tag beginning at `lt`: index of its `>`, honouring quoted values.
fn tag_end(buf: &[u8], lt: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, b) in buf.iter().enumerate().skip(lt + 1) {
        match (quote, *b) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"') | (None, b'\'') => quote = Some(*b),
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

impl XmppFramer {
    /// A framer at the start of a stream.
    pub fn new() -> XmppFramer {
        XmppFramer::default()
    }

    /// Add received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Everything buffered and not yet framed, handed out whole.
    fn take_rest(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        rest
    }

    /// After `<proceed/>` the rest is TLS: pass it through as opaque frames.
    pub fn set_opaque(&mut self) {
        self.opaque = true;
    }

    /// A new stream starts on the same connection (after SASL success or TLS).
    pub fn restart(&mut self) {
        self.in_stream = false;
    }

    /// The next complete frame, if any.
    pub fn next_frame(&mut self) -> Option<XmppRawFrame> {
        if self.start == self.buf.len() {
            return None;
        }
        if self.opaque {
            let bytes = self.take_rest();
            return Some(XmppRawFrame { kind: XmppFrameKind::Opaque, bytes });
        }
        match self.scan() {
            Scan::Incomplete if self.buf.len() - self.start > MAX_FRAME => {
                let bytes = self.take_rest();
                let reason = format!("no complete frame within {MAX_FRAME} bytes");
                Some(XmppRawFrame { kind: XmppFrameKind::Unparsed(reason), bytes })
            }
            Scan::Incomplete => None,
            Scan::Frame(kind, len) => {
                let bytes = self.buf[self.start..self.start + len].to_vec();
                self.start += len;
                match kind {
                    XmppFrameKind::StreamHeader => self.in_stream = true,
                    XmppFrameKind::StreamClose => self.in_stream = false,
                    _ => {}
                }
                Some(XmppRawFrame { kind, bytes })
            }
        }
    }

    /// The connection closed: whatever is buffered becomes a last frame.
    pub fn finish(&mut self) -> Option<XmppRawFrame> {
        if self.start == self.buf.len() {
            return None;
        }
        let bytes = self.take_rest();
        let kind = if bytes.iter().all(u8::is_ascii_whitespace) {
            XmppFrameKind::Whitespace
        } else {
            XmppFrameKind::Unparsed("connection closed inside a frame".into())
        };
        Some(XmppRawFrame { kind, bytes })
    }

    fn scan(&self) -> Scan {
        let buf = &self.buf[self.start..];
        let mut i = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if i == buf.len() {
            return Scan::Incomplete;
        }
        if buf[i] != b'<' {
            let end = find(buf, i, b"<").unwrap_or(buf.len());
            let kind = XmppFrameKind::Unparsed("character data at stream level".into());
            return Scan::Frame(kind, end);
        }
        let mut depth = 0usize;
        loop {
            let Some(lt) = find(buf, i, b"<") else {
                return Scan::Incomplete;
            };
            let rest = &buf[lt..];
            if rest.len() < 2 {
                return Scan::Incomplete;
            }
            if rest.starts_with(b"<?") {
                let Some(end) = find(buf, lt, b"?>") else { return Scan::Incomplete };
                i = end + 2;
                continue;
            }
            if rest.starts_with(b"<!--") {
                let Some(end) = find(buf, lt, b"-->") else { return Scan::Incomplete };
                i = end + 3;
                continue;
            }
            if rest.starts_with(b"<![CDATA[") && depth > 0 {
                let Some(end) = find(buf, lt, b"]]>") else { return Scan::Incomplete };
                i = end + 3;
                continue;
            }
            if rest.starts_with(b"<!") {
                if rest.len() < 9 && b"<![CDATA[".starts_with(rest) {
                    return Scan::Incomplete;
                }
                let end = tag_end(buf, lt).map(|e| e + 1).unwrap_or(buf.len());
                let kind = XmppFrameKind::Unparsed("markup declaration not allowed in XMPP".into());
                return Scan::Frame(kind, end);
            }
            let Some(gt) = tag_end(buf, lt) else { return Scan::Incomplete };
            if rest[1] == b'/' {
                if depth == 0 {
                    let kind = if self.in_stream {
                        XmppFrameKind::StreamClose
                    } else {
                        XmppFrameKind::Unparsed("end tag before any stream header".into())
                    };
                    return Scan::Frame(kind, gt + 1);
                }
                depth -= 1;
                if depth == 0 {
                    return Scan::Frame(XmppFrameKind::Element, gt + 1);
                }
            } else {
                let self_closing = buf[gt - 1] == b'/';
                let name_len = buf[lt + 1..gt]
                    .iter()
                    .position(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>')
                    .unwrap_or(gt - lt - 1);
                let name = &buf[lt + 1..lt + 1 + name_len];
                // A stream header may come again on the same connection (after SASL or TLS).
                let is_stream = name == b"stream" || name.ends_with(b":stream");
                if depth == 0 && (!self.in_stream || is_stream) && !self_closing {
                    return Scan::Frame(XmppFrameKind::StreamHeader, gt + 1);
                }
                if self_closing && depth == 0 {
                    return Scan::Frame(XmppFrameKind::Element, gt + 1);
                }
                if !self_closing {
                    depth += 1;
                }
            }
            i = gt + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(framer: &mut XmppFramer) -> Vec<XmppRawFrame> {
        std::iter::from_fn(|| framer.next_frame()).collect()
    }

    #[test]
    fn cuts_header_elements_and_close_even_across_pushes() {
        let stream = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' a='>'>\
            <stream:features><mechanisms><mechanism>PLAIN</mechanism></mechanisms></stream:features> \
            <presence/><message><body><![CDATA[</message>]]></body></message>\
            <?xml version='1.0'?><stream:stream xmlns='jabber:client'><a/></stream:stream>";
        for chunk in [1usize, 3, 7, 1000] {
            let mut f = XmppFramer::new();
            let mut frames = Vec::new();
            for c in stream.as_bytes().chunks(chunk) {
                f.push(c);
                frames.extend(all(&mut f));
            }
            let kinds: Vec<_> = frames.iter().map(|f| f.kind.clone()).collect();
            assert_eq!(
                kinds,
                vec![
                    XmppFrameKind::StreamHeader,
                    XmppFrameKind::Element,
                    XmppFrameKind::Element,
                    XmppFrameKind::Element,
                    XmppFrameKind::StreamHeader,
                    XmppFrameKind::Element,
                    XmppFrameKind::StreamClose
                ],
                "chunk size {chunk}"
            );
            let joined: Vec<u8> = frames.into_iter().flat_map(|f| f.bytes).collect();
            assert_eq!(joined, stream.as_bytes());
        }
    }

    #[test]
    fn garbage_is_kept_and_flagged() {
        let mut f = XmppFramer::new();
        f.push(b"HELLO<stream:stream>junk<a/>");
        let frames = all(&mut f);
        assert!(matches!(frames[0].kind, XmppFrameKind::Unparsed(_)));
        assert_eq!(frames[0].bytes, b"HELLO");
        assert_eq!(frames[1].kind, XmppFrameKind::StreamHeader);
        assert!(matches!(frames[2].kind, XmppFrameKind::Unparsed(_)));
        assert_eq!(frames[3].bytes, b"<a/>");
        f.push(b"<unfinished");
        assert!(f.next_frame().is_none());
        assert!(matches!(f.finish().unwrap().kind, XmppFrameKind::Unparsed(_)));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// XML-ish bytes: tags, text, quotes and stray brackets, cut into random chunks.
        fn xmlish() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                prop_oneof![
                    Just("<stream:stream xmlns='jabber:client'>".to_string()),
                    Just("<message to='a'><body>x</body></message>".to_string()),
                    Just("<presence/>".to_string()),
                    Just("</stream:stream>".to_string()),
                    "[<>/a-z'\" =]{0,12}",
                ],
                0..12,
            )
            .prop_map(|parts| parts.concat().into_bytes())
        }

        fn frames_cover(bytes: &[u8], cuts: &[usize]) {
            let mut f = XmppFramer::new();
            let mut out = Vec::new();
            let mut at = 0;
            for c in cuts.iter().map(|c| c % (bytes.len() + 1)).chain([bytes.len()]) {
                let c = c.max(at);
                f.push(&bytes[at..c]);
                at = c;
                while let Some(fr) = f.next_frame() {
                    out.extend(fr.bytes);
                }
            }
            if let Some(fr) = f.finish() {
                out.extend(fr.bytes);
            }
            assert_eq!(out, bytes, "every byte lands in exactly one frame, in order");
        }

        proptest! {
            #[test]
            fn every_byte_ends_up_in_one_frame(bytes in xmlish(), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
                let mut cuts = cuts;
                cuts.sort_unstable();
                frames_cover(&bytes, &cuts);
            }

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                frames_cover(&bytes, &[]);
            }
        }
    }
}
