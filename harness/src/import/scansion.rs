//! `sixpac import scansion`: scansion scripts (Prosody's test format) as sixpac scenarios.
//!
//! A script's `[Client]` characters become XMPP actors that do nothing by themselves (no
//! initial presence, no roster fetch, no automatic answers), as scansion's client does; two
//! characters with one JID become two resources of one account. Statements become steps under
//! `order: next`, scansion's rule, and the trace is not compared (`trace: none`): scripts have
//! no expected traces. The script's literal JIDs and domain become the actors' values, so the
//! scenario runs on any profile's domain with fresh accounts. Whatever cannot be converted is
//! listed with its line, and the scenario is then marked `unconverted` (it does not run).

use std::collections::BTreeSet;

/// One script, converted.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub title: String,
    /// The scenario file's text.
    pub yaml: String,
    /// What could not be converted: (line, what).
    pub unconverted: Vec<(usize, String)>,
    /// Server features the script's namespaces and addresses say it needs.
    pub needs: Vec<String>,
}

/// A `[Client]` of the script.
#[derive(Debug, Clone)]
struct Client {
    /// As the script writes it: `Juliet's phone`.
    name: String,
    /// sixpac's actor name: `juliet_phone`.
    actor: String,
    jid: String,
    resource: Option<String>,
}

/// `Juliet's phone` → `juliet_phone`.
fn actor_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.replace("'s ", " ").replace('\'', "").chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_').to_string();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) { format!("client_{out}") } else { out }
}

/// Which features a script needs, from its namespaces and the services it addresses.
fn infer_needs(text: &str) -> Vec<String> {
    let rules: [(&str, &str); 13] = [
        ("http://jabber.org/protocol/muc", "muc"),
        ("urn:xmpp:mam:", "mam"),
        ("urn:xmpp:blocking", "blocking"),
        ("jabber:iq:last", "last"),
        ("jabber:iq:version", "version"),
        ("urn:xmpp:ping", "ping"),
        ("urn:xmpp:carbons", "carbons"),
        ("urn:xmpp:http:upload", "http-upload"),
        ("urn:xmpp:extdisco", "extdisco"),
        ("jabber:iq:register", "register"),
        ("urn:xmpp:pars:", "pars"),
        ("vcard-temp'", "vcard"),
        ("admin@", "admin"),
    ];
    let mut needs: BTreeSet<String> = rules.iter().filter(|(k, _)| text.contains(k)).map(|(_, n)| n.to_string()).collect();
    if text.contains("vcard-temp\"") {
        needs.insert("vcard".into());
    }
    if text.contains("http://jabber.org/protocol/pubsub") {
        needs.insert(if text.contains("pubsub.localhost") { "pubsub".into() } else { "pep".into() });
    }
    // A <delay/> outside MUC history is a stored message.
    if text.contains("urn:xmpp:delay") && !needs.contains("muc") {
        needs.insert("offline".into());
    }
    if text.contains("http://jabber.org/protocol/disco#info") && text.contains("serverinfo") {
        needs.insert("contact-info".into());
    }
    needs.into_iter().collect()
}

