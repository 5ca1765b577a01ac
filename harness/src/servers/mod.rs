//! Real servers for a profile: start, probe, provision accounts, put taps in front, tear down.

pub mod process;
pub mod profile;
pub mod readiness;

use crate::tap::{Tap, TapSpec};
use crate::trace::frame::{Proto, Recorder, Transport};
use process::ProcessServer;
use profile::Profile;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Infrastructure trouble: verdict `error`, exit code 3.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("{what} is not installed; install it with: {install}")]
    Missing { what: String, install: String },
    #[error("{server}: {message}")]
    Setup { server: String, message: String },
    #[error("{server} was not ready within {secs} s; last log lines:\n{log}")]
    NotReady { server: String, secs: u64, log: String },
    #[error("{server} exited ({status}); last log lines:\n{log}")]
    Crashed { server: String, status: String, log: String },
    #[error("creating account {user} on {server}: {message}")]
    Account { server: String, user: String, message: String },
}

/// Credentials made for one actor of one scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub password: String,
    pub domain: String,
}

/// How long a server may take to answer its protocol after start.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// A started server with its measured start-to-ready time.
pub struct RunningServer {
    pub process: ProcessServer,
    pub ready_in: Duration,
}

/// The servers of one profile, their taps and the recorder the taps write into.
pub struct ServerSet {
    pub profile: Profile,
    pub servers: Vec<RunningServer>,
    pub taps: Vec<Tap>,
    pub recorder: Arc<Recorder>,
    root: PathBuf,
}

impl Drop for ServerSet {
    fn drop(&mut self) {
        for t in &mut self.taps {
            t.stop();
        }
        for s in &mut self.servers {
            s.process.stop(Duration::from_secs(3));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A fresh private directory for one run's servers.
fn run_root(profile: &str) -> std::io::Result<PathBuf> {
    let safe: String = profile.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let dir = std::env::temp_dir().join(format!(
        "sixpac-{}-{safe}-{}",
        std::process::id(),
        crate::client::sip::ua::token(6)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// What the process backend would need for a profile, as install hints; empty when all present.
pub fn missing_binaries(profile: &Profile) -> Vec<String> {
    profile
        .servers
        .iter()
        .filter(|s| !process::binary_exists(s.kind.binary()))
        .map(|s| format!("{} (apt-get install {})", s.kind.binary(), s.kind.packages()))
        .collect()
}

impl ServerSet {
    /// Start every server of the profile, wait until each answers, and open taps.
    /// Every account is provisioned before the servers start (Kamailio's db_text does not
    /// reliably reload a table changed under it), so scenarios only use names made for them.
    pub async fn start(
        profile: &Profile,
        fixtures: &Path,
        accounts: &[Account],
        mut progress: impl FnMut(&str),
    ) -> Result<ServerSet, InfraError> {
        let root = run_root(&profile.name)
            .map_err(|e| InfraError::Setup { server: profile.name.clone(), message: format!("temp dir: {e}") })?;
        let recorder = Arc::new(Recorder::new());
        let mut set = ServerSet {
            profile: profile.clone(),
            servers: Vec::new(),
            taps: Vec::new(),
            recorder,
            root,
        };
        for decl in &profile.servers {
            progress(&format!("starting {} ({})", decl.name, decl.kind.binary()));
            let started = Instant::now();
            let mut proc = ProcessServer::start(decl, fixtures, &set.root, &profile.domain, accounts)?;
            let ready_in = wait_ready(&mut proc, &profile.domain, started).await;
            // Keep the process owned by the set even on failure so teardown reaches it.
            set.servers.push(RunningServer { process: proc, ready_in: *ready_in.as_ref().unwrap_or(&Duration::ZERO) });
            let ready_in = ready_in?;
            progress(&format!("{} ready in {} ms", decl.name, ready_in.as_millis()));
        }
        for s in &set.servers {
            let p = &s.process;
            let specs: Vec<TapSpec> = match (p.kind.serves(), p.ports.xmpp, p.ports.sip) {
                (Proto::Xmpp, Some(port), _) => vec![tap_spec(&p.name, Proto::Xmpp, Transport::Tcp, port)],
                (Proto::Sip, _, Some(port)) => vec![
                    tap_spec(&p.name, Proto::Sip, Transport::Udp, port),
                    tap_spec(&p.name, Proto::Sip, Transport::Tcp, port),
                ],
                _ => vec![],
            };
            for spec in specs {
                let tap = Tap::start(spec, set.recorder.clone()).await.map_err(|e| InfraError::Setup {
                    server: p.name.clone(),
                    message: format!("tap: {e}"),
                })?;
                set.taps.push(tap);
            }
        }
        Ok(set)
    }

    /// The tap address actors use for a protocol and transport.
    pub fn endpoint(&self, proto: Proto, transport: Transport) -> Option<SocketAddr> {
        self.taps.iter().find(|t| t.spec.proto == proto && t.spec.transport == transport).map(|t| t.listen)
    }

    /// The first server that has died, as an error naming it.
    pub fn check_alive(&mut self) -> Result<(), InfraError> {
        for s in &mut self.servers {
            if let Some(status) = s.process.exited() {
                return Err(InfraError::Crashed { server: s.process.name.clone(), status, log: s.process.log_tail(15) });
            }
        }
        Ok(())
    }

    /// Copy each server's log into `dir`.
    pub fn save_logs(&self, dir: &Path) {
        let _ = std::fs::create_dir_all(dir);
        for s in &self.servers {
            let _ = std::fs::copy(&s.process.log, dir.join(format!("{}.log", s.process.name)));
        }
    }

    /// Address -> symbol names for normalization: servers and taps.
    pub fn addr_names(&self) -> Vec<(SocketAddr, String)> {
        let mut out = Vec::new();
        for s in &self.servers {
            for port in [s.process.ports.xmpp, s.process.ports.sip].into_iter().flatten() {
                out.push((SocketAddr::from(([127, 0, 0, 1], port)), s.process.name.clone()));
            }
        }
        for t in &self.taps {
            out.push((t.listen, format!("{}.tap", t.spec.server)));
        }
        out
    }

    /// Stop everything now (the same as dropping, spelled out for the normal path).
    pub fn stop(self) {}
}

fn tap_spec(server: &str, proto: Proto, transport: Transport, port: u16) -> TapSpec {
    TapSpec { server: server.into(), proto, transport, upstream: SocketAddr::from(([127, 0, 0, 1], port)) }
}

async fn wait_ready(p: &mut ProcessServer, domain: &str, started: Instant) -> Result<Duration, InfraError> {
    let deadline = started + READY_DEADLINE;
    loop {
        if let Some(status) = p.exited() {
            return Err(InfraError::Crashed { server: p.name.clone(), status, log: p.log_tail(15) });
        }
        // Short probes: a UDP probe sent before the socket exists is lost, not refused.
        let probe = Duration::from_millis(100);
        let ok = match (p.ports.xmpp, p.ports.sip) {
            (Some(port), _) => readiness::xmpp_answers(SocketAddr::from(([127, 0, 0, 1], port)), domain, probe).await,
            (_, Some(port)) => readiness::sip_answers(SocketAddr::from(([127, 0, 0, 1], port)), probe).await,
            _ => true,
        };
        if ok {
            return Ok(started.elapsed());
        }
        if Instant::now() >= deadline {
            return Err(InfraError::NotReady { server: p.name.clone(), secs: READY_DEADLINE.as_secs(), log: p.log_tail(15) });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
