//! Real servers for a profile: start (as processes or containers) or find (external), probe,
//! provision accounts, put taps in front, tear down.

pub mod container;
pub mod external;
pub mod facts;
pub mod images;
pub mod prepare;
pub mod process;
pub mod profile;
pub mod readiness;

use crate::tap::{Tap, TapSpec};
use crate::trace::frame::{Proto, Recorder, Transport};
use crate::trace::normalize::AddrName;
use crate::wire::Carrier;
use container::ContainerSpec;
use external::ServersFile;
use process::{Launcher, ProcessServer};
use profile::{Profile, ServerDecl, ServerKind};
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
    #[error("{server} was not ready within {secs} s (no {missing} answer); last log lines:\n{log}")]
    NotReady { server: String, secs: u64, missing: &'static str, log: String },
    #[error("{server} stopped answering: no answer to its {proto} liveness probe within {secs} s (hung?)")]
    NotAnswering { server: String, proto: &'static str, secs: u64 },
    #[error("{server} exited ({status}); last log lines:\n{log}")]
    Crashed { server: String, status: String, log: String },
    #[error("creating account {user} on {server}: {message}")]
    Account { server: String, user: String, message: String },
}

pub use crate::account::Account;
pub use facts::{ServerFacts, Socket};

/// How long a server may take to answer its protocol after start.
pub const READY_DEADLINE: Duration = Duration::from_secs(20);

/// How a profile's servers are had.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Debian's binaries on this host.
    Process,
    /// sixpac's images under Docker, host networking.
    Container,
    /// Servers already up, as a servers file describes them.
    External(ServersFile),
}

impl Backend {
    /// [`Backend::name`] of the external backend.
    pub const EXTERNAL: &'static str = "external";

    /// The name used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Process => "process",
            Backend::Container => "container",
            Backend::External(_) => Self::EXTERNAL,
        }
    }
}

/// A server of the set: started by us (with its process) or found (external).
pub struct RunningServer {
    pub name: String,
    pub kind: ServerKind,
    pub xmpp: Option<SocketAddr>,
    pub sip: Option<SocketAddr>,
    /// SIP over TLS.
    pub sips: Option<SocketAddr>,
    /// Start-to-ready time; zero for external servers.
    pub ready_in: Duration,
    /// The version the server reports on the wire (SIP `Server:`, XMPP jabber:iq:version).
    pub version: Option<String>,
    /// The image id, for the container backend.
    pub image: Option<String>,
    pub process: Option<ProcessServer>,
}

impl RunningServer {
    /// Its own listening sockets.
    pub fn listens(&self) -> Vec<Socket> {
        let socket = |proto, transport, addr| Socket { proto, transport, addr };
        let mut out = Vec::new();
        out.extend(self.xmpp.map(|a| socket(Proto::Xmpp, Transport::Tcp, a)));
        out.extend(self.sip.map(|a| socket(Proto::Sip, Transport::Udp, a)));
        out.extend(self.sip.map(|a| socket(Proto::Sip, Transport::Tcp, a)));
        out.extend(self.sips.map(|a| socket(Proto::Sip, Transport::Tls, a)));
        out
    }
}

/// The servers of one profile, their taps and the recorder the taps write into.
pub struct ServerSet {
    pub profile: Profile,
    pub backend: &'static str,
    pub servers: Vec<RunningServer>,
    pub taps: Vec<Tap>,
    pub recorder: Arc<Recorder>,
    /// The run's test CA and the domain certificate the servers hold (or, for external
    /// servers, the taps' certificate and the servers file's CA); None for external servers
    /// without `tls_ca`.
    pub pki: Option<Arc<crate::tls::Pki>>,
    /// The CA certificate of `pki` as a PEM file, for clients under test to trust.
    pub ca_file: Option<PathBuf>,
    root: Option<PathBuf>,
}

