//! Getting a server ready to start, the same for every backend: a private directory, the
//! rendered config, a port, and a setup script that creates the accounts.
//!
//! The setup script is plain `sh`, so the process backend runs it on the host and the container
//! backend runs it inside the server's image, where the server's own tools (prosodyctl, the
//! Kamailio table templates) live.

use super::profile::{ServerDecl, ServerKind};
use super::{Account, InfraError};
use crate::trace::frame::{Proto, Transport};
use std::path::{Path, PathBuf};

/// Ports a server listens on.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Ports {
    pub xmpp: Option<u16>,
    pub sip: Option<u16>,
    /// SIP over TLS (TCP).
    pub sips: Option<u16>,
}

/// The ports of a server's taps, which its config advertises (0: no such tap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapPorts {
    #[serde(default)]
    pub xmpp: u16,
    #[serde(default)]
    pub sip_udp: u16,
    #[serde(default)]
    pub sip_tcp: u16,
    #[serde(default)]
    pub sip_tls: u16,
}

impl TapPorts {
    /// The port of the tap for this protocol and transport.
    pub fn get(&self, proto: Proto, transport: Transport) -> u16 {
        let mut copy = *self;
        *copy.slot(proto, transport)
    }

    /// Where the port of the tap for this protocol and transport is kept.
    pub fn slot(&mut self, proto: Proto, transport: Transport) -> &mut u16 {
        match (proto, transport) {
            (Proto::Xmpp, _) => &mut self.xmpp,
            (Proto::Sip, Transport::Udp) => &mut self.sip_udp,
            (Proto::Sip, Transport::Tcp) => &mut self.sip_tcp,
            (Proto::Sip, Transport::Tls) => &mut self.sip_tls,
        }
    }
}

/// A server whose directory, config and setup script exist, not yet started.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub name: String,
    pub kind: ServerKind,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ports: Ports,
    pub log: PathBuf,
    /// The server in the foreground, as argv.
    pub argv: Vec<String>,
    /// `sh` script that provisions the accounts; run once before the server starts.
    pub setup: PathBuf,
}

/// A port free on 127.0.0.1 for both TCP and UDP at the time of asking.
pub fn free_port() -> std::io::Result<u16> {
    for _ in 0..50 {
        let t = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = t.local_addr()?.port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no port free for both TCP and UDP"))
}

/// Fill a template's placeholders.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |t, (k, v)| t.replace(&format!("@{k}@"), v))
}

/// One word for `sh`, whatever bytes it holds.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

const KAMAILIO_TABLES: [&str; 8] =
    ["version", "subscriber", "location", "presentity", "active_watchers", "watchers", "xcap", "pua"];

/// The setup script's lines for one server: tables, then one account per line.
fn setup_script(decl: &ServerDecl, dir: &Path, accounts: &[Account]) -> Result<String, InfraError> {
    let dir_s = dir.display().to_string();
    let mut lines = vec!["set -e".to_string(), format!("cd {}", sh_quote(&dir_s)), format!("export HOME={}", sh_quote(&dir_s))];
    match decl.kind {
        ServerKind::Prosody => {
            // Written straight into Prosody's internal storage (what `prosodyctl register` would
            // write, a Lua table per account) so that a thousand load users take milliseconds,
            // not a prosodyctl start each (36 ms).
            let mut hosts: Vec<&str> = accounts.iter().map(|a| a.domain.as_str()).collect();
            hosts.dedup();
            for h in hosts {
                lines.push(format!("mkdir -p {}", sh_quote(&format!("data/{}/accounts", prosody_path_part(h)))));
            }
            for a in accounts {
                let file = format!("data/{}/accounts/{}.dat", prosody_path_part(&a.domain), prosody_path_part(&a.user));
                let body = format!("return {{\n\t[\"password\"] = {};\n}};\n", lua_string(&a.password));
                lines.push(format!("printf '%s' {} > {}", sh_quote(&body), sh_quote(&file)));
            }
        }
        // ejabberd's accounts are made in-band once it runs (see `registers_in_band`).
        ServerKind::Ejabberd => lines.push("mkdir -p logs spool".into()),
        ServerKind::Kamailio => {
            lines.push("mkdir -p db".into());
            for t in KAMAILIO_TABLES {
                lines.push(format!("cp /usr/share/kamailio/dbtext/kamailio/{t} db/{t}"));
            }
            for a in accounts {
                if [&a.user, &a.password].iter().any(|v| v.contains([':', '\n', '\\'])) {
                    return Err(InfraError::Account {
                        server: decl.name.clone(),
                        user: a.user.clone(),
                        message: "db_text rows cannot hold ':', '\\' or newlines".into(),
                    });
                }
                let d = &a.domain;
                let ha1 = crate::sip::digest::ha1(&a.user, d, &a.password);
                let ha1b = crate::sip::digest::ha1(&format!("{}@{d}", a.user), d, &a.password);
                let row = format!("0:{}:{d}:{}:{ha1}:{ha1b}", a.user, a.password);
                lines.push(format!("printf '%s\\n' {} >> db/subscriber", sh_quote(&row)));
            }
        }
    }
    Ok(lines.join("\n") + "\n")
}

/// A JID part as Prosody's datamanager names its files: every byte that is not an ASCII
/// letter or digit becomes `%xx` (lowercase hex).
fn prosody_path_part(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02x}") }).collect()
}

