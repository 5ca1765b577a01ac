//! The normalized trace: frames as text, volatile values replaced by stable symbols numbered by
//! first appearance, credentials redacted. This is what is diffed and stored as expected.

use memchr::memmem;
use std::borrow::Cow;
use super::frame::{Direction, Frame, FrameKind, Proto};
use crate::sip::message::SipMessage;
use crate::wire::{self, Carrier};
use crate::xml::{self, Element, Node};
use std::collections::HashMap;
use std::net::SocketAddr;

/// What the normalizer knows about the run: names for addresses and literal replacements.
#[derive(Debug, Clone, Default)]
pub struct NormalizeContext {
    /// Heading of the trace (`scenario on profile`).
    pub title: String,
    /// Actors in declaration order, with the client addresses each uses.
    /// (A TCP and a UDP socket may share a port number, so the protocol is part of the key.)
    pub actors: Vec<(String, Vec<(SocketAddr, Proto)>)>,
    /// Known addresses and the symbol to print for them, in the order they are tried.
    pub addr_names: Vec<AddrName>,
    /// Literal text and its stable replacement (generated user names, secrets).
    pub literals: Vec<(String, String)>,
    /// The reference client's XEP-0115 caps node: a server's caps probes of it are left out.
    pub caps_node: Option<String>,
}

/// An address the normalizer prints as a name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AddrName {
    pub addr: SocketAddr,
    pub proto: Proto,
    pub carrier: Carrier,
    pub name: String,
}

/// A normalized trace, and which frame each of its numbered blocks shows.
#[derive(Debug, Clone)]
pub struct NormalizedTrace {
    pub text: String,
    /// The `seq` of the frame behind block 1, 2, …: the trace groups frames by connection, so
    /// this is not the recorded order.
    pub seqs: Vec<u64>,
}