impl Drop for ServerSet {
    fn drop(&mut self) {
        for t in &mut self.taps {
            t.stop();
        }
        for s in &mut self.servers {
            if let Some(p) = &mut s.process {
                p.stop(Duration::from_secs(3));
            }
        }
        if let Some(root) = &self.root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// A fresh private directory for one run's servers, and its run id.
fn run_root(profile: &str) -> std::io::Result<(PathBuf, String)> {
    let safe: String = profile.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let id = format!("{}-{}", std::process::id(), crate::ids::token(6).to_lowercase());
    let dir = std::env::temp_dir().join(format!("sixpac-{id}-{safe}"));
    std::fs::create_dir_all(&dir)?;
    Ok((dir, id))
}

/// Whether a process with this pid exists: kill(pid, 0) fails with ESRCH only when none does.
pub fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; it only checks.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Run directories (`sixpac-<pid>-…` in the temp dir) whose sixpac process is gone.
pub fn stale_run_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let pid = name.strip_prefix("sixpac-").and_then(|r| r.split('-').next()).and_then(|n| n.parse::<i32>().ok());
            pid.is_some_and(|pid| p.is_dir() && !pid_alive(pid))
        })
        .collect()
}

/// Processes whose command line names one of these run directories, or whose working
/// directory is in one: servers that outlived their sixpac, and what their group leader still
/// runs (the `sleep` of its grace period, found by the leak soak). Killed outright (SIGKILL);
/// their PIDs are returned.
pub fn kill_processes_holding(dirs: &[PathBuf]) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let needles: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let mut killed = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let in_dir = std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| dirs.iter().any(|d| cwd.starts_with(d)));
        if pid != std::process::id() as i32 && (in_dir || needles.iter().any(|n| cmdline.contains(n.as_str()))) {
            // SAFETY: plain syscall on a PID we found holding a dead run's directory.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                killed.push(pid);
            }
        }
    }
    killed
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
    /// Have every server of the profile answering, and open taps in front of each.
    /// Started servers get every account before they start (Kamailio's db_text does not
    /// reliably reload a table changed under it), so scenarios only use names made for them.
    pub async fn start(
        profile: &Profile,
        fixtures: &Path,
        accounts: &[Account],
        backend: &Backend,
        mut progress: impl FnMut(&str),
    ) -> Result<ServerSet, InfraError> {
        let mut set = ServerSet {
            profile: profile.clone(),
            backend: backend.name(),
            servers: Vec::new(),
            taps: Vec::new(),
            recorder: Arc::new(Recorder::new()),
            pki: None,
            ca_file: None,
            root: None,
        };
        // The version probe logs in over XMPP, so it needs an account like any actor.
        let probe_account = match backend {
            Backend::External(f) => f.accounts_for(1).map_err(|m| InfraError::Setup { server: profile.name.clone(), message: m })?.remove(0),
            _ => Account { user: format!("probe_{}", crate::ids::token(8)), password: crate::ids::token(16), domain: profile.domain.clone() },
        };
        match backend {
            Backend::External(f) => {
                if let Some(ca) = &f.tls_ca {
                    let pem = std::fs::read(ca).map_err(|e| InfraError::Setup {
                        server: profile.name.clone(),
                        message: format!("tls_ca {}: {e}", ca.display()),
                    })?;
                    let pki = crate::tls::Pki::new(&profile.domain)
                        .and_then(|p| p.trusting_upstream(&pem))
                        .map_err(|e| InfraError::Setup { server: profile.name.clone(), message: format!("tls_ca {}: {e}", ca.display()) })?;
                    set.pki = Some(Arc::new(pki));
                }
                for s in &f.servers {
                    progress(&format!("checking {} at {}", s.name, s.xmpp.or(s.sip).map(|a| a.to_string()).unwrap_or_default()));
                    let started = Instant::now();
                    let mut rs = RunningServer {
                        name: s.name.clone(), kind: s.kind, xmpp: s.xmpp, sip: s.sip, sips: s.sips,
                        ready_in: Duration::ZERO, version: None, image: None, process: None,
                    };
                    let (_, header) = wait_ready(&mut rs, &profile.domain, started, EXTERNAL_DEADLINE, READY_ATTEMPT).await?;
                    after_ready(&mut rs, &[], &probe_account, header).await?;
                    let kinds = tap_kinds(s.kind, set.pki.is_some() && s.sips.is_some());
                    let bound = BoundTaps::bind(&s.name, &kinds, &s.taps).await?;
                    set.taps.extend(bound.start(&rs, &set.pki, &set.recorder)?);
                    set.servers.push(rs);
                }
            }
            Backend::Process | Backend::Container => {
                let (root, run_id) = run_root(&profile.name)
                    .map_err(|e| InfraError::Setup { server: profile.name.clone(), message: format!("temp dir: {e}") })?;
                set.root = Some(root.clone());
                let pki = crate::tls::Pki::new(&profile.domain)
                    .map_err(|e| InfraError::Setup { server: profile.name.clone(), message: e.to_string() })?;
                let pki = Arc::new(pki);
                set.pki = Some(pki.clone());
                let mut all = accounts.to_vec();
                all.push(probe_account.clone());
                let how = ServerStart { profile, fixtures, root: &root, run_id: &run_id, pki: &pki, all: &all, accounts, probe: &probe_account, backend };
                // A profile's servers start side by side, each saying how it goes.
                let progress = std::cell::RefCell::new(&mut progress);
                let say = |m: &str| (progress.borrow_mut())(m);
                let started = crate::side_by_side::join_all(profile.servers.iter().map(|decl| start_one(decl, &how, &set.recorder, &say)).collect()).await;
                let mut first_error = None;
                for r in started {
                    match r {
                        Ok((rs, taps)) => {
                            set.servers.push(rs);
                            set.taps.extend(taps);
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(e);
                }
            }
        }
        set.write_ca_file(&profile.name)?;
        Ok(set)
    }

    /// Write the run's CA certificate where clients under test can read it (the run's temp
    /// directory, made for external servers too).
    fn write_ca_file(&mut self, profile: &str) -> Result<(), InfraError> {
        let Some(pki) = &self.pki else { return Ok(()) };
        let err = |e: std::io::Error| InfraError::Setup { server: profile.to_string(), message: format!("writing the run's CA: {e}") };
        if self.root.is_none() {
            let (root, _) = run_root(profile).map_err(err)?;
            self.root = Some(root);
        }
        let path = self.root.as_ref().expect("just set").join("ca.crt");
        std::fs::write(&path, pki.ca_pem()).map_err(err)?;
        self.ca_file = Some(path);
        Ok(())
    }

    /// Before a scenario: accounts an external backend reuses get their roster, waiting
    /// subscription requests and "on the phone" PEP node cleared, outside every trace (see
    /// `readiness::reset_roster`). Accounts made for the scenario need nothing.
    pub async fn reset_accounts(&self, accounts: &[Account], deadline: tokio::time::Instant) -> Result<(), InfraError> {
        if self.backend != Backend::EXTERNAL {
            return Ok(());
        }
        let Some((server, addr)) = self.servers.iter().find_map(|s| s.xmpp.map(|a| (s.name.clone(), a))) else { return Ok(()) };
        for a in accounts {
            readiness::reset_roster(addr, a, deadline).await.map_err(|e| InfraError::Setup {
                server: server.clone(),
                message: format!("resetting the reused account {} before the scenario: {e}", a.user),
            })?;
        }
        Ok(())
    }

    /// Make every tap inject these faults from now on (empty: none). Each tap counts its
    /// own copies.
    pub fn set_faults(&self, rules: &[crate::tap::FaultRule]) {
        for t in &self.taps {
            *t.faults.lock().expect("faults lock") = rules.to_vec();
        }
    }

    /// Make every UDP tap forget these clients (a scenario's, when it ends).
    pub fn forget_clients(&self, clients: &[SocketAddr]) {
        for t in self.taps.iter().filter(|t| t.spec.transport == Transport::Udp) {
            t.forget_clients(clients);
        }
    }

    /// The tap address actors use for a protocol and transport.
    pub fn endpoint(&self, proto: Proto, transport: Transport) -> Option<SocketAddr> {
        self.taps.iter().find(|t| t.spec.proto == proto && t.spec.transport == transport).map(|t| t.listen)
    }

    /// The first server that has died, as an error naming it.
    pub fn check_alive(&self) -> Result<(), InfraError> {
        for s in &self.servers {
            if let Some(p) = &s.process {
                if let Some(status) = p.exited() {
                    return Err(InfraError::Crashed { server: s.name.clone(), status, log: p.log_tail(15) });
                }
            }
        }
        Ok(())
    }

    /// The first server that has died, or that does not answer its protocols within `within`
    /// (a stream's features for XMPP, an OPTIONS for SIP: the readiness probes), as an error
    /// naming it.
    pub async fn check_answering(&self, within: Duration) -> Result<(), InfraError> {
        let domain = self.profile.domain.clone();
        for s in &self.servers {
            // The readiness probes, with longer attempts: a busy server is not a hung one.
            match wait_ready(s, &domain, Instant::now(), within, Duration::from_millis(500)).await {
                Ok(_) => {}
                Err(InfraError::NotReady { server, secs, missing, .. }) => return Err(InfraError::NotAnswering { server, proto: missing, secs }),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Copy each started server's log into `dir`, and the run's CA certificate (`ca.crt`):
    /// what a client behind the taps must trust.
    pub fn save_logs(&self, dir: &Path) {
        let _ = std::fs::create_dir_all(dir);
        if let Some(pki) = &self.pki {
            let _ = std::fs::write(dir.join("ca.crt"), pki.ca_pem());
        }
        for s in &self.servers {
            if let Some(p) = &s.process {
                let _ = std::fs::copy(&p.prepared.log, dir.join(format!("{}.log", s.name)));
            }
        }
    }

    /// Address -> symbol names for normalization: servers and taps.
    /// Each with the protocol it serves: a TCP port (XMPP) and a UDP port (SIP) may share a
    /// number, and only SIP text names addresses, so SIP names must be preferred.
    pub fn addr_names(&self) -> Vec<AddrName> {
        let named = |addr, proto, carrier, name: &str| AddrName { addr, proto, carrier, name: name.to_string() };
        let mut out = Vec::new();
        for s in &self.servers {
            if let Some(a) = s.sip {
                // A SIP server listens for UDP and TCP on one port number.
                out.push(named(a, Proto::Sip, Carrier::Datagram, &s.name));
                out.push(named(a, Proto::Sip, Carrier::Stream, &s.name));
            }
            if let Some(a) = s.xmpp {
                out.push(named(a, Proto::Xmpp, Carrier::Stream, &s.name));
            }
        }
        for t in &self.taps {
            out.push(named(t.listen, t.spec.proto, t.spec.transport.carrier(), &format!("{}.tap", t.spec.server)));
        }
        out
    }

    /// Stop everything now (the same as dropping, spelled out for the normal path).
    pub fn stop(self) {}
}

/// What starting one server of a profile needs.
struct ServerStart<'a> {
    profile: &'a Profile,
    fixtures: &'a Path,
    root: &'a Path,
    run_id: &'a str,
    pki: &'a Arc<crate::tls::Pki>,
    /// Every account the setup script makes, the probe's too.
    all: &'a [Account],
    /// The scenarios' accounts, which a server that registers in band gets once it runs.
    accounts: &'a [Account],
    probe: &'a Account,
    backend: &'a Backend,
}

/// Start one server behind its taps and wait until it answers, saying how it goes. Whatever
/// fails, the server is stopped (a `RunningServer`'s process stops when dropped).
async fn start_one(decl: &ServerDecl, how: &ServerStart<'_>, recorder: &Arc<Recorder>, say: &dyn Fn(&str)) -> Result<(RunningServer, Vec<Tap>), InfraError> {
    let bound = BoundTaps::bind(&decl.name, &tap_kinds(decl.kind, true), &prepare::TapPorts::default()).await?;
    // A port picked free can be taken by someone else before a slow server (ejabberd)
    // binds it; then start again on new ports.
    let mut attempt = 0;
    let (mut rs, header) = loop {
        attempt += 1;
        let prep = prepare::prepare(decl, how.fixtures, how.root, how.pki, how.all, &bound.ports)?;
        let (launcher, image) = match how.backend {
            Backend::Container => {
                let tag = images::tag_for(decl.kind.name());
                let id = container::image_id(&tag).ok_or_else(|| InfraError::Missing { what: format!("image {tag}"), install: "sixpac images build".into() })?;
                (Launcher::Container(ContainerSpec { image: tag, run_id: how.run_id.to_string(), mount: how.root.to_path_buf() }), Some(id))
            }
            _ => (Launcher::Host, None),
        };
        let kind = if image.is_some() { "container" } else { "process" };
        say(&format!("starting {} ({kind})", decl.name));
        let proc = ProcessServer::start(&prep, &launcher).await?;
        // From the server's start, after its accounts were made.
        let started = Instant::now();
        let loopback = |p: Option<u16>| p.map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        // Owned here before waiting, so that every way out stops it.
        let mut rs = RunningServer {
            name: decl.name.clone(), kind: decl.kind, xmpp: loopback(prep.ports.xmpp), sip: loopback(prep.ports.sip),
            sips: loopback(prep.ports.sips), ready_in: Duration::ZERO, version: None, image, process: Some(proc),
        };
        match wait_ready(&rs, &how.profile.domain, started, READY_DEADLINE, READY_ATTEMPT).await {
            Ok((ready_in, header)) => {
                rs.ready_in = ready_in;
                break (rs, header);
            }
            Err(InfraError::Crashed { log, .. }) if attempt < 3 && port_taken(&log) => {
                say(&format!("{}: a port was taken before it could bind; starting again", decl.name));
                drop(rs);
                let _ = std::fs::remove_dir_all(how.root.join(&decl.name));
            }
            Err(e) => return Err(e),
        }
    };
    after_ready(&mut rs, how.accounts, how.probe, header).await?;
    let taps = bound.start(&rs, &Some(how.pki.clone()), recorder)?;
    say(&format!("{} ready in {} ms ({})", decl.name, rs.ready_in.as_millis(), rs.version.as_deref().unwrap_or("version not reported")));
    Ok((rs, taps))
}

/// The taps a server gets: XMPP c2s, SIP over UDP and TCP, and SIP over TLS where there is a PKI.
fn tap_kinds(kind: ServerKind, tls: bool) -> Vec<(Proto, Transport)> {
    let mut out = Vec::new();
    for proto in kind.serves() {
        match proto {
            Proto::Xmpp => out.push((Proto::Xmpp, Transport::Tcp)),
            Proto::Sip => {
                out.extend([(Proto::Sip, Transport::Udp), (Proto::Sip, Transport::Tcp)]);
                if tls {
                    out.push((Proto::Sip, Transport::Tls));
                }
            }
        }
    }
    out
}

/// A server's taps, bound but not yet relaying, and the ports its config advertises.
struct BoundTaps {
    taps: Vec<(Proto, Transport, crate::tap::BoundTap)>,
    ports: prepare::TapPorts,
}

impl BoundTaps {
    /// Bind a server's taps on the ports given (0: any free one).
    async fn bind(server: &str, kinds: &[(Proto, Transport)], fixed: &prepare::TapPorts) -> Result<BoundTaps, InfraError> {
        let mut out = BoundTaps { taps: Vec::new(), ports: prepare::TapPorts::default() };
        for &(proto, transport) in kinds {
            let slot = out.ports.slot(proto, transport);
            let want = fixed.get(proto, transport);
            let bound = crate::tap::BoundTap::bind(transport, want).await.map_err(|e| InfraError::Setup {
                server: server.to_string(),
                message: format!("binding the {} {} tap on 127.0.0.1:{want}: {e}", proto.name(), transport.name()),
            })?;
            *slot = bound.local_addr().map(|a| a.port()).unwrap_or(0);
            out.taps.push((proto, transport, bound));
        }
        Ok(out)
    }

    /// Start relaying towards the server, now that it answers.
    fn start(self, s: &RunningServer, pki: &Option<Arc<crate::tls::Pki>>, recorder: &Arc<Recorder>) -> Result<Vec<Tap>, InfraError> {
        let mut out = Vec::new();
        for (proto, transport, bound) in self.taps {
            let upstream = match (proto, transport) {
                (Proto::Xmpp, _) => s.xmpp,
                (Proto::Sip, Transport::Tls) => s.sips,
                (Proto::Sip, _) => s.sip,
            };
            let tls = match (proto, transport) {
                (Proto::Sip, Transport::Udp | Transport::Tcp) => None,
                _ => pki.clone(),
            };
            let (Some(upstream), true) = (upstream, transport != Transport::Tls || tls.is_some()) else { continue };
            let spec = TapSpec { server: s.name.clone(), proto, transport, upstream, tls };
            let tap = Tap::start_on(bound, spec, recorder.clone())
                .map_err(|e| InfraError::Setup { server: s.name.clone(), message: format!("tap: {e}") })?;
            out.push(tap);
        }
        Ok(out)
    }
}

/// Whether a crashed server's log says a port was already in use.
fn port_taken(log: &str) -> bool {
    log.contains("eaddrinuse") || log.contains("Address already in use")
}

/// One readiness attempt while a server starts: short, since a UDP probe sent before the
/// socket exists is lost, not refused.
const READY_ATTEMPT: Duration = Duration::from_millis(100);

/// How long an external server may take to answer the first probe.
pub const EXTERNAL_DEADLINE: Duration = Duration::from_secs(10);

/// Probe until the server answers every protocol it serves: start-to-ready time, and the
/// SIP `Server:` header when it serves SIP.
async fn wait_ready(
    s: &RunningServer,
    domain: &str,
    started: Instant,
    within: Duration,
    attempt: Duration,
) -> Result<(Duration, Option<String>), InfraError> {
    let deadline = started + within;
    let log_tail = |s: &RunningServer| s.process.as_ref().map(|p| p.log_tail(15)).unwrap_or_default();
    let (mut xmpp_ok, mut sip_header) = (s.xmpp.is_none(), if s.sip.is_none() { Some(String::new()) } else { None });
    loop {
        if let Some(p) = &s.process {
            if let Some(status) = p.exited() {
                return Err(InfraError::Crashed { server: s.name.clone(), status, log: p.log_tail(15) });
            }
        }
        if let (false, Some(addr)) = (xmpp_ok, s.xmpp) {
            xmpp_ok = readiness::xmpp_answers(addr, domain, attempt).await;
            tracing::trace!(server = %s.name, %addr, answers = xmpp_ok, "XMPP readiness probe");
        }
        if let (None, Some(addr)) = (&sip_header, s.sip) {
            sip_header = readiness::sip_answers(addr, attempt).await;
            tracing::trace!(server = %s.name, %addr, answers = sip_header.is_some(), "SIP readiness probe (OPTIONS)");
        }
        if xmpp_ok {
            if let Some(h) = &sip_header {
                tracing::debug!(server = %s.name, ready_ms = started.elapsed().as_millis() as u64, "server answers on every port");
                return Ok((started.elapsed(), Some(h.clone()).filter(|h| !h.is_empty())));
            }
        }
        if Instant::now() >= deadline {
            let missing = match (xmpp_ok, sip_header.is_some()) {
                (false, false) => "XMPP or SIP",
                (false, true) => "XMPP",
                _ => "SIP",
            };
            return Err(InfraError::NotReady { server: s.name.clone(), secs: within.as_secs(), missing, log: log_tail(s) });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// After readiness: accounts a server makes in-band, then the version it reports (XEP-0092
/// where it serves XMPP, else its SIP `Server:` header).
async fn after_ready(s: &mut RunningServer, accounts: &[Account], probe: &Account, server_header: Option<String>) -> Result<(), InfraError> {
    if s.kind.registers_in_band() && s.process.is_some() {
        let addr = s.xmpp.expect("in-band registration needs XMPP");
        for a in accounts.iter().chain([probe]) {
            readiness::register_in_band(addr, a, Duration::from_secs(5))
                .await
                .map_err(|message| InfraError::Account { server: s.name.clone(), user: a.user.clone(), message })?;
        }
    }
    s.version = match s.xmpp {
        Some(addr) => readiness::xmpp_version(addr, probe, tokio::time::Instant::now() + Duration::from_secs(5)).await.or(server_header),
        None => server_header,
    };
    Ok(())
}
