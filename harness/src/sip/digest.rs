//! HTTP Digest authentication as SIP uses it (RFC 3261 §22, RFC 2617 `qop=auth`), with MD5
//! or, where the server offers it, SHA-256 (RFC 7616, RFC 8760).

use md5::{Digest, Md5};

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` Digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Option<String>,
    pub qop: Vec<String>,
    pub stale: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("challenge scheme is not Digest: {0:?}")]
    NotDigest(String),
    #[error("challenge lacks {0}")]
    Missing(&'static str),
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
}

/// Split `k=v, k="v, w"` into pairs, honouring quotes.
pub fn auth_params(text: &str) -> Vec<(String, String)> {
    crate::sip::message::split_list(text)
        .into_iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

impl Challenge {
    /// Parse a challenge header value.
    pub fn parse(value: &str) -> Result<Challenge, DigestError> {
        let value = value.trim();
        let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("Digest") {
            return Err(DigestError::NotDigest(scheme.to_string()));
        }
        let params = auth_params(rest);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Ok(Challenge {
            realm: get("realm").ok_or(DigestError::Missing("realm"))?,
            nonce: get("nonce").ok_or(DigestError::Missing("nonce"))?,
            opaque: get("opaque"),
            algorithm: get("algorithm"),
            qop: get("qop")
                .map(|q| q.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

/// What the client knows when answering a challenge.
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
    pub user: &'a str,
    pub password: &'a str,
}

fn md5_hex(s: &str) -> String {
    let out = Md5::digest(s.as_bytes());
    out.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(s: &str) -> String {
    let out = sha2::Sha256::digest(s.as_bytes());
    out.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Authorization header value answering `ch` for `method` on `uri`.
pub fn answer(
    ch: &Challenge,
    cred: &Credentials,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> Result<String, DigestError> {
    let h: fn(&str) -> String = match ch.algorithm.as_deref() {
        None => md5_hex,
        Some(a) if a.eq_ignore_ascii_case("MD5") => md5_hex,
        Some(a) if a.eq_ignore_ascii_case("SHA-256") => sha256_hex,
        Some(a) => return Err(DigestError::Algorithm(a.to_string())),
    };
    let ha1 = h(&format!("{}:{}:{}", cred.user, ch.realm, cred.password));
    let ha2 = h(&format!("{method}:{uri}"));
    let use_qop = ch.qop.iter().any(|q| q == "auth");
    let nc = format!("{nc:08x}");
    let response = if use_qop {
        h(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce))
    } else {
        h(&format!("{ha1}:{}:{ha2}", ch.nonce))
    };
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\"",
        cred.user, ch.realm, ch.nonce
    );
    if let Some(alg) = &ch.algorithm {
        out.push_str(&format!(", algorithm={alg}"));
    }
    if use_qop {
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(op) = &ch.opaque {
        out.push_str(&format!(", opaque=\"{op}\""));
    }
    Ok(out)
}

/// The `ha1` column Kamailio's subscriber table wants.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    md5_hex(&format!("{user}:{realm}:{password}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 §3.5 worked example.
        let ch = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let cred = Credentials { user: "Mufasa", password: "Circle Of Life" };
        let a = answer(&ch, &cred, "GET", "/dir/index.html", "0a4f113b", 1).unwrap();
        assert!(a.contains(r#"response="6629fae49393a05397450978507c4ef1""#), "{a}");
        assert!(a.contains("nc=00000001"));
    }

    #[test]
    fn rfc7616_sha256_example_response() {
        // RFC 7616 §3.9.1 worked example.
        let ch = Challenge::parse(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .unwrap();
        let cred = Credentials { user: "Mufasa", password: "Circle of Life" };
        let a = answer(&ch, &cred, "GET", "/dir/index.html", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", 1).unwrap();
        assert!(a.contains(r#"response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1""#), "{a}");
        assert!(a.contains("algorithm=SHA-256"));
        let other = Challenge { algorithm: Some("SHA-512-256".into()), ..ch };
        assert_eq!(answer(&other, &cred, "GET", "/", "c", 1), Err(DigestError::Algorithm("SHA-512-256".into())));
    }

    #[test]
    fn non_digest_and_missing_fields_are_errors() {
        assert!(matches!(Challenge::parse("Basic realm=x"), Err(DigestError::NotDigest(_))));
        assert!(matches!(Challenge::parse("Digest realm=\"x\""), Err(DigestError::Missing("nonce"))));
    }
}