/// Volatile values seen so far, by class, numbered in order of first appearance.
#[derive(Debug)]
struct Symbols {
    /// `class NUL value` -> index in `names`: one table, looked up through `key` without
    /// allocating.
    seen: HashMap<String, usize, Fx>,
    names: Vec<String>,
    /// How many symbols each class has (a trace uses a dozen classes at most).
    counts: Vec<(&'static str, usize)>,
    key: String,
}

impl Default for Symbols {
    fn default() -> Symbols {
        // Sized for a short trace's symbols, so that most traces never grow the table.
        Symbols { seen: HashMap::with_capacity_and_hasher(16, Fx), names: Vec::with_capacity(16), counts: Vec::with_capacity(16), key: String::new() }
    }
}

impl Symbols {
    fn get(&mut self, class: &'static str, value: &str) -> &str {
        self.key.clear();
        self.key.push_str(class);
        self.key.push('\0');
        self.key.push_str(value);
        // Most values are seen again, and a miss is rare.
        if let Some(&i) = self.seen.get(self.key.as_str()) {
            return &self.names[i];
        }
        let n = match self.counts.iter_mut().find(|(c, _)| *c == class) {
            Some((_, n)) => n,
            None => {
                self.counts.push((class, 0));
                &mut self.counts.last_mut().expect("just pushed").1
            }
        };
        *n += 1;
        // `{class-n}`, built by hand: a trace makes a symbol for most of its volatile values.
        let mut sym = String::with_capacity(class.len() + 8);
        sym.push('{');
        sym.push_str(class);
        sym.push('-');
        push_number(&mut sym, *n, 1);
        sym.push('}');
        self.seen.insert(self.key.clone(), self.names.len());
        self.names.push(sym);
        self.names.last().expect("just pushed")
    }
}

/// A multiply-rotate hash, a word at a time (rustc's FxHash), for the symbol table: its keys
/// are short values out of one trace, hashed on every lookup, where SipHash's defence against
/// chosen keys buys nothing.
#[derive(Clone, Copy, Default, Debug)]
struct Fx;

impl std::hash::BuildHasher for Fx {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        let rest = chunks.remainder();
        last[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59));
    }
    fn write_u8(&mut self, b: u8) {
        self.add(u64::from(b));
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `n` in decimal onto `out`, zero-padded to `width` digits.
fn push_number(out: &mut String, n: usize, width: usize) {
    let mut digits = [0u8; 20];
    let (mut i, mut n) = (digits.len(), n);
    while n > 0 || digits.len() - i < width.max(1) {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend(digits[i..].iter().map(|d| *d as char));
}

struct Normalizer<'a> {
    ctx: &'a NormalizeContext,
    syms: Symbols,
    /// The context's literals, longest first (a longer one may hold a shorter), each with its
    /// searcher built once: every frame's block is searched for every literal.
    literals: Vec<(memmem::Finder<'a>, &'a str)>,
    loopback: &'static memmem::Finder<'static>,
    /// Scratch for [`Normalizer::name_into`]: each needle's next match.
    next: Vec<Option<usize>>,
    /// Scratch for [`Normalizer::final_pass_from`]: the block being named.
    block: String,
}

/// The address form the normalizer names: the harness and its servers are on loopback only.
const LOOPBACK: &str = "127.0.0.1:";

/// The searcher for [`LOOPBACK`], built once per process rather than per trace.
fn loopback_finder() -> &'static memmem::Finder<'static> {
    static FINDER: std::sync::OnceLock<memmem::Finder<'static>> = std::sync::OnceLock::new();
    FINDER.get_or_init(|| memmem::Finder::new(LOOPBACK))
}

impl<'a> Normalizer<'a> {
    fn new(ctx: &'a NormalizeContext) -> Normalizer<'a> {
        let mut literals: Vec<&(String, String)> = ctx.literals.iter().filter(|(k, _)| !k.is_empty()).collect();
        literals.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
        let literals = literals.into_iter().map(|(k, v)| (memmem::Finder::new(k.as_str()), v.as_str())).collect();
        Normalizer { ctx, syms: Symbols::default(), literals, loopback: loopback_finder(), next: Vec::new(), block: String::new() }
    }
}

const DIGEST_SECRETS: [&str; 4] = ["nonce", "cnonce", "response", "opaque"];

impl<'a> Normalizer<'a> {
    /// The name of the loopback port whose digits are `digits`, onto `out`; where the text says
    /// which port space it is in, a name in that space wins over one that only shares the number.
    fn push_addr_name(&mut self, digits: &str, carrier: Option<Carrier>, out: &mut String) {
        if let Ok(port) = digits.parse::<u16>() {
            let a = SocketAddr::from(([127, 0, 0, 1], port));
            let names = &self.ctx.addr_names;
            let same_space = carrier.and_then(|c| names.iter().find(|n| n.addr == a && n.carrier == c));
            if let Some(n) = same_space.or_else(|| names.iter().find(|n| n.addr == a)) {
                for part in ["{", &n.name, "}"] {
                    out.push_str(part);
                }
                return;
            }
        }
        out.push_str(self.syms.get("addr", &[LOOPBACK, digits].concat()));
    }

    /// `text` onto `out` with its literals replaced and its loopback addresses named, in one
    /// pass; false, and nothing written, when it holds neither.
    fn name_into(&mut self, text: &str, out: &mut String) -> bool {
        let b = text.as_bytes();
        // Where each needle (the literals, longest first, then the loopback prefix) next occurs.
        let mut next = std::mem::take(&mut self.next);
        next.clear();
        next.extend(self.literals.iter().map(|(f, _)| f.find(b)));
        next.push(self.loopback.find(b));
        let found = next.iter().any(Option::is_some);
        let mut copied = 0;
        // The earliest match goes first; at one place, the longer literal.
        while let Some((i, at)) = next.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p))).min_by_key(|&(i, p)| (p, i)) {
            out.push_str(&text[copied..at]);
            if let Some((finder, name)) = self.literals.get(i) {
                out.push_str(name);
                copied = at + finder.needle().len();
            } else {
                let after = at + LOOPBACK.len();
                let digits = b[after..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    out.push_str(LOOPBACK);
                } else {
                    self.push_addr_name(&text[after..after + digits], carrier_at(text, at), out);
                }
                copied = after + digits;
            }
            for (j, p) in next.iter_mut().enumerate() {
                if p.is_some_and(|p| p < copied) {
                    let finder = self.literals.get(j).map_or(self.loopback, |(f, _)| f);
                    *p = finder.find(&b[copied..]).map(|q| copied + q);
                }
            }
        }
        if found {
            out.push_str(&text[copied..]);
        }
        self.next = next;
        found
    }

    /// [`Self::final_pass`] over `out` from byte `start` on, in place.
    fn final_pass_from(&mut self, out: &mut String, start: usize) {
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        block.push_str(&out[start..]);
        out.truncate(start);
        if !self.name_into(&block, out) {
            out.push_str(&block);
        }
        self.block = block;
    }

    /// Literals and addresses named; borrowed when neither is there.
    #[cfg(test)]
    fn final_pass<'t>(&mut self, text: &'t str) -> Cow<'t, str> {
        let mut named = String::new();
        if self.name_into(text, &mut named) { Cow::Owned(named) } else { Cow::Borrowed(text) }
    }

    fn label(&self, addr: SocketAddr, proto: Proto) -> &'a str {
        self.ctx.actors.iter().find(|(_, addrs)| addrs.contains(&(addr, proto))).map_or("client", |(n, _)| n.as_str())
    }

    fn sip(&mut self, bytes: &[u8], out: &mut String) {
        let msg = match SipMessage::parse(bytes) {
            Ok(m) => m,
            Err(e) => return line(out, &format!("!! unparsed SIP ({e}): {}", escape_bytes(bytes))),
        };
        // The block is written with its symbols, then the literals and addresses in it are named
        // in one pass over the whole block: a pass per line searched each short line once per
        // needle, about a quarter of the normalizer's time.
        let start = out.len();
        let raw_first = bytes.split(|b| *b == b'\n').next().unwrap_or(b"");
        line(out, wire::text(raw_first).trim_end());
        // A registrar answers each REGISTER on its own, and its To-tags mean nothing beyond the
        // transaction; Kamailio makes them from a 16-bit CRC of the Via, so two transactions'
        // tags collide now and then (seen once: two answers in one scenario with one tag). They
        // are told apart by CSeq.
        let roles: Vec<HeaderRole> = msg.header_lines().iter().map(|h| HeaderRole::of(msg.name_of(h))).collect();
        let first_value = |role| roles.iter().position(|r| *r == role).map(|i| msg.value_text(&msg.header_lines()[i]));
        let register = first_value(HeaderRole::CSeq).and_then(|v| {
            let mut it = v.split_whitespace();
            let n = it.next()?.parse::<u32>().ok()?;
            (it.next()? == "REGISTER").then_some(n)
        });
        let registrar_answer = register.is_some() && msg.status().is_some();
        for (h, &role) in msg.header_lines().iter().zip(&roles) {
            let name = msg.name_of(h);
            let raw_value = msg.value_text(h);
            // A Content-Length that matches the body shows as `{body}`: account names differ in
            // length between backends, so the number would differ while the message is right.
            // A wrong one keeps its number and so shows in the diff.
            let value = if role == HeaderRole::ContentLength && raw_value.trim().parse::<usize>().ok() == Some(msg.body().len()) {
                Cow::Borrowed("{body}")
            } else {
                self.sip_value(name, role, &raw_value, register, registrar_answer)
            };
            out.push_str(INDENT);
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&value);
            out.push('\n');
        }
        let body = wire::text(msg.body());
        if !body.is_empty() {
            line(out, "");
            let sdp = first_value(HeaderRole::ContentType).is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"));
            for l in body.lines() {
                let l = if sdp { self.sdp_line(l) } else { Cow::Borrowed(l) };
                line(out, &l);
            }
        }
        self.final_pass_from(out, start);
        if !msg.trailing().is_empty() {
            line(out, &format!("!! {} bytes after Content-Length", msg.trailing().len()));
        }
    }

    /// SDP's volatile fields: the origin's session id and each stream's port (0, a refusal,
    /// stays as it is).
    fn sdp_line<'l>(&mut self, line: &'l str) -> Cow<'l, str> {
        let class = match line.get(..2) {
            Some("o=") => "sdp-session",
            Some("m=") => "media-port",
            _ => return Cow::Borrowed(line),
        };
        let mut f = line.splitn(3, ' ');
        let (Some(head), Some(field)) = (f.next(), f.next()) else { return Cow::Borrowed(line) };
        if class == "media-port" && field == "0" {
            return Cow::Borrowed(line);
        }
        let sym = self.syms.get(class, field);
        let mut out = String::with_capacity(line.len() + sym.len());
        out.push_str(head);
        out.push(' ');
        out.push_str(sym);
        if let Some(rest) = f.next() {
            out.push(' ');
            out.push_str(rest);
        }
        Cow::Owned(out)
    }

    fn sip_value<'v>(&mut self, name: &str, role: HeaderRole, value: &'v str, register: Option<u32>, registrar_answer: bool) -> Cow<'v, str> {
        use HeaderRole as H;
        match role {
            H::CallId => return Cow::Owned(self.syms.get("call-id", value).to_string()),
            H::ETag => return Cow::Owned(self.syms.get("etag", value).to_string()),
            H::Date => return Cow::Owned(format!("{{{}}}", name.to_ascii_lowercase())),
            _ => {}
        }
        let mut v = Cow::Borrowed(value);
        if matches!(role, H::Via | H::Route) {
            // The port the Via's sender was seen from, in the Via's own transport.
            let carrier = via_carrier(value);
            // Kamailio's rr module puts the From tag into Record-Route as `ftag`; it numbers its
            // TCP connections in its own Via as `i=`: counts, not meaning. All in one pass.
            let names: &[&str] = if role == H::Via { &["branch", "ftag", "rport", "i"] } else { &["branch", "ftag", "rport"] };
            v = self.params(v, names, |s, which, x, out| match which {
                0 => out.push_str(s.syms.get("branch", x)),
                1 => out.push_str(s.syms.get("tag", x)),
                2 if x.is_empty() => {}
                2 => s.push_addr_name(x, carrier, out),
                _ => out.push_str(s.syms.get("conn", x)),
            });
        }
        match role {
            // A proxy may keep its own state in the route URI's user part (ejabberd puts a
            // timestamp and a hash there): opaque to everyone else, so a symbol.
            H::Route => v = self.route_user(&v).into(),
            // A registrar answers with the lifetime left (RFC 3261 §10.3): 3600 or 3599 by
            // chance, so only a removed binding's 0 is kept as a number.
            H::Expires if registrar_answer => return Cow::Owned(lifetime_left(value).to_string()),
            H::Contact if registrar_answer => v = self.param(v, "expires", |_, x, out| out.push_str(lifetime_left(x))),
            // The seconds left run down while the NOTIFY is built: 3600 or 3599 by chance.
            H::SubscriptionState => v = self.param(v, "expires", |_, x, out| out.push_str(lifetime_left(x))),
            H::To if register.is_some() => {
                let cseq = register.unwrap_or_default();
                v = self.param(v, "tag", |s, x, out| out.push_str(s.syms.get("tag", &format!("{x} (REGISTER {cseq})"))));
            }
            H::From | H::To => v = self.param(v, "tag", |s, x, out| out.push_str(s.syms.get("tag", x))),
            H::Auth => v = self.params(v, &DIGEST_SECRETS, |_, _, _, out| out.push_str("{redacted}")),
            _ => {}
        }
        v
    }

    /// `<sip:USER@host;lr>` -> `<sip:{route-N}@host;lr>` for each route in the value.
    fn route_user(&mut self, value: &str) -> String {
        let mut out = String::new();
        let mut rest = value;
        while let Some(at) = rest.find("sip:") {
            out.push_str(&rest[..at + 4]);
            rest = &rest[at + 4..];
            let end = rest.find(['>', ';', ',']).unwrap_or(rest.len());
            match rest[..end].split_once('@') {
                Some((user, _)) if !user.is_empty() => {
                    out.push_str(self.syms.get("route", user));
                    rest = &rest[user.len()..];
                }
                _ => {}
            }
        }
        out.push_str(rest);
        out
    }

    /// Replace the value of every `name=value` parameter (`;`, `,` or space separated);
    /// `text` itself when it holds none.
    fn param<'t>(&mut self, text: Cow<'t, str>, name: &str, mut f: impl FnMut(&mut Self, &str, &mut String)) -> Cow<'t, str> {
        self.params(text, &[name], |s, _, x, out| f(s, x, out))
    }

    /// [`Self::param`] for several names in one pass; `f` is told which name (its index).
    fn params<'t>(&mut self, text: Cow<'t, str>, names: &[&str], mut f: impl FnMut(&mut Self, usize, &str, &mut String)) -> Cow<'t, str> {
        let bytes = text.as_bytes();
        // Which name ends just before the `=` at `eq`, at a boundary, not before `copied`.
        let named = |eq: usize, copied: usize| {
            names.iter().position(|name| {
                let Some(start) = eq.checked_sub(name.len()).filter(|s| *s >= copied) else { return false };
                let at_boundary = start == 0 || matches!(bytes[start - 1], b';' | b',' | b' ' | b'\t');
                // `get`: the name's length before the `=` may start inside a multi-byte
                // character of the wire text (found by fuzzing).
                at_boundary && text.get(start..eq).is_some_and(|k| k.eq_ignore_ascii_case(name))
            })
        };
        // Most values hold no such parameter: say so from the few `=` signs they have.
        let Some((first, which)) = memchr::memchr_iter(b'=', bytes).find_map(|eq| Some((eq, named(eq, 0)?))) else { return text };
        let mut out = String::with_capacity(text.len() + 16);
        // Text up to `copied` is in `out`; the rest goes in as slices between replacements.
        let (mut copied, mut eq, mut which) = (0, first, which);
        loop {
            let vstart = eq + 1;
            // (end of the value, the value, its closing quote if quoted)
            let (vend, inner, close) = if bytes.get(vstart) == Some(&b'"') {
                match text[vstart + 1..].find('"') {
                    Some(p) => (vstart + 2 + p, &text[vstart + 1..vstart + 1 + p], Some("\"")),
                    None => (text.len(), &text[vstart + 1..], Some("")),
                }
            } else {
                let len = text[vstart..].find([';', ',', '>', ' ', '\t']).unwrap_or(text.len() - vstart);
                (vstart + len, &text[vstart..vstart + len], None)
            };
            out.push_str(&text[copied..vstart]);
            if let Some(q) = close {
                out.push('"');
                f(self, which, inner, &mut out);
                out.push_str(q);
            } else {
                f(self, which, inner, &mut out);
            }
            copied = vend;
            let next = memchr::memchr_iter(b'=', &bytes[(eq + 1).max(vend).min(bytes.len())..])
                .map(|p| (eq + 1).max(vend) + p)
                .find_map(|e| Some((e, named(e, copied)?)));
            match next {
                Some((e, w)) => (eq, which) = (e, w),
                None => break,
            }
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    fn jid(&mut self, jid: &str) -> String {
        match jid.split_once('/') {
            Some((bare, res)) => [bare, "/", self.syms.get("resource", res)].concat(),
            None => jid.to_string(),
        }
    }

    fn element(&mut self, el: &mut Element, header: bool) {
        // Attribute order carries no meaning in XML, and Prosody emits it in hash order.
        el.attrs.sort_by(|a, b| a.0.cmp(&b.0));
        let sasl = el.ns.as_deref() == Some("urn:ietf:params:xml:ns:xmpp-sasl");
        let caps = el.ns.as_deref() == Some("http://jabber.org/protocol/caps");
        // Roster versions (RFC 6121 §2.6) count changes an account has seen, across runs.
        let roster = el.ns.as_deref() == Some("jabber:iq:roster");
        // Last activity (XEP-0012) counts seconds: 0 or 1 by chance.
        let last = el.ns.as_deref() == Some("jabber:iq:last");
        for (k, v) in el.attrs.iter_mut() {
            *v = match k.as_str() {
                "id" if header => self.syms.get("stream-id", v).to_string(),
                "id" => self.syms.get("id", v).to_string(),
                "to" | "from" | "jid" => self.jid(v),
                "stamp" => "{stamp}".into(),
                "ver" if caps => self.syms.get("caps-ver", v).to_string(),
                "ver" if roster => "{roster-ver}".into(),
                "seconds" if last => "{seconds}".into(),
                _ => continue,
            };
        }
        let secret = matches!(el.local_name(), "auth" | "challenge" | "response" | "success");
        if sasl && secret && !el.text().trim().is_empty() {
            el.children = vec![Node::Text("{sasl}".into())];
            return;
        }
        if el.local_name() == "jid" {
            let t = el.text();
            el.children = vec![Node::Text(self.jid(t.trim()))];
            return;
        }
        for c in el.children.iter_mut() {
            if let Node::Element(e) = c {
                self.element(e, false);
            }
        }
        if unordered(el) {
            el.children.sort_by_cached_key(|c| match c {
                Node::Element(e) => e.to_xml(),
                Node::Text(t) => t.clone(),
            });
        }
    }

    fn xmpp(&mut self, kind: &FrameKind, bytes: &[u8], out: &mut String) {
        let header = *kind == FrameKind::XmppHeader;
        let scope = if header { xml::Scope::new() } else { xml::client_stream_scope() };
        match xml::parse(bytes, &scope, header) {
            Ok(mut el) => {
                self.element(&mut el, header);
                let text = if header { el.start_tag() } else { el.to_xml() };
                let start = out.len();
                out.push_str(INDENT);
                if wire::text(bytes).trim_start().starts_with("<?xml") {
                    out.push_str("<?xml?>");
                }
                out.push_str(&text);
                out.push('\n');
                self.final_pass_from(out, start);
            }
            Err(e) => line(out, &format!("!! unparsed XML ({e}): {}", escape_bytes(bytes))),
        }
    }

    /// The frame's normalized lines, each indented, onto `out`.
    fn frame(&mut self, f: &Frame, out: &mut String) {
        match &f.kind {
            FrameKind::Sip => self.sip(&f.bytes, out),
            FrameKind::XmppHeader | FrameKind::XmppElement => self.xmpp(&f.kind, &f.bytes, out),
            FrameKind::XmppClose => line(out, "</stream:stream>"),
            FrameKind::Whitespace => line(out, &format!("(keepalive, {} bytes)", f.bytes.len())),
            FrameKind::Opaque => line(out, &format!("(opaque, {} bytes)", f.bytes.len())),
            FrameKind::TlsHandshake => line(out, &format!("(tls {})", String::from_utf8_lossy(&f.bytes))),
            FrameKind::Unparsed(why) => line(out, &format!("!! unparsed ({why}): {}", escape_bytes(&f.bytes))),
            FrameKind::Closed(how) => line(out, &format!("(closed: {how})")),
            FrameKind::Lost { why, .. } => line(out, &format!("!! {why}")),
            FrameKind::Fault(what) => line(out, &format!("({what})")),
        }
    }
}

