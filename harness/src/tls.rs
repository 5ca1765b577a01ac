//! The run's own test PKI: a CA made for one run, a certificate for the domain (XMPP and SIP)
//! signed by it, and the rustls configurations of the reference client and the taps.
//!
//! Every configuration names the ring provider itself: rustls's process-wide default provider
//! panics when two providers are compiled in, and nothing here should depend on which are.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// How long any TLS handshake sixpac takes part in may take.
pub const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the run's PKI could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("making the run's test CA: {0}")]
    Pki(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("writing certificates to {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{0}")]
    Trust(String),
}

/// One run's CA and the domain certificate it signed.
pub struct Pki {
    /// The domain the certificate is for.
    pub domain: String,
    ca_pem: String,
    leaf_pem: String,
    key_pem: String,
    /// What the reference client trusts: the run's CA only.
    pub client: Arc<ClientConfig>,
    /// What the taps present to clients: the domain certificate.
    pub server: Arc<ServerConfig>,
    /// Whom the taps trust towards the servers: the run's CA for servers sixpac started, the
    /// servers file's `tls_ca` for external ones.
    pub upstream: Arc<ClientConfig>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("domain", &self.domain).finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// A fresh CA (its key never leaves memory) and a certificate for `domain` and
    /// `localhost` signed by it.
    pub fn new(domain: &str) -> Result<Pki, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "sixpac test CA (one run)");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        // Valid around this run only. rcgen's default (1975 to 4096) crashes ejabberd 23.01,
        // whose certificate-expiry timer cannot hold a millennium.
        let now = time::OffsetDateTime::now_utc();
        let (from, until) = (now - time::Duration::days(1), now + time::Duration::days(7));
        (ca_params.not_before, ca_params.not_after) = (from, until);
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(vec![domain.to_string(), "localhost".into()])?;
        leaf_params.distinguished_name.push(DnType::CommonName, domain);
        (leaf_params.not_before, leaf_params.not_after) = (from, until);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

        let client = Arc::new(trusting([ca_cert.der().clone()])?);
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca_cert.der().clone()];
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)?;
        Ok(Pki {
            domain: domain.to_string(),
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
            upstream: client.clone(),
            client,
            server: Arc::new(server),
        })
    }

    /// The same, but the taps trust the CA certificates in `ca_pem` towards the servers
    /// (external servers, whose certificates sixpac did not make).
    pub fn trusting_upstream(mut self, ca_pem: &[u8]) -> Result<Pki, TlsError> {
        self.upstream = client_trusting_pem(ca_pem)?;
        Ok(self)
    }

    /// Write `<domain>.crt` (certificate then CA), `<domain>.key` and `ca.crt` into `dir`,
    /// where Prosody looks for them by name and ejabberd's template points.
    pub fn write_to(&self, dir: &Path) -> Result<(), TlsError> {
        let files = [
            (format!("{}.crt", self.domain), format!("{}{}", self.leaf_pem, self.ca_pem)),
            (format!("{}.key", self.domain), self.key_pem.clone()),
            ("ca.crt".to_string(), self.ca_pem.clone()),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| TlsError::Write { path: path.display().to_string(), source })?;
        }
        Ok(())
    }

    /// The CA certificate, PEM: what a client under test must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
}

/// A byte stream a client leg runs over: plain TCP, or TLS over it.
pub trait ByteStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ByteStream for T {}

/// The client side of a TLS handshake over `io`, for a certificate naming `domain`, within
/// [`HANDSHAKE_DEADLINE`]; the stream under TLS and what the handshake settled.
pub async fn connect<S: ByteStream + 'static>(
    config: Arc<ClientConfig>,
    domain: &str,
    io: S,
) -> std::io::Result<(Box<dyn ByteStream>, String)> {
    let name = rustls::pki_types::ServerName::try_from(domain.to_string()).map_err(std::io::Error::other)?;
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, io);
    let tls = tokio::time::timeout(HANDSHAKE_DEADLINE, handshake)
        .await
        .map_err(|_| std::io::Error::other(format!("no TLS handshake within {} s", HANDSHAKE_DEADLINE.as_secs())))??;
    let facts = describe(tls.get_ref().1);
    Ok((Box::new(tls), facts))
}

/// A client configuration that trusts exactly the CA certificates of a PEM file.
pub fn client_trusting_pem(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Trust(format!("reading the CA certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Trust("no CERTIFICATE block in the CA file".into()));
    }
    Ok(Arc::new(trusting(certs)?))
}

/// A client configuration that trusts exactly these CA certificates.
fn trusting(cas: impl IntoIterator<Item = CertificateDer<'static>>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca)?;
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What a TLS handshake settled, as traces and reports print it.
pub fn describe(conn: &rustls::CommonState) -> String {
    let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_else(|| "?".into());
    let suite = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_else(|| "?".into());
    format!("{version} {suite}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn an_external_ca_file_is_read_or_refused_clearly() {
        let other = Pki::new("x.test").unwrap();
        assert!(Pki::new("x.test").unwrap().trusting_upstream(other.ca_pem().as_bytes()).is_ok());
        let e = Pki::new("x.test").unwrap().trusting_upstream(b"not a certificate").err().unwrap();
        assert!(e.to_string().contains("no CERTIFICATE"), "{e}");
    }

    #[tokio::test]
    async fn client_trusts_the_run_ca_and_nothing_else() {
        let pki = Pki::new("sixpac.test").unwrap();
        let other = Pki::new("sixpac.test").unwrap();
        let name = rustls::pki_types::ServerName::try_from("sixpac.test").unwrap();
        for (client, ok) in [(pki.client.clone(), true), (other.client.clone(), false)] {
            let (a, b) = tokio::io::duplex(65536);
            let acceptor = tokio_rustls::TlsAcceptor::from(pki.server.clone());
            let server = tokio::spawn(async move {
                let mut s = acceptor.accept(b).await.ok()?;
                let mut buf = [0u8; 2];
                s.read_exact(&mut buf).await.ok()?;
                Some(describe(s.get_ref().1))
            });
            let connector = tokio_rustls::TlsConnector::from(client);
            let c = connector.connect(name.clone(), a).await;
            assert_eq!(c.is_ok(), ok, "{:?}", c.as_ref().err());
            if let Ok(mut c) = c {
                c.write_all(b"hi").await.unwrap();
                assert!(server.await.unwrap().unwrap().starts_with("TLSv1_3"));
            }
        }
    }
}
