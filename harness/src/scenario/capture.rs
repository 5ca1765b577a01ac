//! Captured values: what a `receives` step takes from the frame it matched (`capture: { q:
//! "iq@id" }`), so that later steps can answer a server's request or follow a SIP dialog as
//! `${bob.q}`. SIPp's ereg, by path instead of regular expression.

use super::model::Wire;
use crate::sip::message::{header_param, SipMessage};
use crate::xml::Element;

/// Why a capture path cannot be read, for `sixpac check`.
pub fn check_path(wire: Wire, path: &str) -> Result<(), String> {
    let name_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.'));
    match wire {
        Wire::Xmpp => {
            let (elements, attr) = path.split_once('@').map_or((path, None), |(e, a)| (e, Some(a)));
            if !elements.split('/').all(name_ok) || attr.is_some_and(|a| !name_ok(a)) {
                return Err(format!("capture path `{path}`: write element/child…@attribute, or element/child… for its text (e.g. iq@id, message/body)"));
            }
        }
        Wire::Sip => {
            let (header, param) = path.split_once(';').map_or((path, None), |(h, p)| (h, Some(p)));
            if !name_ok(header) || param.is_some_and(|p| !name_ok(p)) {
                return Err(format!("capture path `{path}`: write Header, or Header;param (e.g. Call-ID, To;tag)"));
            }
        }
    }
    Ok(())
}

/// The value at `path` in an XML frame's tree: an attribute (`iq@id`, `iq/query@node`) or a
/// text (`message/body`). The first element of the path is the frame's own.
pub fn from_xml(el: &Element, path: &str) -> Result<String, String> {
    let (elements, attr) = path.split_once('@').map_or((path, None), |(e, a)| (e, Some(a)));
    let mut names = elements.split('/');
    let top = names.next().unwrap_or_default();
    if el.local_name() != top {
        return Err(format!("the frame is <{}>, not <{top}>", el.name));
    }
    let mut at = el;
    for n in names {
        at = at.child(n).ok_or_else(|| format!("<{}> has no child <{n}>", at.name))?;
    }
    match attr {
        Some(a) => at.attr(a).map(str::to_string).ok_or_else(|| format!("<{}> has no attribute {a}", at.name)),
        None => Ok(at.text().trim().to_string()),
    }
}

/// The value at `path` in a SIP message: a header's value (`Call-ID`) or one of its
/// parameters (`To;tag`).
pub fn from_sip(m: &SipMessage, path: &str) -> Result<String, String> {
    let (header, param) = path.split_once(';').map_or((path, None), |(h, p)| (h, Some(p)));
    let value = m.header(header).ok_or_else(|| format!("no {header} header"))?;
    match param {
        None => Ok(value.trim().to_string()),
        Some(p) => header_param(&value, p).ok_or_else(|| format!("{header} has no ;{p} parameter")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_attributes_texts_and_header_parameters() {
        let el = crate::xml::parse(b"<iq type='get' id='q7'><query xmlns='jabber:iq:version' node='n'/><x>hi </x></iq>", &crate::xml::client_stream_scope(), false).unwrap();
        assert_eq!(from_xml(&el, "iq@id").unwrap(), "q7");
        assert_eq!(from_xml(&el, "iq/query@node").unwrap(), "n");
        assert_eq!(from_xml(&el, "iq/x").unwrap(), "hi");
        assert!(from_xml(&el, "iq@from").unwrap_err().contains("no attribute from"));
        assert!(from_xml(&el, "message@id").unwrap_err().contains("not <message>"));
        let m = SipMessage::parse(b"SIP/2.0 200 OK\r\nTo: <sip:b@d>;tag=9f\r\nCall-ID: c1@h\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(from_sip(&m, "To;tag").unwrap(), "9f");
        assert_eq!(from_sip(&m, "Call-ID").unwrap(), "c1@h");
        assert!(from_sip(&m, "From;tag").unwrap_err().contains("no From header"));
        assert!(check_path(Wire::Xmpp, "iq@").is_err() && check_path(Wire::Xmpp, "iq/query@node").is_ok());
        assert!(check_path(Wire::Sip, "To;tag").is_ok() && check_path(Wire::Sip, "To; tag").is_err());
    }
}