/// What the normalizer does with a header, told from its name (either form) once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderRole {
    CallId,
    ETag,
    Date,
    Via,
    Route,
    Contact,
    Expires,
    SubscriptionState,
    From,
    To,
    Auth,
    ContentLength,
    ContentType,
    CSeq,
    Other,
}

impl HeaderRole {
    fn of(name: &str) -> HeaderRole {
        let long = crate::sip::message::expand_compact(name.trim());
        let is = |n: &str| long.eq_ignore_ascii_case(n);
        match long.len() {
            2 if is("To") => HeaderRole::To,
            3 if is("Via") => HeaderRole::Via,
            4 if is("From") => HeaderRole::From,
            4 if is("Date") => HeaderRole::Date,
            4 if is("CSeq") => HeaderRole::CSeq,
            5 if is("Route") => HeaderRole::Route,
            7 if is("Call-ID") => HeaderRole::CallId,
            7 if is("Contact") => HeaderRole::Contact,
            7 if is("Expires") => HeaderRole::Expires,
            8 if is("SIP-ETag") => HeaderRole::ETag,
            9 if is("Timestamp") => HeaderRole::Date,
            12 if is("SIP-If-Match") => HeaderRole::ETag,
            12 if is("Record-Route") => HeaderRole::Route,
            12 if is("Content-Type") => HeaderRole::ContentType,
            13 if is("Authorization") => HeaderRole::Auth,
            14 if is("Content-Length") => HeaderRole::ContentLength,
            16 if is("WWW-Authenticate") => HeaderRole::Auth,
            18 if is("Subscription-State") => HeaderRole::SubscriptionState,
            18 if is("Proxy-Authenticate") => HeaderRole::Auth,
            19 if is("Proxy-Authorization") => HeaderRole::Auth,
            _ => HeaderRole::Other,
        }
    }
}

