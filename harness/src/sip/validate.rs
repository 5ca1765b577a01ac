//! Syntax checks beyond framing: what RFC 3261's grammar forbids but a lenient reader accepts.
//! Each problem is named so a torture report can say why a message is invalid.

use super::message::{header_param, same_header, split_list, SipMessage, StartLine};

const SINGLE_ADDR: [&str; 3] = ["From", "To", "Contact"];

fn fits(value: &str, max: u128) -> bool {
    value.parse::<u128>().is_ok_and(|n| n <= max)
}

fn quotes_balanced(v: &str) -> bool {
    let mut open = false;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if open => {
                chars.next();
            }
            '"' => open = !open,
            _ => {}
        }
    }
    !open
}

/// RFC 3261 `token` characters (§25.1).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn check_addr(name: &str, value: &str, out: &mut Vec<String>) {
    if !quotes_balanced(value) {
        out.push(format!("{name}: unterminated quoted string"));
        return;
    }
    match value.find('<') {
        Some(lt) => {
            let display = value[..lt].trim();
            if !display.is_empty() && !display.starts_with('"') && !display.split_whitespace().all(|w| w.chars().all(is_token_char)) {
                out.push(format!("{name}: display name {display:?} has non-token characters and is not quoted"));
            }
            let inner_end = value[lt..].find('>').map(|p| lt + p);
            if let Some(gt) = inner_end {
                let inner = &value[lt + 1..gt];
                if inner.starts_with(char::is_whitespace) || inner.ends_with(char::is_whitespace) {
                    out.push(format!("{name}: whitespace inside <addr-spec>"));
                }
            }
        }
        None => {
            let uri = value.split(';').next().unwrap_or("");
            if uri.contains('?') || uri.contains(',') {
                out.push(format!("{name}: a URI with headers or commas must be enclosed in <>"));
            }
        }
    }
    let after = value.rfind('>').map(|g| &value[g + 1..]).unwrap_or(value);
    if after.contains(";;") || after.trim_end().ends_with(';') {
        out.push(format!("{name}: empty header parameter"));
    }
}

/// Every grammar problem found, empty for a well-formed message.
pub fn problems(msg: &SipMessage) -> Vec<String> {
    let mut out = Vec::new();
    match msg.start_line() {
        StartLine::Request { method, uri, version } => {
            if version != "SIP/2.0" {
                out.push(format!("unsupported SIP version {version}"));
            }
            if uri.starts_with('<') {
                out.push("Request-URI enclosed in <>".into());
            }
            // `?` may appear in the user part; headers start after the host.
            let host_part = uri.rfind('@').map(|a| &uri[a..]).unwrap_or(uri);
            if host_part.contains('?') {
                out.push("Request-URI carries escaped headers".into());
            }
            if let Some((_, m)) = msg.cseq() {
                if &m != method {
                    out.push(format!("CSeq method {m} does not match {method}"));
                }
            }
        }
        StartLine::Response { version, .. } => {
            if version != "SIP/2.0" {
                out.push(format!("unsupported SIP version {version}"));
            }
        }
    }
    for h in msg.header_lines() {
        let name = msg.name_of(h);
        let value = msg.value_of(h);
        let is = |n: &str| same_header(name, n);
        if is("CSeq") && !value.split_whitespace().next().is_some_and(|n| fits(n, (1 << 31) - 1)) {
            out.push(format!("CSeq number out of range: {value}"));
        }
        if is("Max-Forwards") && !fits(value.trim(), 255) {
            out.push(format!("Max-Forwards out of range: {value}"));
        }
        if (is("Expires") || is("Retry-After")) && !value.split(['(', ';']).next().is_some_and(|v| fits(v.trim(), u32::MAX as u128)) {
            out.push(format!("{name} out of range: {value}"));
        }
        if is("Contact") {
            if let Some(e) = header_param(&value, "expires") {
                if !fits(&e, u32::MAX as u128) {
                    out.push(format!("Contact expires out of range: {e}"));
                }
            }
        }
        if is("Warning") && !value.split_whitespace().next().is_some_and(|c| c.len() == 3 && c.chars().all(|d| d.is_ascii_digit())) {
            out.push(format!("Warning code is not three digits: {value}"));
        }
        if is("Date") && !value.trim_end().ends_with("GMT") {
            out.push(format!("Date is not in GMT: {value}"));
        }
        if is("Via") {
            for v in value.split(',') {
                if v.trim().is_empty() || v.contains(";;") || v.trim_end().ends_with(';') {
                    out.push("Via: empty element or parameter".into());
                    break;
                }
            }
        }
        if SINGLE_ADDR.iter().any(|n| is(n)) {
            let parts = if is("Contact") { split_list(&value) } else { vec![value.clone()] };
            for p in parts {
                if p.trim() != "*" {
                    check_addr(name, &p, &mut out);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probs(head: &str) -> Vec<String> {
        let raw = format!("{}\r\nContent-Length: 0\r\n\r\n", head.replace('\n', "\r\n"));
        problems(&SipMessage::parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn a_plain_request_has_no_problems() {
        let p = probs("OPTIONS sip:u?x@example.com SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: \"A, B\" <sip:a@x>;tag=1\nTo: Bob <sip:b@x>\nCSeq: 1 OPTIONS\nMax-Forwards: 70");
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn each_grammar_problem_is_named() {
        let has = |head: &str, what: &str| {
            let p = probs(head);
            assert!(p.iter().any(|x| x.contains(what)), "{head:?} -> {p:?}");
        };
        has("OPTIONS sip:u@x SIP/3.0", "version");
        has("OPTIONS <sip:u@x> SIP/2.0", "enclosed in <>");
        has("OPTIONS sip:u@x?Route=y SIP/2.0", "escaped headers");
        has("OPTIONS sip:u@x SIP/2.0\nCSeq: 1 INVITE", "does not match");
        has("OPTIONS sip:u@x SIP/2.0\nCSeq: 99999999999 OPTIONS", "CSeq number");
        has("OPTIONS sip:u@x SIP/2.0\nMax-Forwards: 256", "Max-Forwards");
        has("OPTIONS sip:u@x SIP/2.0\nTo: \"open <sip:b@x>", "unterminated");
        has("OPTIONS sip:u@x SIP/2.0\nTo: A, B <sip:b@x>", "non-token");
        has("OPTIONS sip:u@x SIP/2.0\nTo: < sip:b@x >", "whitespace inside");
        has("OPTIONS sip:u@x SIP/2.0\nContact: sip:b@x?R=1", "enclosed in <>");
        has("OPTIONS sip:u@x SIP/2.0\nVia: SIP/2.0/UDP h;;", "Via");
        has("OPTIONS sip:u@x SIP/2.0\nDate: Fri, 01 Jan 2010 16:00:00 EST", "GMT");
        has("SIP/2.0 200 OK\nWarning: 1812 x \"y\"", "Warning");
    }
}
