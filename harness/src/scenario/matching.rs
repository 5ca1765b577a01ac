//! The one matcher engine for both protocols: partial XML matching (scansion's rule) and SIP
//! start-line + header matching. `{any}` matches any value.

use crate::sip::message::{SipMessage, StartLine};
use crate::xml::{self, Element};

/// The wildcard token.
pub const ANY: &str = "{any}";

/// Does `text` match `pattern`, where `{any}` stands for any run of characters?
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split(ANY).collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(p) => rest = &rest[p + mid.len()..],
            None => return false,
        }
    }
    true
}

/// The pattern attribute that makes an element strict (`sixpac:strict='true'`; scansion's
/// `scansion:strict` means the same): no attribute, child or text beyond the pattern's, and
/// children in the pattern's order. It holds for the element's descendants too, until one says
/// `sixpac:strict='false'`.
pub const STRICT: [&str; 2] = ["sixpac:strict", "scansion:strict"];

/// Whether an attribute is a directive to the matcher (`sixpac:…`, `scansion:…`) rather than
/// one the frame must carry.
fn is_directive(name: &str) -> bool {
    name.starts_with("sixpac:") || name.starts_with("scansion:")
}

/// Whether an attribute is a namespace declaration, which no match compares.
fn is_declaration(name: &str) -> bool {
    name == "xmlns" || name.starts_with("xmlns:")
}

/// Expected attributes and children present; extras ignored and order free unless the pattern
/// says `sixpac:strict='true'`.
pub fn match_xml(expected: &Element, actual: &Element) -> Result<(), String> {
    match_xml_in(expected, actual, false)
}

fn match_xml_in(expected: &Element, actual: &Element, strict_above: bool) -> Result<(), String> {
    let strict = match STRICT.iter().find_map(|k| expected.attr(k)) {
        Some(v) => v == "true",
        None => strict_above,
    };
    if expected.local_name() != actual.local_name() {
        return Err(format!("expected <{}>, got <{}>", expected.name, actual.name));
    }
    if let (Some(e), Some(a)) = (&expected.ns, &actual.ns) {
        if e != a && e != ANY {
            return Err(format!("<{}> namespace: expected {e}, got {a}", expected.name));
        }
    }
    for (k, v) in &expected.attrs {
        if is_declaration(k) || is_directive(k) {
            continue;
        }
        match actual.attr(k) {
            None => return Err(format!("<{}> lacks attribute {k}='{v}'", actual.name)),
            Some(got) if !glob(v, got) => {
                return Err(format!("<{}> attribute {k}: expected '{v}', got '{got}'", actual.name))
            }
            Some(_) => {}
        }
    }
    if strict {
        if let Some((k, v)) = actual.attrs.iter().find(|(k, _)| !is_declaration(k) && expected.attr(k).is_none()) {
            return Err(format!("<{}> has attribute {k}='{v}', which the strict pattern does not", actual.name));
        }
    }
    let want = expected.text();
    let want = want.trim();
    if !want.is_empty() || strict {
        let got = actual.text();
        if !glob(want, got.trim()) {
            return Err(format!("<{}> text: expected {want:?}, got {:?}", actual.name, got.trim()));
        }
    }
    let exp: Vec<&Element> = expected.elements().collect();
    let act: Vec<&Element> = actual.elements().collect();
    if strict {
        if exp.len() != act.len() {
            let names = |v: &[&Element]| v.iter().map(|e| format!("<{}>", e.name)).collect::<Vec<_>>().join(" ");
            return Err(format!("in <{}>: the strict pattern has children {}, the frame {}", actual.name, names(&exp), names(&act)));
        }
        return exp.iter().zip(&act).try_for_each(|(e, a)| match_xml_in(e, a, true)).map_err(|e| format!("in <{}>: {e}", actual.name));
    }
    let mut used = vec![false; act.len()];
    assign(&exp, &act, &mut used).map_err(|e| format!("in <{}>: {e}", actual.name))
}