/// A lifetime that runs down while a message is built: only a removal's 0 is kept.
fn lifetime_left(x: &str) -> &str {
    if x.trim() == "0" { x } else { "{expires}" }
}

/// How each line of a frame's block is indented under its arrow.
const INDENT: &str = "    ";

/// One line of a frame's block.
fn line(out: &mut String, text: &str) {
    out.push_str(INDENT);
    out.push_str(text);
    out.push('\n');
}

/// Containers whose children are a set, not a sequence (servers emit them in hash order):
/// stream features (RFC 6120 §4.3.2), SASL mechanisms, disco#info results.
/// The port space a Via value's sent-protocol (`SIP/2.0/UDP`) names.
fn via_carrier(value: &str) -> Option<Carrier> {
    const SENT: &[u8] = b"SIP/2.0/";
    let b = value.as_bytes();
    let at = b.windows(SENT.len()).position(|w| w.eq_ignore_ascii_case(SENT))? + SENT.len();
    let len = b[at..].iter().take_while(|c| c.is_ascii_alphanumeric()).count();
    Some(if b[at..at + len].eq_ignore_ascii_case(b"UDP") { Carrier::Datagram } else { Carrier::Stream })
}

/// Which port space the address at byte `p` of SIP text is in, where the text says: a Via's
/// sent-protocol just before it, or the URI it is the host of (`sips:`, or `transport=`; UDP
/// when a `sip:` URI names none, RFC 3261 §19.1.2). A UDP and a TCP socket may share a port
/// number, and this is what tells their names apart.
fn carrier_at(text: &str, p: usize) -> Option<Carrier> {
    let before = &text[..p];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace() || matches!(c, '<' | '"' | ','))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let token = &before[start..];
    let starts = |s: &str, prefix: &str| s.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix));
    if token.is_empty() {
        let word = before.trim_end().rsplit(|c: char| c.is_whitespace() || c == ',').next()?;
        return if starts(word, "SIP/2.0/") { via_carrier(word) } else { None };
    }
    if starts(token, "sips:") {
        return Some(Carrier::Stream);
    }
    if !starts(token, "sip:") {
        return None;
    }
    let uri = &text[p..];
    let end = uri.find(|c: char| c.is_whitespace() || matches!(c, '>' | '"' | ',' | '?')).unwrap_or(uri.len());
    match uri[..end].split(';').find_map(|kv| starts(kv, "transport=").then(|| &kv["transport=".len()..])) {
        None => Some(Carrier::Datagram),
        Some(t) if t.eq_ignore_ascii_case("udp") => Some(Carrier::Datagram),
        Some(_) => Some(Carrier::Stream),
    }
}

