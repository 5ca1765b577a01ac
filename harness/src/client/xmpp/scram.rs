//! SCRAM client side (RFC 5802 with SHA-1, RFC 7677 with SHA-256), as a plain state holder:
//! strings in, strings out.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    /// The SASL mechanism name.
    pub fn mechanism(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// PBKDF2 for one output block, which is all SCRAM needs (Hi() of RFC 5802).
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut block = salt.to_vec();
        block.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &block);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }
}

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("server-first-message is malformed: {0}")]
    Malformed(String),
    #[error("server nonce does not extend the client nonce")]
    NonceMismatch,
    #[error("server signature does not verify")]
    BadServerSignature,
    #[error("server reported error {0:?}")]
    ServerError(String),
}

/// One SCRAM exchange from the client's side.
#[derive(Debug, Clone)]
pub struct ScramClient {
    hash: ScramHash,
    user: String,
    password: String,
    cnonce: String,
    server_signature: Option<Vec<u8>>,
}

/// SASLprep is out of scope; RFC 5802 §5.1 still demands `,` and `=` be escaped in names.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    /// Start a SCRAM-SHA-1 exchange with the given client nonce.
    pub fn new(user: &str, password: &str, cnonce: &str) -> ScramClient {
        ScramClient::with_hash(ScramHash::Sha1, user, password, cnonce)
    }

    /// Start an exchange on the given hash.
    pub fn with_hash(hash: ScramHash, user: &str, password: &str, cnonce: &str) -> ScramClient {
        ScramClient {
            hash,
            user: user.into(),
            password: password.into(),
            cnonce: cnonce.into(),
            server_signature: None,
        }
    }

    fn first_bare(&self) -> String {
        format!("n={},r={}", escape_name(&self.user), self.cnonce)
    }

    /// The client-first-message (GS2 header included).
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.first_bare())
    }

    /// Answer the server-first-message with the client-final-message.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, ScramError> {
        let field = |k: &str| {
            server_first
                .split(',')
                .find_map(|p| p.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .ok_or_else(|| ScramError::Malformed(format!("missing {k}")))
        };
        let nonce = field("r")?;
        if !nonce.starts_with(&self.cnonce) || nonce.len() == self.cnonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = B64.decode(field("s")?).map_err(|e| ScramError::Malformed(e.to_string()))?;
        let iterations: u32 =
            field("i")?.parse().map_err(|_| ScramError::Malformed("bad iteration count".into()))?;
        if iterations == 0 {
            return Err(ScramError::Malformed("iteration count is zero".into()));
        }
        let h = self.hash;
        let salted = h.hi(self.password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.digest(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare());
        let client_sig = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&client_sig).map(|(a, b)| a ^ b).collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Check the server-final-message.
    pub fn verify_final(&self, server_final: &str) -> Result<(), ScramError> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.into()));
        }
        let v = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or_else(|| ScramError::Malformed("missing v".into()))?;
        let got = B64.decode(v).map_err(|e| ScramError::Malformed(e.to_string()))?;
        match &self.server_signature {
            Some(expected) if *expected == got => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_example() {
        let mut c = ScramClient::with_hash(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let fin = c
            .client_final("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_final("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=").unwrap();
    }

    #[test]
    fn rfc5802_example() {
        let mut c = ScramClient::new("user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(c.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = c
            .client_final("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        c.verify_final("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").unwrap();
        assert_eq!(c.verify_final("v=AAAA"), Err(ScramError::BadServerSignature));
    }

    #[test]
    fn hostile_server_first_is_rejected() {
        let mut c = ScramClient::new("a,b=c", "p", "abc");
        assert!(c.client_first().contains("n=a=2Cb=3Dc"));
        assert_eq!(c.client_final("r=xyz,s=AA==,i=1"), Err(ScramError::NonceMismatch));
        assert!(c.client_final("r=abcd,s=AA==,i=0").is_err());
        assert!(c.client_final("garbage").is_err());
    }
}
