//! What the reference client says about itself over XMPP: its disco#info identity and
//! features (XEP-0030), the entity-capabilities hash of them (XEP-0115), and the answers it
//! gives to requests addressed to it.

use crate::xml::{escape, Element};
use base64::Engine;
use sha1::{Digest, Sha1};

/// The caps node URI sixpac's reference client announces.
pub const CAPS_NODE: &str = "https://sixpac.invalid/reference-client";

/// The client's identity: (category, type, name).
pub const IDENTITY: (&str, &str, &str) = ("client", "pc", "sixpac reference client");

/// The features the reference client implements. No Jingle: calls go over SIP (RFC 7081).
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/activity+notify",
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/chatstates",
    "http://jabber.org/protocol/disco#info",
    "urn:xmpp:ping",
    "urn:xmpp:reach:0",
    "urn:xmpp:reach:0+notify",
];

/// A disco#info identity: category, type, xml:lang, name.
pub type Identity = (String, String, String, String);

/// XEP-0115 §5.1 verification string and its SHA-1 (`ver`), from identities and features.
pub fn caps_ver(identities: &[Identity], features: &[String]) -> String {
    let mut ids: Vec<String> = identities.iter().map(|(c, t, lang, name)| format!("{c}/{t}/{lang}/{name}")).collect();
    ids.sort();
    let mut feats = features.to_vec();
    feats.sort();
    let mut s = String::new();
    for i in ids {
        s.push_str(&i);
        s.push('<');
    }
    for f in feats {
        s.push_str(&f);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

/// The reference client's own features, as owned strings.
pub fn own_features() -> Vec<String> {
    FEATURES.iter().map(|f| f.to_string()).collect()
}

/// The `ver` of the reference client's identity with `features`.
pub fn ver_of(features: &[String]) -> String {
    let (c, t, n) = IDENTITY;
    caps_ver(&[(c.into(), t.into(), String::new(), n.into())], features)
}

/// The reference client's own `ver`.
pub fn own_ver() -> String {
    ver_of(&own_features())
}

/// The `<c/>` element for presence, for a client with `features`.
pub fn caps_element(features: &[String]) -> String {
    format!("<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{CAPS_NODE}' ver='{}'/>", ver_of(features))
}

/// Identities and features read from a disco#info `<query/>`, for `caps_ver`.
pub fn disco_info_of(query: &Element) -> (Vec<Identity>, Vec<String>) {
    let mut ids = Vec::new();
    let mut feats = Vec::new();
    for c in query.elements() {
        match c.local_name() {
            "identity" => ids.push((
                c.attr("category").unwrap_or("").to_string(),
                c.attr("type").unwrap_or("").to_string(),
                c.attr("xml:lang").unwrap_or("").to_string(),
                c.attr("name").unwrap_or("").to_string(),
            )),
            "feature" => feats.push(c.attr("var").unwrap_or("").to_string()),
            _ => {}
        }
    }
    (ids, feats)
}

/// The answer to an iq addressed to the client, if it is one we answer: disco#info and ping
/// get results; any other get or set gets `service-unavailable` (RFC 6120 §8.2.3: every
/// request is answered). Results and errors get no answer.
pub fn answer_iq(iq: &Element, features: &[String]) -> Option<String> {
    let kind = iq.attr("type")?;
    if kind != "get" && kind != "set" {
        return None;
    }
    let id = escape(iq.attr("id").unwrap_or(""), true);
    let to = iq.attr("from").map(|f| format!(" to='{}'", escape(f, true))).unwrap_or_default();
    let child = iq.elements().next();
    let ns = child.and_then(|c| c.ns.as_deref()).unwrap_or("");
    match (kind, child.map(|c| c.local_name()), ns) {
        ("get", Some("query"), "http://jabber.org/protocol/disco#info") => {
            let node = child
                .and_then(|c| c.attr("node"))
                .map(|n| format!(" node='{}'", escape(n, true)))
                .unwrap_or_default();
            let (c, t, n) = IDENTITY;
            let mut body = format!("<identity category='{c}' type='{t}' name='{n}'/>");
            for f in features {
                body.push_str(&format!("<feature var='{}'/>", escape(f, true)));
            }
            Some(format!(
                "<iq type='result' id='{id}'{to}><query xmlns='http://jabber.org/protocol/disco#info'{node}>{body}</query></iq>"
            ))
        }
        ("get", Some("ping"), "urn:xmpp:ping") => Some(format!("<iq type='result' id='{id}'{to}/>")),
        // A roster push is acknowledged (RFC 6121 §2.1.6).
        ("set", Some("query"), "jabber:iq:roster") => Some(format!("<iq type='result' id='{id}'{to}/>")),
        _ => Some(format!(
            "<iq type='error' id='{id}'{to}><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0115_simple_example_ver() {
        // XEP-0115 §5.2 worked example.
        let ids = vec![("client".to_string(), "pc".to_string(), String::new(), "Exodus 0.9.1".to_string())];
        let feats: Vec<String> = ["http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(caps_ver(&ids, &feats), "QgayPKawpkPSDYmwT/WM94uAlu0=");
    }

    #[test]
    fn our_disco_answer_hashes_to_our_ver() {
        let req = crate::xml::parse(
            b"<iq xmlns='jabber:client' type='get' id='d1' from='bob@x/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            &crate::xml::Scope::new(),
            false,
        )
        .unwrap();
        let ans = answer_iq(&req, &own_features()).unwrap();
        let el = crate::xml::parse(ans.as_bytes(), &crate::xml::client_stream_scope(), false).unwrap();
        let (ids, feats) = disco_info_of(el.child("query").unwrap());
        assert_eq!(caps_ver(&ids, &feats), own_ver());
        assert!(!feats.iter().any(|f| f.contains("jingle")), "no Jingle: calls go over SIP");
    }

    #[test]
    fn unknown_requests_get_service_unavailable_and_results_nothing() {
        let parse = |s: &str| crate::xml::parse(s.as_bytes(), &crate::xml::client_stream_scope(), false).unwrap();
        let ans = answer_iq(&parse("<iq type='set' id='x'><foo xmlns='urn:other'/></iq>"), &own_features()).unwrap();
        assert!(ans.contains("service-unavailable"));
        assert!(answer_iq(&parse("<iq type='result' id='x'/>"), &own_features()).is_none());
    }
}