fn unordered(el: &Element) -> bool {
    matches!(
        (el.local_name(), el.ns.as_deref()),
        ("features", Some("http://etherx.jabber.org/streams"))
            | ("mechanisms", Some("urn:ietf:params:xml:ns:xmpp-sasl"))
            | ("query", Some("http://jabber.org/protocol/disco#info"))
    )
}

/// Bytes as printable text, non-printables escaped, for reporting garbage.
pub fn escape_bytes(b: &[u8]) -> String {
    let mut s = String::new();
    for c in b.iter().take(512) {
        match *c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            0x20..=0x7e => s.push(*c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 512 {
        s.push_str(&format!("... ({} bytes)", b.len()));
    }
    s
}

/// What the ordering of a connection's frames needs to know of an XMPP iq.
struct Iq {
    kind: String,
    id: String,
    /// A server's entity-caps probe: a disco#info get to the client's caps node from a JID
    /// without a resource (Prosody: the account's PEP service) or from the client's own full
    /// JID (ejabberd's mod_caps).
    caps_probe: bool,
}

impl Iq {
    fn of(f: &Frame, caps_node: Option<&str>) -> Option<Iq> {
        // A frame may begin with whitespace left between stanzas (a `sends xmpp: |` block).
        let start = f.bytes.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(f.bytes.len());
        if f.proto != Proto::Xmpp || !f.bytes[start..].starts_with(b"<iq") {
            return None;
        }
        let el = xml::parse(&f.bytes, &xml::client_stream_scope(), false).ok()?;
        let kind = el.attr("type")?.to_string();
        let caps_probe = f.dir == Direction::ToClient
            && kind == "get"
            && el.child("query").is_some_and(|q| {
                q.ns.as_deref() == Some("http://jabber.org/protocol/disco#info")
                    && q.attr("node").zip(caps_node).is_some_and(|(n, ours)| n.starts_with(ours))
            })
            && el.attr("from").is_some_and(|f| !f.contains('/') || el.attr("to") == Some(f));
        Some(Iq { kind, id: el.attr("id").unwrap_or("").to_string(), caps_probe })
    }

    fn is_request(&self) -> bool {
        self.kind == "get" || self.kind == "set"
    }

    fn answers(&self, id: &str) -> bool {
        self.id == id && (self.kind == "result" || self.kind == "error")
    }
}

/// Frames of one connection in arrival order, with two exceptions that make the trace the
/// same every run:
/// - servers' caps probes and the client's answers to them are left out (they stay in the raw
///   trace): whether a server asks depends on its cache (earlier scenarios, earlier runs
///   against the same servers), not on the scenario;
/// - an iq result or error follows its request directly: which of two frames crossing in
///   opposite directions the tap reads first is chance (a client's answer to a roster push
///   races the server's next stanzas).
/// - a CANCEL's answer goes before the 487 of the INVITE it cancelled when the server sent
///   it later (see [`cancel_answer_first`]).
fn ordered<'a>(mut frames: Vec<&'a Frame>, caps_node: Option<&str>) -> Vec<&'a Frame> {
    if frames.iter().all(|f| f.proto != Proto::Xmpp) {
        cancel_answer_first(&mut frames);
        return frames;
    }
    let info: Vec<Option<Iq>> = frames.iter().map(|f| Iq::of(f, caps_node)).collect();
    let probes: Vec<&str> = info.iter().flatten().filter(|q| q.caps_probe).map(|q| q.id.as_str()).collect();
    let mut placed: Vec<bool> = frames
        .iter()
        .zip(&info)
        .map(|(f, q)| {
            q.as_ref().is_some_and(|q| {
                q.caps_probe || (f.dir == Direction::ToServer && probes.iter().any(|p| q.answers(p)))
            })
        })
        .collect();
    let mut out = Vec::with_capacity(frames.len());
    for i in 0..frames.len() {
        if placed[i] {
            continue;
        }
        placed[i] = true;
        out.push(frames[i]);
        if let Some(req) = info[i].as_ref().filter(|q| q.is_request()) {
            let answer = (i + 1..frames.len()).find(|&j| {
                !placed[j] && frames[j].dir != frames[i].dir && info[j].as_ref().is_some_and(|q| q.answers(&req.id))
            });
            if let Some(j) = answer {
                placed[j] = true;
                out.push(frames[j]);
            }
        }
    }
    out
}