/// Match each expected child to a distinct actual child, backtracking on conflicts.
fn assign(exp: &[&Element], act: &[&Element], used: &mut [bool]) -> Result<(), String> {
    let Some((first, rest)) = exp.split_first() else { return Ok(()) };
    let mut last_err = format!("no child <{}>", first.name);
    for (i, a) in act.iter().enumerate() {
        if used[i] {
            continue;
        }
        match match_xml_in(first, a, false) {
            Ok(()) => {
                used[i] = true;
                match assign(rest, act, used) {
                    Ok(()) => return Ok(()),
                    // This child fits; what is wrong is further on.
                    Err(e) => last_err = e,
                }
                used[i] = false;
            }
            Err(e) if a.local_name() == first.local_name() && last_err.starts_with("no child") => last_err = e,
            Err(_) => {}
        }
    }
    Err(last_err)
}

/// Parse an XML pattern from scenario text (stream scope, so `<message>` is jabber:client).
/// An element named `{any}` is refused here, with why: names are compared as written, so the
/// pattern could never match (and `{` is no name character, so the XML reader refuses it too).
pub fn parse_xml_pattern(text: &str) -> Result<Element, String> {
    xml::parse(text.trim().as_bytes(), &xml::client_stream_scope(), false).map_err(|e| match braced_element_name(text) {
        Some(name) => format!("<{name}>: element names are matched as written, so `{{any}}` cannot stand for one"),
        None => e.to_string(),
    })
}

/// The first element name in `text` that holds a `{…}` wildcard.
fn braced_element_name(text: &str) -> Option<&str> {
    text.match_indices('<').find_map(|(i, _)| {
        let name = text[i + 1..].split(|c: char| c.is_whitespace() || c == '/' || c == '>').next()?;
        name.contains('{').then_some(name)
    })
}

/// What makes an XML pattern one that cannot be judged: a prefix no `xmlns:` binds (its
/// namespace would be unknown and so unchecked), and a directive attribute (`sixpac:…`,
/// `scansion:…`) the matcher does not know, which would otherwise be taken as one the frame
/// must carry.
pub fn lint_xml_pattern(el: &Element) -> Result<(), String> {
    lint_in(el, &[])
}

fn lint_in(el: &Element, declared_above: &[&str]) -> Result<(), String> {
    let mut declared: Vec<&str> = declared_above.to_vec();
    declared.extend(el.attrs.iter().filter_map(|(k, _)| k.strip_prefix("xmlns:")));
    if let Some((prefix, _)) = el.name.split_once(':') {
        if el.ns.is_none() {
            return Err(format!("<{}>: the prefix `{prefix}` is not bound by any xmlns:{prefix}", el.name));
        }
    }
    for (k, v) in el.attrs.iter().filter(|(k, _)| is_directive(k)) {
        if !STRICT.contains(&k.as_str()) {
            return Err(format!("<{}>: unknown directive {k}; the matcher knows {}", el.name, STRICT.join(", ")));
        }
        if v != "true" && v != "false" {
            return Err(format!("<{}>: {k}='{v}' must be 'true' or 'false'", el.name));
        }
    }
    for (k, _) in el.attrs.iter().filter(|(k, _)| !is_directive(k) && !is_declaration(k)) {
        if let Some((prefix, _)) = k.split_once(':').filter(|(p, _)| *p != "xml" && !declared.contains(p)) {
            return Err(format!("<{}>: attribute {k}: the prefix `{prefix}` is not bound by any xmlns:{prefix}", el.name));
        }
    }
    el.elements().try_for_each(|c| lint_in(c, &declared))
}

