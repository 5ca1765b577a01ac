//! PIDF presence documents (RFC 3863) with an RPID person element (RFC 4480).

use crate::xml::escape;

/// A PIDF document for `entity`: one tuple with basic status and contact, an optional note,
/// and an RPID activity on the person (`unknown` unless the note names none).
pub fn document(entity: &str, contact: &str, open: bool, note: &str) -> String {
    let basic = if open { "open" } else { "closed" };
    let note = if note.is_empty() { String::new() } else { format!("<note>{}</note>", escape(note, false)) };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
         xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{entity}\">\
         <tuple id=\"t1\"><status><basic>{basic}</basic></status><contact>{contact}</contact>{note}</tuple>\
         <dm:person id=\"p1\"><rpid:activities><rpid:unknown/></rpid:activities></dm:person>\
         </presence>",
        entity = escape(entity, true),
        contact = escape(contact, false),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_xml_with_the_pidf_namespace() {
        let doc = document("sip:alice@example.test", "sip:alice@127.0.0.1:5070", false, "On a call & busy");
        let body = doc.split_once("?>").unwrap().1.trim();
        let el = crate::xml::parse(body.as_bytes(), &crate::xml::Scope::new(), false).unwrap();
        assert_eq!(el.name, "presence");
        assert_eq!(el.ns.as_deref(), Some("urn:ietf:params:xml:ns:pidf"));
        assert!(doc.contains("<basic>closed</basic>") && doc.contains("On a call &amp; busy"));
    }
}