/// A proxy answers a CANCEL in one transaction and relays the callee's 487 in another (RFC
/// 3261 §16.10), in no fixed order: ejabberd's esip hands the CANCEL to the INVITE's
/// transaction before it starts the CANCEL's own, so under load the 487 can overtake the 200,
/// and even the client's ACK of it (seen in a container run). An answer to a CANCEL that came
/// after the 487 of the INVITE it cancelled (same Call-ID and CSeq number) moves to just
/// before that 487, so that the trace shows the order Kamailio (and ejabberd, unloaded) gives.
fn cancel_answer_first(frames: &mut Vec<&Frame>) {
    // (Call-ID, CSeq number, CSeq method) of a response to the client.
    let answer = |f: &Frame| -> Option<(String, u32, String)> {
        if f.dir != Direction::ToClient || !f.bytes.starts_with(b"SIP/2.0 ") {
            return None;
        }
        let m = SipMessage::parse(&f.bytes).ok()?;
        let (n, method) = m.cseq()?;
        Some((m.header("Call-ID")?, n, method))
    };
    let mut j = 1;
    while j < frames.len() {
        // Only answers that name CANCEL are parsed: this runs over every SIP leg.
        if frames[j].bytes.starts_with(b"SIP/2.0 ") && memmem::find(&frames[j].bytes, b"CANCEL").is_some() {
            if let Some((call, n, _)) = answer(frames[j]).filter(|a| a.2 == "CANCEL") {
                let overtaken = (0..j).rev().find(|&i| {
                    frames[i].bytes.starts_with(b"SIP/2.0 487")
                        && answer(frames[i]).is_some_and(|(c, m, meth)| meth == "INVITE" && c == call && m == n)
                });
                if let Some(i) = overtaken {
                    let f = frames.remove(j);
                    frames.insert(i, f);
                }
            }
        }
        j += 1;
    }
}