/// What makes a SIP pattern unreadable: a header line (before the blank line) with no colon,
/// other than `!Name`, which says the header must be absent.
pub fn lint_sip_pattern(text: &str) -> Result<(), String> {
    let text = text.replace("\r\n", "\n");
    let text = text.trim_start_matches('\n');
    let head = text.split_once("\n\n").map_or(text, |(h, _)| h);
    let start = head.lines().next().unwrap_or("").trim();
    let mut words = start.split_whitespace();
    match (words.next(), words.next()) {
        // A response: the status is three digits (RFC 3261 §7.2), or a wildcard.
        (Some(v), Some(code)) if v.starts_with("SIP/") => {
            if code != ANY && !(code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit() || b == b'{')) && !code.contains(ANY) {
                return Err(format!("start line {start:?}: a status is three digits, so `{code}` can never match"));
            }
        }
        // A request: the method is a token (RFC 3261 §25.1), compared as written.
        (Some(m), _) if !m.contains('{') && !m.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)) => {
            return Err(format!("start line {start:?}: `{m}` is no SIP method, so it can never match"));
        }
        _ => {}
    }
    let mut absent: Vec<String> = Vec::new();
    let mut present: Vec<String> = Vec::new();
    for line in head.lines().skip(1).map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(name) = line.strip_prefix('!') {
            absent.push(crate::sip::message::expand_compact(name.trim()).to_ascii_lowercase());
        } else if let Some((name, _)) = line.split_once(':') {
            present.push(crate::sip::message::expand_compact(name.trim()).to_ascii_lowercase());
        } else {
            return Err(format!("header line {line:?} has no `Name: value` colon (write `!{line}` for an absent header)"));
        }
    }
    if let Some(both) = absent.iter().find(|a| present.contains(a)) {
        return Err(format!("the header {both} must be both absent and present, so the pattern can never match"));
    }
    Ok(())
}

/// A SIP pattern: start line, listed headers, optional body.
pub fn match_sip(pattern: &str, actual: &SipMessage) -> Result<(), String> {
    let pattern = pattern.replace("\r\n", "\n");
    let pattern = pattern.trim_start_matches('\n');
    let (head, body) = pattern.split_once("\n\n").unwrap_or((pattern, ""));
    let mut lines = head.lines();
    let start = lines.next().unwrap_or("").trim();
    match_start_line(start, actual.start_line())?;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        // `!Name` says the header must be absent (RFC 3428: no Contact in MESSAGE).
        if let Some(name) = line.trim().strip_prefix('!') {
            if !actual.headers(name.trim()).is_empty() {
                return Err(format!("{} header present, expected none", name.trim()));
            }
            continue;
        }
        let (name, want) = line
            .split_once(':')
            .ok_or_else(|| format!("pattern line {line:?} is not `Header: value`"))?;
        let want = want.trim();
        let got = actual.headers(name);
        if got.is_empty() {
            return Err(format!("no {} header", name.trim()));
        }
        if !got.iter().any(|g| glob(want, g.trim())) {
            return Err(format!("{}: expected {want:?}, got {:?}", name.trim(), got));
        }
    }
    let body = body.trim();
    if !body.is_empty() {
        let got = String::from_utf8_lossy(actual.body());
        if body.starts_with('<') {
            let e = parse_xml_pattern(body)?;
            let a = xml::parse(got.trim().as_bytes(), &xml::Scope::new(), false)
                .map_err(|err| format!("body is not XML: {err}"))?;
            match_xml(&e, &a)?;
        } else {
            let norm = |s: &str| s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
            if !glob(&norm(body), norm(&got).trim()) {
                return Err(format!("body: expected {body:?}, got {:?}", got.trim()));
            }
        }
    }
    Ok(())
}