/// A Lua string literal holding `s`'s bytes.
fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Make the server's directory under `root`: config, port, setup script and start command.
pub fn prepare(
    decl: &ServerDecl,
    fixtures: &Path,
    root: &Path,
    pki: &crate::tls::Pki,
    accounts: &[Account],
    taps: &TapPorts,
) -> Result<Prepared, InfraError> {
    let domain = pki.domain.as_str();
    let setup_err = |what: &str, e: std::io::Error| InfraError::Setup { server: decl.name.clone(), message: format!("{what}: {e}") };
    let dir = root.join(&decl.name);
    for d in ["run", "data", "certs"] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| setup_err("create run dir", e))?;
    }
    // certs/<domain>.crt and .key: where Prosody looks by name, and where ejabberd's
    // template points.
    pki.write_to(&dir.join("certs")).map_err(|e| InfraError::Setup { server: decl.name.clone(), message: e.to_string() })?;
    let template_path = fixtures.join(&decl.config);
    let template = std::fs::read_to_string(&template_path)
        .map_err(|e| setup_err(&format!("read {}", template_path.display()), e))?;
    let port = || free_port().map_err(|e| setup_err("pick a port", e));
    let mut ports = Ports::default();
    for proto in decl.kind.serves() {
        match proto {
            Proto::Xmpp => ports.xmpp = Some(port()?),
            Proto::Sip => {
                ports.sip = Some(port()?);
                ports.sips = Some(port()?);
            }
        }
    }
    let token = crate::ids::token(12);
    let vars = [
        ("DIR", dir.display().to_string()),
        ("DOMAIN", domain.to_string()),
        ("XMPP_PORT", ports.xmpp.unwrap_or(0).to_string()),
        ("SIP_PORT", ports.sip.unwrap_or(0).to_string()),
        ("SIPS_PORT", ports.sips.unwrap_or(0).to_string()),
        // The taps in front, which the server names in Via, Record-Route and its own Contacts.
        ("XMPP_TAP_PORT", taps.xmpp.to_string()),
        ("SIP_TAP_UDP", taps.sip_udp.to_string()),
        ("SIP_TAP_TCP", taps.sip_tcp.to_string()),
        ("SIP_TAP_TLS", taps.sip_tls.to_string()),
        // ejabberd's Erlang node: its own name, distribution port and cookie per run.
        ("NODE", format!("sixpac_{token}")),
        ("DIST_PORT", port()?.to_string()),
        ("COOKIE", format!("sixpac{token}")),
    ];
    let file = decl.config.file_name().map(PathBuf::from).unwrap_or_else(|| "server.cfg".into());
    let config = dir.join(file);
    std::fs::write(&config, render(&template, &vars)).map_err(|e| setup_err("write config", e))?;
    // Other files beside the template (ejabberdctl.cfg, inetrc) are rendered too.
    if let Some(tdir) = template_path.parent() {
        let entries = std::fs::read_dir(tdir).map_err(|e| setup_err(&format!("read {}", tdir.display()), e))?;
        for e in entries.flatten().filter(|e| e.path() != template_path && e.path().is_file()) {
            let text = std::fs::read_to_string(e.path()).map_err(|err| setup_err(&format!("read {}", e.path().display()), err))?;
            std::fs::write(dir.join(e.file_name()), render(&text, &vars)).map_err(|err| setup_err("write config", err))?;
        }
    }
    let setup = dir.join("setup.sh");
    std::fs::write(&setup, setup_script(decl, &dir, accounts)?).map_err(|e| setup_err("write setup script", e))?;
    let cfg = config.display().to_string();
    let d = dir.display().to_string();
    let argv: Vec<String> = match decl.kind {
        ServerKind::Prosody => vec!["prosody".into(), "-F".into(), "--config".into(), cfg],
        ServerKind::Kamailio => [
            "kamailio", "-f", &cfg, "-DD", "-E", "-Y", &format!("{d}/run"), "-P", &format!("{d}/run/kamailio.pid"),
            "-w", &d, "-m", "1024", "-M", "8",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ServerKind::Ejabberd => [
            "ejabberdctl", "--config-dir", &d, "--config", &cfg, "--ctl-config", &format!("{d}/ejabberdctl.cfg"),
            "--logs", &format!("{d}/logs"), "--spool", &format!("{d}/spool"), "foreground",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    };
    let log = dir.join(format!("{}.log", decl.name));
    Ok(Prepared { name: decl.name.clone(), kind: decl.kind, dir, config, ports, log, argv, setup })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prosody_accounts_are_files_named_and_quoted_as_prosody_does() {
        assert_eq!(prosody_path_part("alice_1f.x"), "alice%5f1f%2ex");
        assert_eq!(prosody_path_part("example.test"), "example%2etest");
        assert_eq!(lua_string("a\"b\\c\nd"), r#""a\"b\\c\010d""#);
        let decl = ServerDecl { name: "p".into(), kind: ServerKind::Prosody, config: "p.cfg".into() };
        let a = Account { user: "bob_01".into(), password: "it's \"x\"".into(), domain: "example.test".into() };
        let dir = std::env::temp_dir().join(format!("sixpac-prep-{}", crate::ids::token(8)));
        std::fs::create_dir_all(&dir).unwrap();
        let script = setup_script(&decl, &dir, &[a]).unwrap();
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let written = std::fs::read_to_string(dir.join("data/example%2etest/accounts/bob%5f01.dat")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(written, "return {\n\t[\"password\"] = \"it's \\\"x\\\"\";\n};\n");
    }

    #[test]
    fn sh_quote_survives_quotes_and_newlines() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote("x'y\n$HOME `z`")))
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"x'y\n$HOME `z`");
    }

    #[test]
    fn kamailio_rejects_colons_in_passwords() {
        let decl = ServerDecl { name: "k".into(), kind: ServerKind::Kamailio, config: "k.cfg".into() };
        let a = Account { user: "u".into(), password: "p:q".into(), domain: "d".into() };
        let err = setup_script(&decl, Path::new("/x"), &[a]).unwrap_err();
        assert!(err.to_string().contains("cannot hold"), "{err}");
    }
}