/// Render frames as a normalized trace: one section per connection, frames in arrival order
/// (but see [`ordered`]).
pub fn normalize(frames: &[Frame], ctx: &NormalizeContext) -> NormalizedTrace {
    let mut n = Normalizer::new(ctx);
    let actor_rank = |addr: SocketAddr, proto: Proto| {
        ctx.actors.iter().position(|(_, a)| a.contains(&(addr, proto))).unwrap_or(usize::MAX)
    };
    let mut conns: Vec<(usize, u8, u64, u64)> = Vec::new(); // (actor, proto, first seq, conn)
    for f in frames {
        if !conns.iter().any(|c| c.3 == f.conn) {
            let proto = match f.proto { Proto::Sip => 0, Proto::Xmpp => 1 };
            conns.push((actor_rank(f.client, f.proto), proto, f.seq, f.conn));
        }
    }
    conns.sort();
    // The normalized text is about as long as the frames, with an arrow and indents added.
    let mut out = String::with_capacity(64 + frames.iter().map(|f| f.bytes.len() * 9 / 8 + 64).sum::<usize>());
    out.push_str("# sixpac normalized trace: ");
    out.push_str(&ctx.title);
    out.push('\n');
    let mut number = 0;
    let mut seqs = Vec::new();
    for (_, _, _, conn) in conns {
        let mine = frames.iter().filter(|f| f.conn == conn && !matches!(f.kind, FrameKind::Closed(_))).collect();
        let mut it = ordered(mine, ctx.caps_node.as_deref()).into_iter().peekable();
        let Some(first) = it.peek() else { continue };
        let who = n.label(first.client, first.proto);
        // Written straight into the text: a trace has a heading line for every frame.
        for part in ["\n== ", who, " ", first.proto.name(), "/", first.transport.name(), " via ", &first.server, "\n"] {
            out.push_str(part);
        }
        for f in it {
            number += 1;
            seqs.push(f.seq);
            let (from, to) = match f.dir {
                Direction::ToServer => (who, &*f.server),
                Direction::ToClient => (&*f.server, who),
            };
            push_number(&mut out, number, 3);
            for part in [" ", from, " -> ", to] {
                out.push_str(part);
            }
            if let Some(x) = f.fault {
                for part in [" (", &x.name(), " by the tap)"] {
                    out.push_str(part);
                }
            }
            out.push('\n');
            n.frame(f, &mut out);
        }
    }
    NormalizedTrace { text: out, seqs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::frame::{Origin, Recorder, Transport};

    #[test]
    fn volatile_values_become_symbols_and_secrets_vanish() {
        let rec = Recorder::new();
        let alice: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let tap: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let o = Origin { server: "kamailio".into(), proto: Proto::Sip, transport: Transport::Udp, conn: 1, client: alice, tap, upstream: None };
        let reg = b"REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;rport=40009;branch=z9hG4bKabc\r\nFrom: <sip:alice_x1@example.test>;tag=t9\r\ni: cid1\r\nAuthorization: Digest username=\"alice_x1\", nonce=\"N\", response=\"R\", nc=00000001\r\nContent-Length: 0\r\n\r\n";
        rec.record(&o, Direction::ToServer, FrameKind::Sip, reg.to_vec());
        let ox = Origin { server: "prosody".into(), proto: Proto::Xmpp, transport: Transport::Tcp, conn: 2, client: alice, tap, upstream: None };
        rec.record(&ox, Direction::ToServer, FrameKind::XmppElement, b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>c2VjcmV0</auth>".to_vec());
        rec.record(&ox, Direction::ToClient, FrameKind::XmppElement, b"<message id='a1' to='alice_x1@example.test/res9'><body>hi</body></message>".to_vec());
        let ctx = NormalizeContext {
            title: "t".into(),
            actors: vec![("alice".into(), vec![(alice, Proto::Sip)])],
            addr_names: vec![AddrName { addr: alice, proto: Proto::Sip, carrier: Carrier::Datagram, name: "alice.sip".into() }],
            literals: vec![("alice_x1".into(), "alice".into())],
            caps_node: None,
        };
        let t = normalize(&rec.frames_for(&[alice]), &ctx).text;
        assert!(t.contains("Via: SIP/2.0/UDP {alice.sip};rport={addr-1};branch={branch-1}"), "{t}");
        assert!(t.contains("From: <sip:alice@example.test>;tag={tag-1}"), "{t}");
        assert!(t.contains("i: {call-id-1}"), "{t}");
        assert!(t.contains("nonce=\"{redacted}\", response=\"{redacted}\", nc=00000001"), "{t}");
        assert!(t.contains(">{sasl}</auth>"), "{t}");
        assert!(t.contains("<message id='{id-1}' to='alice@example.test/{resource-1}'>"), "{t}");
        // attributes sorted, unordered containers sorted
        let rec2 = Recorder::new();
        rec2.record(&ox, Direction::ToClient, FrameKind::XmppElement, b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'><z/><a y='1' b='2'/></stream:features>".to_vec());
        let t2 = normalize(&rec2.frames_for(&[alice]), &ctx).text;
        assert!(t2.contains("<a b='2' y='1'/><z/></stream:features>"), "{t2}");
        assert!(!t.contains("c2VjcmV0") && !t.contains("t9"), "{t}");
    }

    fn xmpp_frame(seq: u64, dir: Direction, text: &str) -> Frame {
        Frame::for_test(seq, 1, Proto::Xmpp, dir, text)
    }

    #[test]
    fn caps_probes_leave_and_answers_follow_questions() {
        let node = "https://example.test/caps";
        let frames = [
            xmpp_frame(1, Direction::ToClient, "<iq type='set' id='push'><query xmlns='jabber:iq:roster'/></iq>"),
            xmpp_frame(2, Direction::ToClient, "<presence from='b@x/r'/>"),
            xmpp_frame(3, Direction::ToServer, "<iq type='result' id='push'/>"),
            xmpp_frame(4, Direction::ToClient, &format!("<iq type='get' id='probe' from='a@x' to='a@x/r'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}#v'/></iq>")),
            xmpp_frame(5, Direction::ToServer, "<iq type='result' id='probe' to='a@x'/>"),
            xmpp_frame(6, Direction::ToClient, &format!("<iq type='get' id='peer' from='b@x/r'><query xmlns='http://jabber.org/protocol/disco#info' node='{node}#v'/></iq>")),
        ];
        let kept = ordered(frames.iter().collect(), Some(node));
        let seqs: Vec<u64> = kept.iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![1, 3, 2, 6], "the probe and its answer leave; a peer's disco#info stays");
    }

    #[test]
    fn an_answer_that_begins_with_whitespace_still_follows_its_question() {
        let frames = [
            xmpp_frame(1, Direction::ToServer, "<iq type='get' id='q1'><ping xmlns='urn:xmpp:ping'/></iq>"),
            xmpp_frame(2, Direction::ToClient, "<presence from='b@x/r'/>"),
            xmpp_frame(3, Direction::ToClient, "\n  <iq type='result' id='q1'/>"),
        ];
        let seqs: Vec<u64> = ordered(frames.iter().collect(), None).iter().map(|f| f.seq).collect();
        assert_eq!(seqs, vec![1, 3, 2]);
    }

    #[test]
    fn a_registrars_lifetime_left_is_not_compared_but_a_removal_is() {
        let rec = Recorder::new();
        let o = Origin {
            server: "kamailio".into(), proto: Proto::Sip, transport: Transport::Udp, conn: 1,
            client: "127.0.0.1:4000".parse().unwrap(), tap: "127.0.0.1:5060".parse().unwrap(), upstream: None,
        };
        let msg = |first: &str, expires: &str| {
            format!("{first}\r\nTo: <sip:a@d>\r\nCall-ID: c\r\nCSeq: 2 REGISTER\r\nContact: <sip:a@h>;expires={expires}\r\nContent-Length: 0\r\n\r\n").into_bytes()
        };
        rec.record(&o, Direction::ToServer, FrameKind::Sip, msg("REGISTER sip:d SIP/2.0", "3600"));
        rec.record(&o, Direction::ToClient, FrameKind::Sip, msg("SIP/2.0 200 OK", "3599"));
        rec.record(&o, Direction::ToClient, FrameKind::Sip, msg("SIP/2.0 200 OK", "0"));
        let t = normalize(&rec.frames_for(&[o.client]), &NormalizeContext::default()).text;
        let contacts: Vec<&str> = t.lines().filter(|l| l.contains("Contact:")).collect();
        assert_eq!(contacts, ["    Contact: <sip:a@h>;expires=3600", "    Contact: <sip:a@h>;expires={expires}", "    Contact: <sip:a@h>;expires=0"], "{t}");
    }

    #[test]
    fn registrar_to_tags_are_told_apart_by_cseq_even_when_they_collide() {
        let answer = |cseq: u32| {
            format!("SIP/2.0 200 OK\r\nFrom: <sip:a@d>;tag=f\r\nTo: <sip:a@d>;tag=same.4e51\r\nCall-ID: c\r\nCSeq: {cseq} REGISTER\r\nContent-Length: 0\r\n\r\n")
        };
        let rec = Recorder::new();
        let o = Origin {
            server: "kamailio".into(), proto: Proto::Sip, transport: Transport::Udp, conn: 1,
            client: "127.0.0.1:4000".parse().unwrap(), tap: "127.0.0.1:5060".parse().unwrap(), upstream: None,
        };
        for cseq in [2, 2, 4] {
            rec.record(&o, Direction::ToClient, FrameKind::Sip, answer(cseq).into_bytes());
        }
        let t = normalize(&rec.frames_for(&[o.client]), &NormalizeContext::default()).text;
        let tags: Vec<&str> = t.lines().filter(|l| l.contains("To: ")).collect();
        assert_eq!(tags, ["    To: <sip:a@d>;tag={tag-2}", "    To: <sip:a@d>;tag={tag-2}", "    To: <sip:a@d>;tag={tag-3}"], "{t}");
    }

    #[test]
    fn a_tcp_and_a_udp_socket_with_one_port_number_keep_their_own_names() {
        let port: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let name = |carrier, name: &str| AddrName { addr: port, proto: Proto::Sip, carrier, name: name.into() };
        // The UDP leg is tried first, as the runner orders legs before taps.
        let ctx = NormalizeContext {
            addr_names: vec![name(Carrier::Datagram, "alice.sip"), name(Carrier::Stream, "kamailio.tap")],
            ..Default::default()
        };
        let mut n = Normalizer::new(&ctx);
        let text = "SIP/2.0/TCP 127.0.0.1:40000;branch=x, SIP/2.0/UDP 127.0.0.1:40000 <sip:127.0.0.1:40000;transport=TCP;lr> \
                    <sip:bob@127.0.0.1:40000> <sips:127.0.0.1:40000> sip:127.0.0.1:40000;transport=udp hello 127.0.0.1:40000";
        assert_eq!(
            n.final_pass(text),
            "SIP/2.0/TCP {kamailio.tap};branch=x, SIP/2.0/UDP {alice.sip} <sip:{kamailio.tap};transport=TCP;lr> \
                    <sip:bob@{alice.sip}> <sips:{kamailio.tap}> sip:{alice.sip};transport=udp hello {alice.sip}"
        );
        let via = n.sip_value("Via", HeaderRole::Via, "SIP/2.0/TCP 127.0.0.1:1;rport=40000;branch=b", None, false);
        assert!(via.contains("rport={kamailio.tap}"), "{via}");
    }

    #[test]
    fn numbers_are_padded_to_their_width() {
        let mut s = String::new();
        for (n, w) in [(0, 1), (7, 3), (42, 3), (1234, 3), (10, 1)] {
            push_number(&mut s, n, w);
            s.push(' ');
        }
        assert_eq!(s, "0 007 042 1234 10 ");
    }

    #[test]
    fn parameters_are_found_in_any_text_without_slicing_a_character() {
        let ctx = NormalizeContext::default();
        let mut n = Normalizer::new(&ctx);
        // Found by fuzzing: `branch`'s length from `b` ends inside U+FEFF.
        assert_eq!(n.param(Cow::Borrowed(";bran\u{feff}h=1"), "branch", |_, _, out| out.push('X')), ";bran\u{feff}h=1");
        assert_eq!(n.param(Cow::Borrowed("a;branch=\"q\u{e9}"), "branch", |_, v, out| out.push_str(&format!("<{v}>"))), "a;branch=\"<q\u{e9}>", "an unclosed quote is not closed");
        assert_eq!(n.param(Cow::Borrowed("a;branch=\"q\";b"), "branch", |_, v, out| out.push_str(&format!("<{v}>"))), "a;branch=\"<q>\";b");
    }

    #[test]
    fn a_cancels_answer_goes_before_the_487_it_overtook_and_nothing_else_moves() {
        let alice: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let o = Origin { server: "ejabberd".into(), proto: Proto::Sip, transport: Transport::Udp, conn: 1, client: alice, tap: "127.0.0.1:5060".parse().unwrap(), upstream: None };
        let answer = |status: &str, call: &str, cseq: &str| format!("SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 127.0.0.1:40001;branch=z9hG4bKb\r\nCall-ID: {call}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n").into_bytes();
        let order = |answers: &[Vec<u8>]| {
            let rec = Recorder::new();
            for a in answers {
                rec.record(&o, Direction::ToClient, FrameKind::Sip, a.clone());
            }
            let frames = rec.frames_for(&[alice]);
            let text = normalize(&frames, &NormalizeContext::default()).text;
            text.lines().filter(|l| l.starts_with("    SIP/2.0") || l.starts_with("    CSeq")).map(|l| l.trim().to_string()).collect::<Vec<_>>().join(" | ")
        };
        let t487 = answer("487 Request Terminated", "c1", "2 INVITE");
        let ok_cancel = answer("200 OK", "c1", "2 CANCEL");
        let canonical = "SIP/2.0 200 OK | CSeq: 2 CANCEL | SIP/2.0 487 Request Terminated | CSeq: 2 INVITE";
        assert_eq!(order(&[t487.clone(), ok_cancel.clone()]), canonical);
        assert_eq!(order(&[ok_cancel.clone(), t487.clone()]), canonical);
        // Later than the client's ACK of the 487 (which the trace's other direction holds).
        let rec = Recorder::new();
        rec.record(&o, Direction::ToClient, FrameKind::Sip, t487.clone());
        rec.record(&o, Direction::ToServer, FrameKind::Sip, b"ACK sip:b SIP/2.0\r\nCall-ID: c1\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n".to_vec());
        rec.record(&o, Direction::ToClient, FrameKind::Sip, ok_cancel.clone());
        let text = normalize(&rec.frames_for(&[alice]), &NormalizeContext::default()).text;
        let starts: Vec<&str> = text.lines().filter(|l| l.starts_with("    SIP/2.0") || l.starts_with("    ACK")).map(str::trim).collect();
        assert_eq!(starts, ["SIP/2.0 200 OK", "SIP/2.0 487 Request Terminated", "ACK sip:b SIP/2.0"], "{text}");
        // Another call's, or another CSeq's, CANCEL answer stays where it came.
        let other_call = answer("200 OK", "c2", "2 CANCEL");
        assert!(order(&[t487.clone(), other_call]).starts_with("SIP/2.0 487"));
        let other_cseq = answer("200 OK", "c1", "3 CANCEL");
        assert!(order(&[t487, other_cseq]).starts_with("SIP/2.0 487"));
    }
}