fn match_start_line(pattern: &str, actual: &StartLine) -> Result<(), String> {
    let mut it = pattern.split_whitespace();
    match actual {
        StartLine::Response { code, reason, .. } => {
            let (Some(v), Some(c)) = (it.next(), it.next()) else {
                return Err(format!("pattern start line {pattern:?} is incomplete"));
            };
            if !v.starts_with("SIP/") {
                return Err(format!("expected a {v} request, got response {code} {reason}"));
            }
            if !glob(c, &code.to_string()) {
                return Err(format!("expected status {c}, got {code} {reason}"));
            }
            // The reason phrase is for people (RFC 3261 §7.2, §21): clients may word it as they
            // like ("200 Answering"), so a pattern's reason phrase is not compared.
        }
        StartLine::Request { method, uri, .. } => {
            let m = it.next().unwrap_or("");
            if m.starts_with("SIP/") {
                return Err(format!("expected a response, got a {method} request"));
            }
            if m != method {
                return Err(format!("expected method {m}, got {method}"));
            }
            if let Some(u) = it.next() {
                if !glob(u, uri) {
                    return Err(format!("expected Request-URI {u}, got {uri}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(s: &str) -> Element {
        parse_xml_pattern(s).unwrap()
    }

    #[test]
    fn glob_handles_edges() {
        assert!(glob("{any}", ""));
        assert!(glob("a{any}c", "abbc"));
        assert!(!glob("a{any}c", "abb"));
        assert!(glob("x", "x") && !glob("x", "y"));
        assert!(glob("{any}@{any}/r", "u@d/r"));
    }

    #[test]
    fn xml_partial_match_rules() {
        let got = el("<message from='a@x/r' to='b@x' type='chat' id='9'><active xmlns='http://jabber.org/protocol/chatstates'/><body>hi</body></message>");
        assert!(match_xml(&el("<message type='chat'><body>hi</body></message>"), &got).is_ok());
        assert!(match_xml(&el("<message from='{any}'/>"), &got).is_ok());
        assert!(match_xml(&el("<message type='normal'/>"), &got).unwrap_err().contains("attribute type"));
        assert!(match_xml(&el("<message><body>ho</body></message>"), &got).unwrap_err().contains("text"));
        assert!(match_xml(&el("<message><subject/></message>"), &got).is_err());
        assert!(match_xml(&el("<presence/>"), &got).is_err());
        assert!(match_xml(&el("<message><active xmlns='urn:other'/></message>"), &got).is_err());
        // The error names what is missing, not a sibling that matched.
        let two = el("<q><i c='a'/><i c='b'/><f v='1'/></q>");
        assert_eq!(match_xml(&el("<q><i c='a'/><f v='2'/></q>"), &two).unwrap_err(), "in <q>: <f> attribute v: expected '2', got '1'");
    }

    #[test]
    fn strict_elements_allow_nothing_extra_and_keep_their_order() {
        let got = el("<iq type='result' id='1'><query xmlns='jabber:iq:roster' ver='v1'><item jid='a@x'/><item jid='b@x'/></query></iq>");
        let strict = |p: &str| match_xml(&el(p), &got);
        // Not strict: extras and any order.
        assert!(strict("<iq><query xmlns='jabber:iq:roster'><item jid='b@x'/></query></iq>").is_ok());
        // Strict: the same pattern fails on the missing child, the extra attribute, the order.
        assert!(strict("<iq type='result' id='1' sixpac:strict='true'><query xmlns='jabber:iq:roster' ver='v1'><item jid='b@x'/></query></iq>").unwrap_err().contains("children"));
        assert!(strict("<iq type='result' sixpac:strict='true'><query xmlns='jabber:iq:roster' ver='v1'><item jid='a@x'/><item jid='b@x'/></query></iq>").unwrap_err().contains("attribute id='1'"));
        assert!(strict("<iq type='result' id='1' sixpac:strict='true'><query xmlns='jabber:iq:roster' ver='v1'><item jid='b@x'/><item jid='a@x'/></query></iq>").is_err(), "order counts");
        assert!(strict("<iq type='result' id='1' sixpac:strict='true'><query xmlns='jabber:iq:roster' ver='{any}'><item jid='a@x'/><item jid='{any}'/></query></iq>").is_ok());
        // Strictness is inherited, and a descendant can turn it off; scansion's name works too.
        assert!(strict("<iq type='result' id='1' scansion:strict='true'><query xmlns='jabber:iq:roster' sixpac:strict='false'><item jid='b@x'/></query></iq>").is_ok());
        // An extra child fails strictly, where a loose pattern takes it.
        let extra = el("<message type='chat'><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>");
        assert!(match_xml(&el("<message type='chat'><body>hi</body></message>"), &extra).is_ok());
        assert!(match_xml(&el("<message type='chat' sixpac:strict='true'><body>hi</body></message>"), &extra).is_err());
    }

    #[test]
    fn sip_patterns_that_can_never_match_are_refused() {
        assert!(lint_sip_pattern("SIP/2.0 200 OK").is_ok() && lint_sip_pattern("SIP/2.0 {any}").is_ok() && lint_sip_pattern("SIP/2.0 4{any}").is_ok());
        assert!(lint_sip_pattern("SIP/2.0 OK").unwrap_err().contains("three digits"));
        assert!(lint_sip_pattern("SIP/2.0 2000 OK").unwrap_err().contains("three digits"));
        assert!(lint_sip_pattern("INVITE {any} SIP/2.0").is_ok() && lint_sip_pattern("{any} {any} SIP/2.0").is_ok());
        assert!(lint_sip_pattern("INV:ITE sip:x SIP/2.0").unwrap_err().contains("no SIP method"));
        assert!(lint_sip_pattern("MESSAGE {any} SIP/2.0\nContact: {any}\n!m").unwrap_err().contains("both absent and present"), "compact m: is Contact");
        assert!(lint_sip_pattern("MESSAGE {any} SIP/2.0\nTo {any}").unwrap_err().contains("no `Name: value` colon"));
    }

    #[test]
    fn unknown_directives_are_refused() {
        assert!(lint_xml_pattern(&el("<iq sixpac:strict='true'/>")).is_ok());
        assert!(lint_xml_pattern(&el("<iq><query sixpac:stict='true'/></iq>")).unwrap_err().contains("unknown directive sixpac:stict"));
        assert!(lint_xml_pattern(&el("<iq scansion:anything='x'/>")).unwrap_err().contains("unknown directive"));
        assert!(lint_xml_pattern(&el("<iq sixpac:strict='yes'/>")).unwrap_err().contains("'true' or 'false'"));
        assert!(lint_xml_pattern(&el("<iq xml:lang='en' xmlns:foo='urn:foo'><q foo:bar='1'/></iq>")).is_ok(), "bound prefixes are attributes");
        assert!(lint_xml_pattern(&el("<iq><q foo:bar='1'/></iq>")).unwrap_err().contains("prefix `foo` is not bound"));
    }

    #[test]
    fn sip_patterns_cover_compact_headers() {
        let m = SipMessage::parse(b"MESSAGE sip:bob@127.0.0.1:5 SIP/2.0\r\nf: <sip:alice@x>;tag=1\r\nc: text/plain\r\nl: 2\r\n\r\nhi").unwrap();
        assert!(match_sip("MESSAGE {any} SIP/2.0\nFrom: <sip:alice@x>;tag={any}\nContent-Type: text/plain\n\nhi\n", &m).is_ok());
        assert!(match_sip("MESSAGE sip:carol@{any} SIP/2.0", &m).is_err());
        assert!(match_sip("INVITE {any} SIP/2.0", &m).is_err());
        assert!(match_sip("SIP/2.0 200 OK", &m).unwrap_err().contains("got a MESSAGE request"));
        assert!(match_sip("MESSAGE {any} SIP/2.0\nSubject: x", &m).unwrap_err().contains("no Subject"));
        assert!(match_sip("MESSAGE {any} SIP/2.0\n!Contact", &m).is_ok());
        assert!(match_sip("MESSAGE {any} SIP/2.0\n!Content-Type", &m).unwrap_err().contains("present, expected none"), "compact c: counts");
        let r = SipMessage::parse(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(match_sip("SIP/2.0 200 OK", &r).is_ok());
        assert!(match_sip("SIP/2.0 2{any}", &r).is_ok());
        assert!(match_sip("SIP/2.0 404", &r).is_err());
    }
}