/// The script's XML with scansion's interpolations and literal addresses as sixpac's values.
fn rewrite(block: &str, clients: &[Client], line: usize, unconverted: &mut Vec<(usize, String)>) -> String {
    let mut out = String::new();
    let mut rest = block;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let Some(end) = rest[i..].find('}') else {
            unconverted.push((line, format!("an unclosed interpolation `{}`", &rest[i..])));
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let inner = &rest[i + 2..i + end];
        let found = clients.iter().find_map(|c| {
            if inner == format!("{}'s full JID", c.name) {
                Some(format!("${{{}.full_jid}}", c.actor))
            } else if inner == format!("{}'s JID", c.name) {
                Some(format!("${{{}.jid}}", c.actor))
            } else {
                None
            }
        });
        match found {
            Some(v) => out.push_str(&v),
            None => {
                unconverted.push((line, format!("the interpolation `${{{inner}}}`")));
                out.push_str(&rest[i..i + end + 1]);
            }
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    // Bare JIDs of the clients first (longest first, so `juliet@x` does not eat `juliet2@x`),
    // then the domain wherever it is left.
    let mut jids: Vec<&Client> = clients.iter().collect();
    jids.sort_by_key(|c| std::cmp::Reverse(c.jid.len()));
    let owner_of = |jid: &str| clients.iter().find(|c| c.jid == jid).map(|c| c.actor.clone()).unwrap_or_default();
    for c in jids {
        out = out.replace(&c.jid, &format!("${{{}.jid}}", owner_of(&c.jid)));
    }
    if let Some(first) = clients.first() {
        let domain = first.jid.split('@').nth(1).unwrap_or("localhost").to_string();
        out = replace_domain(&out, &domain, &format!("${{{}.domain}}", first.actor));
    }
    out.replace("{scansion:any}", "{any}")
}

/// `domain` where it stands as a host: after `@` or `.`, or as a whole attribute value, never
/// inside `${…}` or a longer word.
fn replace_domain(text: &str, domain: &str, with: &str) -> String {
    let mut out = String::new();
    let mut i = 0;
    let b = text.as_bytes();
    while let Some(p) = text[i..].find(domain).map(|p| p + i) {
        let before = if p == 0 { b' ' } else { b[p - 1] };
        let after = b.get(p + domain.len()).copied().unwrap_or(b' ');
        let host_start = matches!(before, b'@' | b'.' | b'\'' | b'"' | b'>' | b' ' | b'\t' | b'\n');
        let host_end = !(after.is_ascii_alphanumeric() || after == b'-' || after == b'_');
        out.push_str(&text[i..p]);
        if host_start && host_end {
            out.push_str(with);
        } else {
            out.push_str(domain);
        }
        i = p + domain.len();
    }
    out.push_str(&text[i..]);
    out
}

/// YAML for a text in a block scalar at `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for l in text.lines() {
        out.push_str(&pad);
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The indented block after a statement: lines that start with whitespace, the common indent
/// taken off.
fn take_block(lines: &[&str], from: usize) -> (String, usize) {
    let mut end = from;
    while end < lines.len() && (lines[end].starts_with([' ', '\t']) || lines[end].trim().is_empty()) {
        end += 1;
    }
    // Trailing blank lines belong to no block.
    while end > from && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let body: Vec<&str> = lines[from..end].iter().map(|l| l.trim_end()).collect();
    let indent = body.iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let text: Vec<String> = body.iter().map(|l| l.get(indent..).unwrap_or("").replace('\t', "  ")).collect();
    (text.join("\n"), end)
}

/// Convert one script. `file` names it in what is reported; `profiles` are the profiles the
/// scenario names; `order` is the scenario's `order:` (`next`, scansion's rule, or `any`).
pub fn convert(file: &str, text: &str, profiles: &[String], order: &str) -> Converted {
    let lines: Vec<&str> = text.lines().collect();
    let mut unconverted: Vec<(usize, String)> = Vec::new();
    let mut title = String::new();
    let mut tags: Vec<String> = vec!["imported".into(), "scansion".into()];
    let mut clients: Vec<Client> = Vec::new();
    let mut i = 0;
    // The header: title, tags, clients, up to the line of dashes.
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim();
        if t.starts_with("---") {
            i += 1;
            break;
        }
        if let Some(tag_line) = t.strip_prefix("##") {
            tags.extend(tag_line.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string));
        } else if let Some(tl) = t.strip_prefix('#') {
            if title.is_empty() {
                title = tl.trim().to_string();
            }
        } else if let Some(name) = t.strip_prefix("[Client]") {
            let name = name.trim().to_string();
            let mut c = Client { actor: actor_name(&name), name, jid: String::new(), resource: None };
            i += 1;
            while i < lines.len() && lines[i].starts_with([' ', '\t']) {
                match lines[i].trim().split_once(':') {
                    // A full JID names the resource too.
                    Some(("jid", v)) => match v.trim().split_once('/') {
                        Some((bare, res)) => {
                            c.jid = bare.to_string();
                            c.resource = c.resource.take().or_else(|| Some(res.to_string()));
                        }
                        None => c.jid = v.trim().to_string(),
                    },
                    Some(("resource", v)) => c.resource = Some(v.trim().to_string()),
                    Some(("password", _)) => {}
                    _ if lines[i].trim().is_empty() => {}
                    _ => unconverted.push((i + 1, format!("the client setting `{}`", lines[i].trim()))),
                }
                i += 1;
            }
            if c.jid.is_empty() {
                unconverted.push((i, format!("client {} has no jid", c.name)));
            }
            while clients.iter().any(|o| o.actor == c.actor) {
                c.actor.push('2');
            }
            clients.push(c);
            continue;
        } else if !t.is_empty() && !t.starts_with("//") && !t.starts_with("--") {
            unconverted.push((i + 1, format!("`{t}` in the header")));
        }
        i += 1;
    }
    if title.is_empty() {
        title = file.to_string();
    }
    // The statements.
    let mut steps = String::new();
    let mut names: Vec<&Client> = clients.iter().collect();
    names.sort_by_key(|c| std::cmp::Reverse(c.name.len()));
    while i < lines.len() {
        let l = lines[i];
        let t = l.trim();
        let line = i + 1;
        if t.is_empty() {
            i += 1;
            continue;
        }
        // scansion takes `#`, `//` and Lua's `--` as comments.
        if let Some(c) = t.strip_prefix('#').or_else(|| t.strip_prefix("//")).or_else(|| t.strip_prefix("--")) {
            steps.push_str(&format!("  #{}\n", if c.starts_with(' ') || c.is_empty() { c.to_string() } else { format!(" {c}") }));
            i += 1;
            continue;
        }
        let who = names.iter().find(|c| t.starts_with(&c.name) && t[c.name.len()..].starts_with(' '));
        let Some(who) = who else {
            unconverted.push((line, format!("`{t}`: no client of that name")));
            i += 1;
            continue;
        };
        let verb = t[who.name.len()..].trim();
        let actor = &who.actor;
        match verb.trim_end_matches(':') {
            "connects" => {
                steps.push_str(&format!("  - {actor}: connect\n"));
                i += 1;
            }
            "disconnects" => {
                steps.push_str(&format!("  - {actor}: disconnect\n"));
                i += 1;
            }
            "sends" | "receives" => {
                let (xml, end) = take_block(&lines, i + 1);
                if xml.trim().is_empty() {
                    unconverted.push((line, format!("`{t}` with no XML after it")));
                    i = end.max(i + 1);
                    continue;
                }
                let xml = rewrite(&xml, &clients, line, &mut unconverted);
                let verb = if verb.starts_with("sends") { "sends" } else { "receives" };
                steps.push_str(&format!("  - {actor} {verb} xmpp: |\n{}", block(&xml, 6)));
                i = end;
            }
            "receives: nothing" | "receives nothing" => {
                steps.push_str(&format!("  - {actor} receives nothing: \"{{any}}\"\n"));
                i += 1;
            }
            _ => {
                unconverted.push((line, format!("`{t}`: the statement `{verb}`")));
                i += 1;
            }
        }
    }
    let needs = infer_needs(text);
    // Actors: a second client with a JID already taken is another resource of that account.
    let mut actors = String::new();
    for (n, c) in clients.iter().enumerate() {
        let owner = clients[..n].iter().find(|o| o.jid == c.jid);
        let resource = c.resource.as_ref().map(|r| format!(", resource: {}", quoted(r))).unwrap_or_default();
        let shared = match owner {
            Some(o) => format!(", account: {}{}", o.actor, if c.resource.is_none() { format!(", resource: {}", quoted(&c.actor)) } else { String::new() }),
            None => String::new(),
        };
        actors.push_str(&format!("  {}: {{ kind: xmpp{shared}{resource}, presence: false, roster: false, answers: false }}\n", c.actor));
    }
    let mut yaml = format!("# Imported by `sixpac import scansion` from {file}.\n");
    for (line, what) in &unconverted {
        yaml.push_str(&format!("# not converted: {file}:{line}: {what}\n"));
    }
    yaml.push_str(&format!("title: {}\n", quoted(&title)));
    yaml.push_str(&format!("tags: [{}]\n", tags.iter().map(|t| quoted(t)).collect::<Vec<_>>().join(", ")));
    if !needs.is_empty() {
        yaml.push_str(&format!("needs: [{}]\n", needs.join(", ")));
    }
    yaml.push_str(&format!("order: {order}\ntrace: none\n"));
    if !unconverted.is_empty() {
        yaml.push_str("unconverted:\n");
        for (line, what) in &unconverted {
            yaml.push_str(&format!("  - {}\n", quoted(&format!("{file}:{line}: {what}"))));
        }
    }
    yaml.push_str(&format!("profiles: [{}]\n", profiles.join(", ")));
    yaml.push_str("actors:\n");
    yaml.push_str(&actors);
    yaml.push_str("steps:\n");
    yaml.push_str(&steps);
    Converted { title, yaml, unconverted, needs }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "# Two resources and a chat\n## chat, resources\n\n[Client] Romeo\n\tjid: romeo@localhost\n\tpassword: password\n\n[Client] Juliet\n\tjid: juliet@localhost\n\tpassword: password\n\n[Client] Juliet's phone\n\tjid: juliet@localhost\n\tpassword: password\n\tresource: mobile\n\n---------\n\nRomeo connects\n\n# a comment\nRomeo sends:\n\t<message to=\"${Juliet's full JID}\" type=\"chat\">\n\t\t<body>Hi</body>\n\t</message>\n\nJuliet receives:\n\t<message from=\"${Romeo's full JID}\" to='juliet@localhost' id='{scansion:any}'/>\n\nJuliet's phone receives: nothing\n\nRomeo dances\n\nRomeo disconnects\n";

    #[test]
    fn clients_statements_interpolations_and_addresses_convert() {
        let c = convert("t.scs", SCRIPT, &["prosody+kamailio".into()], "next");
        assert_eq!(c.title, "Two resources and a chat");
        let y = &c.yaml;
        assert!(y.contains("tags: [\"imported\", \"scansion\", \"chat\", \"resources\"]"), "{y}");
        assert!(y.contains("  romeo: { kind: xmpp, presence: false, roster: false, answers: false }"), "{y}");
        assert!(y.contains("  juliet_phone: { kind: xmpp, account: juliet, resource: \"mobile\", presence: false"), "{y}");
        assert!(y.contains("  - romeo sends xmpp: |\n      <message to=\"${juliet.full_jid}\" type=\"chat\">\n        <body>Hi</body>\n      </message>\n"), "{y}");
        assert!(y.contains("<message from=\"${romeo.full_jid}\" to='${juliet.jid}' id='{any}'/>"), "{y}");
        assert!(y.contains("  - juliet_phone receives nothing: \"{any}\""), "{y}");
        assert!(y.contains("  # a comment\n"), "comments carry over");
        assert_eq!(c.unconverted, [(32, "`Romeo dances`: the statement `dances`".to_string())]);
        assert!(y.contains("unconverted:\n  - \"t.scs:32: `Romeo dances`: the statement `dances`\""), "{y}");
    }

    #[test]
    fn the_domain_is_replaced_only_where_it_is_a_host() {
        assert_eq!(replace_domain("room@conference.localhost/x to='localhost' localhostly", "localhost", "D"), "room@conference.D/x to='D' localhostly");
        assert_eq!(infer_needs("<x xmlns='http://jabber.org/protocol/muc#user'/><delay xmlns='urn:xmpp:delay'/>"), ["muc"]);
        assert_eq!(infer_needs("<delay xmlns='urn:xmpp:delay'/>"), ["offline"]);
        assert_eq!(actor_name("Juliet's phone"), "juliet_phone");
    }
}
