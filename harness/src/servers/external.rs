//! The external backend's input: a servers file naming servers that are already up and the
//! accounts that already exist on them. sixpac starts and stops nothing in this mode.

use super::profile::ServerKind;
use super::Account;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// A YAML error in a servers or client file, as `path:line:column: message` in our words.
pub fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> String {
    let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
    format!("{}{at}: {}", path.display(), crate::scenario::parse::in_our_words(&e.without_snippet().to_string()))
}

/// One running server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalServer {
    pub name: String,
    pub kind: ServerKind,
    /// XMPP c2s address, for an XMPP server.
    #[serde(default)]
    pub xmpp: Option<SocketAddr>,
    /// SIP address (UDP and TCP), for a SIP server.
    #[serde(default)]
    pub sip: Option<SocketAddr>,
    /// SIP over TLS, if the server offers it (used only with `tls_ca`).
    #[serde(default)]
    pub sips: Option<SocketAddr>,
    /// Fixed 127.0.0.1 ports for the taps in front of it (absent or 0: any free one), for a
    /// server whose config names the taps in its Via and Record-Route (the compose Kamailio).
    #[serde(default)]
    pub taps: super::prepare::TapPorts,
}

/// An existing account; the same name and password on every server of the profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalAccount {
    pub user: String,
    pub password: String,
}

/// A servers file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServersFile {
    /// The profile whose expected traces these servers are held to.
    pub profile: String,
    pub domain: String,
    /// PEM file (relative to the servers file) with the CA that signed the servers'
    /// certificates. With it the taps terminate TLS as for servers sixpac starts; without it
    /// scenarios whose actors need TLS are inconclusive.
    #[serde(default)]
    pub tls_ca: Option<std::path::PathBuf>,
    pub servers: Vec<ExternalServer>,
    /// Handed to scenario actors in order; each scenario starts again from the first.
    pub accounts: Vec<ExternalAccount>,
}

impl ServersFile {
    /// Read and check a servers file.
    pub fn load(path: &Path) -> Result<ServersFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut f: ServersFile = serde_saphyr::from_str(&text).map_err(|e| yaml_error(path, &e))?;
        if let (Some(ca), Some(dir)) = (&f.tls_ca, path.parent()) {
            f.tls_ca = Some(dir.join(ca));
        }
        for s in &f.servers {
            for proto in s.kind.serves() {
                let (addr, key) = match proto {
                    crate::trace::frame::Proto::Xmpp => (s.xmpp, "xmpp"),
                    crate::trace::frame::Proto::Sip => (s.sip, "sip"),
                };
                if addr.is_none() {
                    return Err(format!("{}: server `{}` needs `{key}: host:port`", path.display(), s.name));
                }
            }
        }
        if f.accounts.is_empty() {
            return Err(format!("{}: `accounts` is empty; scenarios need existing accounts", path.display()));
        }
        Ok(f)
    }

    /// The accounts for a scenario with `actors` actors, or why there are too few.
    pub fn accounts_for(&self, actors: usize) -> Result<Vec<Account>, String> {
        if actors > self.accounts.len() {
            return Err(format!("a scenario has {actors} actors but the servers file lists {} accounts", self.accounts.len()));
        }
        Ok(self.accounts[..actors]
            .iter()
            .map(|a| Account { user: a.user.clone(), password: a.password.clone(), domain: self.domain.clone() })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_servers_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/compose/servers.yaml");
        let f = ServersFile::load(&path).unwrap();
        assert_eq!(f.profile, "prosody+kamailio");
        assert!(f.accounts_for(2).is_ok());
        assert!(f.accounts_for(99).unwrap_err().contains("99 actors"));
        // tls_ca is relative to the servers file.
        assert!(f.tls_ca.unwrap().ends_with("compose/certs/ca.crt"));
        assert!(f.servers.iter().any(|s| s.sips.is_some()));
    }

    #[test]
    fn a_server_without_its_address_is_refused() {
        let dir = std::env::temp_dir().join(format!("sixpac-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.yaml");
        std::fs::write(&p, "profile: p\ndomain: d\nservers:\n  - {name: k, kind: kamailio}\naccounts: [{user: a, password: b}]\n").unwrap();
        let err = ServersFile::load(&p).unwrap_err();
        assert!(err.contains("needs `sip: host:port`"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
