//! The process backend: Debian's server binaries, each in its own temp directory, on loopback.
//!
//! Every server runs in its own process group so teardown reaches its children too; a Drop
//! guard kills whatever is left on any exit path (error, panic, cancelled future on Ctrl-C).

use super::profile::{ServerDecl, ServerKind};
use super::{Account, InfraError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Ports a server listens on.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Ports {
    pub xmpp: Option<u16>,
    pub sip: Option<u16>,
}

/// A started server process.
#[derive(Debug)]
pub struct ProcessServer {
    pub name: String,
    pub kind: ServerKind,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub ports: Ports,
    pub log: PathBuf,
    child: Option<Child>,
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

/// True when `bin` is found on PATH (or in /usr/sbin, where Debian puts kamailio).
pub fn binary_exists(bin: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(bin).is_file())
}

fn copy_kamailio_tables(db: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(db)?;
    let src = Path::new("/usr/share/kamailio/dbtext/kamailio");
    for t in ["version", "subscriber", "location", "presentity", "active_watchers", "watchers", "xcap", "pua"] {
        std::fs::copy(src.join(t), db.join(t))?;
    }
    Ok(())
}

/// Create one account in a server's storage, before the server starts.
fn provision(decl: &ServerDecl, dir: &Path, config: &Path, a: &Account) -> Result<(), InfraError> {
    let fail = |message: String| InfraError::Account { server: decl.name.clone(), user: a.user.clone(), message };
    match decl.kind {
        ServerKind::Prosody => {
            let out = Command::new("prosodyctl")
                .arg("--config")
                .arg(config)
                .args(["register", &a.user, &a.domain, &a.password])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| fail(format!("prosodyctl: {e}")))?;
            if !out.status.success() {
                return Err(fail(String::from_utf8_lossy(&out.stderr).into_owned()));
            }
        }
        ServerKind::Kamailio => {
            if [&a.user, &a.password].iter().any(|v| v.contains([':', '\n', '\\'])) {
                return Err(fail("db_text rows cannot hold ':', '\\' or newlines".into()));
            }
            let d = &a.domain;
            let ha1 = crate::sip::digest::ha1(&a.user, d, &a.password);
            let ha1b = crate::sip::digest::ha1(&format!("{}@{d}", a.user), d, &a.password);
            let row = format!("0:{}:{d}:{}:{ha1}:{ha1b}\n", a.user, a.password);
            let path = dir.join("db/subscriber");
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(row.as_bytes()))
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        }
    }
    Ok(())
}

impl ProcessServer {
    /// Render the config and start the binary; does not wait for readiness.
    pub fn start(
        decl: &ServerDecl,
        fixtures: &Path,
        root: &Path,
        domain: &str,
        accounts: &[Account],
    ) -> Result<ProcessServer, InfraError> {
        let name = decl.name.clone();
        let setup = |what: &str, e: std::io::Error| InfraError::Setup { server: name.clone(), message: format!("{what}: {e}") };
        if !binary_exists(decl.kind.binary()) {
            return Err(InfraError::Missing {
                what: decl.kind.binary().into(),
                install: format!("apt-get install {}", decl.kind.packages()),
            });
        }
        let dir = root.join(&decl.name);
        std::fs::create_dir_all(dir.join("run")).map_err(|e| setup("create run dir", e))?;
        let template_path = fixtures.join(&decl.config);
        let template = std::fs::read_to_string(&template_path)
            .map_err(|e| setup(&format!("read {}", template_path.display()), e))?;
        let port = free_port().map_err(|e| setup("pick a port", e))?;
        let ports = match decl.kind.serves() {
            crate::trace::frame::Proto::Xmpp => Ports { xmpp: Some(port), sip: None },
            crate::trace::frame::Proto::Sip => Ports { xmpp: None, sip: Some(port) },
        };
        let vars = [
            ("DIR", dir.display().to_string()),
            ("DOMAIN", domain.to_string()),
            ("XMPP_PORT", port.to_string()),
            ("SIP_PORT", port.to_string()),
        ];
        let file = decl.config.file_name().map(PathBuf::from).unwrap_or_else(|| "server.cfg".into());
        let config = dir.join(file);
        std::fs::write(&config, render(&template, &vars)).map_err(|e| setup("write config", e))?;
        let mut cmd = match decl.kind {
            ServerKind::Prosody => {
                for d in ["data", "certs"] {
                    std::fs::create_dir_all(dir.join(d)).map_err(|e| setup("create dir", e))?;
                }
                let mut c = Command::new("prosody");
                c.arg("-F").arg("--config").arg(&config);
                c
            }
            ServerKind::Kamailio => {
                copy_kamailio_tables(&dir.join("db")).map_err(|e| setup("copy db_text tables", e))?;
                let mut c = Command::new("kamailio");
                c.arg("-f").arg(&config).args(["-DD", "-E", "-Y"]).arg(dir.join("run"))
                    .arg("-P").arg(dir.join("run/kamailio.pid")).arg("-w").arg(&dir).args(["-m", "64", "-M", "8"]);
                c
            }
        };
        for a in accounts {
            provision(decl, &dir, &config, a)?;
        }
        let log = dir.join(format!("{}.log", decl.name));
        let out = std::fs::File::create(&log).map_err(|e| setup("create log", e))?;
        let err = out.try_clone().map_err(|e| setup("create log", e))?;
        cmd.current_dir(&dir).stdin(Stdio::null()).stdout(out).stderr(err).env("HOME", &dir);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            // If sixpac itself is killed outright, the server gets SIGTERM: Kamailio's main
            // process then stops its own workers, which a SIGKILL would orphan.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|e| setup(&format!("start {}", decl.kind.binary()), e))?;
        Ok(ProcessServer { name: decl.name.clone(), kind: decl.kind, dir, config, ports, log, child: Some(child) })
    }

    /// The main PID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Exit status if the process has ended.
    pub fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM the process group, wait up to `grace`, then SIGKILL what is left.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else { return };
        let pgid = child.id() as i32;
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Children of the main process (kamailio's workers) share the group: sweep them all.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
