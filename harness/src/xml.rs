//! A small XML element tree: the one view both the matcher and the normalizer read.
//!
//! Built from a frame's bytes; serialized only to produce derived text (normalized traces),
//! never to replace what was recorded.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::collections::BTreeMap;

/// An XML node: element or character data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
}

/// An element with its qualified name, attributes in document order, and resolved namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub ns: Option<String>,
    pub children: Vec<Node>,
}

/// Why bytes are not a well-formed element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed XML: {0}")]
    Syntax(String),
    #[error("no element found")]
    Empty,
    #[error("unknown entity &{0};")]
    Entity(String),
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// How deep elements may nest. Stanzas nest a few levels; a tree much deeper is an attack or a
/// mistake, and would exhaust the stack of everything that walks it.
pub const MAX_DEPTH: usize = 256;

/// Namespace prefixes in force; the stream's own declarations seed it.
pub type Scope = BTreeMap<String, String>;

/// The scope of a client-to-server XMPP stream.
pub fn client_stream_scope() -> Scope {
    let mut s = Scope::new();
    s.insert(String::new(), "jabber:client".into());
    s.insert("stream".into(), "http://etherx.jabber.org/streams".into());
    s
}

impl Element {
    /// A bare element with a name.
    pub fn new(name: &str) -> Element {
        Element { name: name.into(), attrs: Vec::new(), ns: None, children: Vec::new() }
    }

    /// Attribute value by name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The local part of the name (after any prefix).
    pub fn local_name(&self) -> &str {
        self.name.rsplit(':').next().unwrap_or(&self.name)
    }

    /// Child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// First child element with this local name.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.elements().find(|e| e.local_name() == local)
    }

    /// Concatenated direct character data.
    pub fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|n| match n {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }

    /// Serialize in a canonical form: single-quoted attributes, escaped text.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_xml(&mut out, true);
        out
    }

    /// Only the start tag (for stream headers, which never close in one frame).
    pub fn start_tag(&self) -> String {
        let mut out = String::new();
        self.write_xml(&mut out, false);
        out
    }

    fn write_xml(&self, out: &mut String, close: bool) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("='");
            out.push_str(&escape(v, true));
            out.push('\'');
        }
        if !close {
            out.push('>');
            return;
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        for c in &self.children {
            match c {
                Node::Element(e) => e.write_xml(out, true),
                Node::Text(t) => out.push_str(&escape(t, false)),
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Escape text for XML content or a single-quoted attribute.
pub fn escape(s: &str, attr: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' if attr => out.push_str("&apos;"),
            '"' if attr => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Whether `s` is an XML Name (XML 1.0 §2.3; non-ASCII characters are let through). The
/// reader is lenient about names, and a tree must not hold one that its own serialization
/// cannot give back (a quote or `>` in an attribute name, found by fuzzing).
fn is_xml_name(s: &str) -> bool {
    let mut chars = s.chars();
    let start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':' || !c.is_ascii();
    chars.next().is_some_and(start) && chars.all(|c| start(c) || c.is_ascii_digit() || c == '-' || c == '.')
}

/// A name as text, if it is an XML Name in UTF-8. Not lossily: two names in different invalid
/// bytes would both become U+FFFD, one name twice (found by fuzzing).
fn xml_name(raw: &[u8], what: &str) -> Result<String, XmlError> {
    match std::str::from_utf8(raw) {
        Ok(name) if is_xml_name(name) => Ok(name.to_string()),
        _ => Err(XmlError::Syntax(format!("{:?} is not an {what} name", String::from_utf8_lossy(raw)))),
    }
}

fn start_element(e: &BytesStart, scope: &mut Scope) -> Result<Element, XmlError> {
    let name = xml_name(e.name().as_ref(), "element")?;
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| XmlError::Syntax(err.to_string()))?;
        let k = xml_name(a.key.as_ref(), "attribute")?;
        let v = a.unescape_value().map_err(|err| XmlError::Syntax(err.to_string()))?.into_owned();
        if k == "xmlns" {
            scope.insert(String::new(), v.clone());
        } else if let Some(p) = k.strip_prefix("xmlns:") {
            scope.insert(p.to_string(), v.clone());
        }
        attrs.push((k, v));
    }
    let prefix = name.split_once(':').map(|(p, _)| p).unwrap_or("");
    let ns = scope.get(prefix).cloned();
    Ok(Element { name, attrs, ns, children: Vec::new() })
}

fn resolve_ref(name: &str) -> Result<char, XmlError> {
    Ok(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let code = name
                .strip_prefix("#x")
                .map(|h| u32::from_str_radix(h, 16))
                .or_else(|| name.strip_prefix('#').map(|d| d.parse::<u32>()));
            match code {
                Some(Ok(c)) => char::from_u32(c).ok_or_else(|| XmlError::Entity(name.into()))?,
                _ => return Err(XmlError::Entity(name.into())),
            }
        }
    })
}

