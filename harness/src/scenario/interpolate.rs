//! `${actor.field}` and `${new.kind}` values in step text.

use std::collections::HashMap;

/// Fields an actor exposes to scenario text.
pub const ACTOR_FIELDS: &[&str] =
    &["jid", "full_jid", "user", "domain", "sip", "contact", "sip_addr", "password"];
/// Fresh values: a new one at each use.
pub const NEW_FIELDS: &[&str] = &["branch", "tag", "call_id", "id"];

/// Every `${...}` reference in `text`, with its byte offset.
pub fn references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = text[from..].find("${") {
        let start = from + p;
        match text[start..].find('}') {
            Some(e) => {
                out.push((start, text[start + 2..start + e].to_string()));
                from = start + e + 1;
            }
            None => {
                out.push((start, text[start + 2..].to_string()));
                break;
            }
        }
    }
    out
}

/// Check one reference against the declared actors; the error says what is allowed.
pub fn check_reference(name: &str, actors: &[String]) -> Result<(), String> {
    let (who, field) = name.split_once('.').ok_or_else(|| {
        format!("`${{{name}}}` needs the form actor.field or new.kind")
    })?;
    if who == "new" {
        return if NEW_FIELDS.contains(&field) {
            Ok(())
        } else {
            Err(format!("unknown `new.{field}`; one of: {}", NEW_FIELDS.join(", ")))
        };
    }
    if !actors.iter().any(|a| a == who) {
        return Err(format!("unknown actor `{who}` in `${{{name}}}`; declared: {}", actors.join(", ")));
    }
    if !ACTOR_FIELDS.contains(&field) {
        return Err(format!("unknown field `{field}` in `${{{name}}}`; one of: {}", ACTOR_FIELDS.join(", ")));
    }
    Ok(())
}

/// Why a reference has no value: the wire-derived ones say what the wire has not shown yet.
fn no_value(name: &str) -> String {
    let from_wire = match name.rsplit('.').next().unwrap_or("") {
        "full_jid" => Some("the JID its server bound (no bind result recorded on its XMPP connection yet)"),
        "contact" => Some("the Contact of its REGISTER (none recorded on its SIP connection yet)"),
        "sip_addr" => Some("its SIP leg's address (nothing recorded from it yet)"),
        _ => None,
    };
    match from_wire {
        Some(what) => format!("`${{{name}}}` comes from the wire, {what}; has the actor connected?"),
        None => format!("`${{{name}}}` has no value yet (has the actor connected?)"),
    }
}

/// Replace references using `values` (actor.field -> value); `${new.*}` calls `fresh`.
pub fn interpolate(
    text: &str,
    values: &HashMap<String, String>,
    mut fresh: impl FnMut(&str) -> String,
) -> Result<String, String> {
    let mut out = String::new();
    let mut last = 0;
    for (start, name) in references(text) {
        out.push_str(&text[last..start]);
        let value = match name.strip_prefix("new.") {
            Some(kind) => fresh(kind),
            None => values
                .get(&name)
                .cloned()
                .ok_or_else(|| no_value(&name))?,
        };
        out.push_str(&value);
        last = start + name.len() + 3;
    }
    out.push_str(&text[last.min(text.len())..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_reports() {
        let mut v = HashMap::new();
        v.insert("alice.jid".to_string(), "a@x".to_string());
        let out = interpolate("to='${alice.jid}' b=${new.branch}", &v, |k| format!("<{k}>")).unwrap();
        assert_eq!(out, "to='a@x' b=<branch>");
        assert!(interpolate("${bob.jid}", &v, |_| String::new()).is_err());
        let actors = vec!["alice".to_string()];
        assert!(check_reference("alice.jid", &actors).is_ok());
        assert!(check_reference("alice.jdi", &actors).unwrap_err().contains("unknown field"));
        assert!(check_reference("carol.jid", &actors).unwrap_err().contains("unknown actor"));
    }
}