/// Parse the first element in `bytes`. With `open_only`, stop after its start tag.
pub fn parse(bytes: &[u8], scope: &Scope, open_only: bool) -> Result<Element, XmlError> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<(Element, Scope)> = Vec::new();
    let mut buf = Vec::new();
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|e| XmlError::Syntax(e.to_string()))?;
        match ev {
            Event::Start(e) => {
                let mut sc = stack.last().map(|(_, s)| s.clone()).unwrap_or_else(|| scope.clone());
                let el = start_element(&e, &mut sc)?;
                if open_only {
                    return Ok(el);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                stack.push((el, sc));
            }
            Event::Empty(e) => {
                let mut sc = stack.last().map(|(_, s)| s.clone()).unwrap_or_else(|| scope.clone());
                let el = start_element(&e, &mut sc)?;
                match stack.last_mut() {
                    Some((parent, _)) => parent.children.push(Node::Element(el)),
                    None => return Ok(el),
                }
            }
            Event::End(_) => {
                let (el, _) = stack.pop().ok_or_else(|| XmlError::Syntax("stray end tag".into()))?;
                match stack.last_mut() {
                    Some((parent, _)) => parent.children.push(Node::Element(el)),
                    None => return Ok(el),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                push_text(&mut stack, &s)?;
            }
            Event::CData(t) => {
                let s = String::from_utf8_lossy(&t.into_inner()).into_owned();
                push_text(&mut stack, &s)?;
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| XmlError::Syntax(e.to_string()))?;
                let c = resolve_ref(&name)?;
                push_text(&mut stack, &c.to_string())?;
            }
            Event::Eof => {
                return Err(if stack.is_empty() {
                    XmlError::Empty
                } else {
                    XmlError::Syntax(format!("element <{}> is not closed", stack[0].0.name))
                })
            }
            Event::DocType(_) => return Err(XmlError::Syntax("DOCTYPE is not allowed".into())),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        buf.clear();
    }
}

fn push_text(stack: &mut [(Element, Scope)], s: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some((el, _)) => {
            if let Some(Node::Text(prev)) = el.children.last_mut() {
                prev.push_str(s);
            } else {
                el.children.push(Node::Text(s.to_string()));
            }
            Ok(())
        }
        None if s.trim().is_empty() => Ok(()),
        None => Err(XmlError::Syntax(format!("text outside an element: {:?}", s.trim()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_serialization_could_not_give_back_are_refused() {
        // Shaped like the input fuzzing found: a quote and `>` inside an attribute's name.
        for bad in [&b"<iq a='1' b\"'>c='2'/>"[..], b"<iq a='1' x\0y='2'/>", b"<i\"q/>", b"<iq \xff='1' \xfe='2'/>"] {
            assert!(matches!(parse(bad, &Scope::new(), false), Err(XmlError::Syntax(_))), "{:?}", String::from_utf8_lossy(bad));
        }
        let fine = parse("<ns:iq xml:lang='en' a-b.c_d='1' é='2'/>".as_bytes(), &Scope::new(), false).unwrap();
        assert!(parse(fine.to_xml().as_bytes(), &Scope::new(), false).is_ok());
    }

    #[test]
    fn parses_namespaces_entities_and_serializes_canonically() {
        let e = parse(
            br#"<message to="b@x" type='chat'><body>a &amp; b &#x41;</body><x xmlns="urn:y"/></message>"#,
            &client_stream_scope(),
            false,
        )
        .unwrap();
        assert_eq!(e.ns.as_deref(), Some("jabber:client"));
        assert_eq!(e.child("body").unwrap().text(), "a & b A");
        assert_eq!(e.child("x").unwrap().ns.as_deref(), Some("urn:y"));
        assert_eq!(
            e.to_xml(),
            "<message to='b@x' type='chat'><body>a &amp; b A</body><x xmlns='urn:y'/></message>"
        );
    }

    #[test]
    fn open_only_reads_a_stream_header() {
        let e = parse(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1'>",
            &Scope::new(),
            true,
        )
        .unwrap();
        assert_eq!(e.local_name(), "stream");
        assert_eq!(e.ns.as_deref(), Some("http://etherx.jabber.org/streams"));
    }

    #[test]
    fn a_tree_deeper_than_the_limit_is_refused_not_overflowed() {
        let deep = |d: usize| format!("{}{}", "<a>".repeat(d), "</a>".repeat(d));
        assert!(parse(deep(MAX_DEPTH).as_bytes(), &Scope::new(), false).is_ok());
        assert_eq!(parse(deep(MAX_DEPTH + 1).as_bytes(), &Scope::new(), false), Err(XmlError::TooDeep));
        assert_eq!(parse(deep(60_000).as_bytes(), &Scope::new(), false), Err(XmlError::TooDeep));
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(parse(b"<a><b></a>", &Scope::new(), false).is_err());
        assert!(parse(b"<a>&bogus;</a>", &Scope::new(), false).is_err());
        assert!(parse(b"", &Scope::new(), false).is_err());
    }
}
