//! Started servers as child processes: Debian's binaries on the host (the process backend) or
//! `docker run` attached to a container (the container backend).
//!
//! Every child runs in its own process group so teardown reaches its children too; a Drop
//! guard kills whatever is left on any exit path (error, panic, cancelled future on Ctrl-C).

use super::container::ContainerSpec;
use super::prepare::Prepared;
use super::InfraError;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A started server: a child process that is the server itself, or the `docker run` client
/// attached to the server's container (its exit is the container's exit).
#[derive(Debug)]
pub struct ProcessServer {
    /// What it was started from: name, directory, config, ports, log.
    pub prepared: Prepared,
    /// The container behind the child, when there is one.
    pub container: Option<String>,
    /// Locked so that scenarios running side by side can each ask whether it still runs.
    child: std::sync::Mutex<Option<Child>>,
}

/// Where a prepared server runs.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// Debian's binaries on this host.
    Host,
    /// The server's image, through the Docker CLI.
    Container(ContainerSpec),
}

/// Have the kernel send the child SIGTERM when the thread that started it dies.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe, as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// True when `bin` is found on PATH (or in /usr/sbin, where Debian puts kamailio).
pub fn binary_exists(bin: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(bin).is_file())
}

/// `sh -c` text that runs "$@" and, on SIGTERM, ends the whole process group: TERM, then KILL
/// once the server has exited or 2 s have passed, whichever comes first. Its exit status is
/// the server's.
const GROUP_LEADER: &str =
    r#"trap 'trap "" TERM; kill -TERM 0 2>/dev/null; (sleep 2; kill -KILL 0) & wait $server; kill -KILL 0' TERM; "$@" & server=$!; wait $server"#;

impl ProcessServer {
    /// Run the setup script, then start the server; does not wait for readiness. The script
    /// is awaited (a container's takes a few hundred ms, in which the profile's other servers
    /// start); the server is spawned from the calling thread, which its PDEATHSIG is tied to.
    pub async fn start(prep: &Prepared, launcher: &Launcher) -> Result<ProcessServer, InfraError> {
        let setup = |what: &str, e: std::io::Error| InfraError::Setup { server: prep.name.clone(), message: format!("{what}: {e}") };
        let script = prep.setup.display().to_string();
        let mut provision = match launcher {
            Launcher::Host => {
                let bin = prep.argv[0].as_str();
                if !binary_exists(bin) {
                    return Err(InfraError::Missing { what: bin.into(), install: format!("apt-get install {}", prep.kind.packages()) });
                }
                let mut c = Command::new("sh");
                c.arg(&script);
                c
            }
            Launcher::Container(spec) => spec.setup_command(&prep.name, &script),
        };
        provision.stdin(Stdio::null());
        let out = tokio::process::Command::from(provision).kill_on_drop(true).output().await.map_err(|e| setup("run the setup script", e))?;
        if !out.status.success() {
            return Err(InfraError::Setup {
                server: prep.name.clone(),
                message: format!(
                    "creating accounts ({script}) failed ({}):\n{}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        let (mut cmd, container) = match launcher {
            Launcher::Host => {
                // A shell leads the server's process group and passes a SIGTERM on to the
                // whole group (then SIGKILL after a grace): a server's own processes (ejabberd's
                // beam.smp under the ejabberdctl script, Kamailio's workers) die with it even
                // when sixpac is killed outright and only the leader is told (PDEATHSIG).
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(GROUP_LEADER)
                    .arg("sixpac-server")
                    .args(&prep.argv)
                    .env("HOME", &prep.dir);
                (c, None)
            }
            Launcher::Container(spec) => {
                let (c, name) = spec.server_command(&prep.name, &prep.dir, &prep.argv);
                (c, Some(name))
            }
        };
        let out = std::fs::File::create(&prep.log).map_err(|e| setup("create log", e))?;
        let err = out.try_clone().map_err(|e| setup("create log", e))?;
        cmd.current_dir(&prep.dir).stdin(Stdio::null()).stdout(out).stderr(err);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        // If sixpac itself is killed outright, the child gets SIGTERM: Kamailio's main
        // process then stops its own workers (a SIGKILL would orphan them), and the
        // docker client passes the signal on to its container.
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| setup(&format!("start {}", cmd.get_program().to_string_lossy()), e))?;
        tracing::debug!(server = %prep.name, pid = child.id(), argv = ?prep.argv, dir = %prep.dir.display(), log = %prep.log.display(), container = ?container, "server started");
        Ok(ProcessServer { prepared: prep.clone(), container, child: std::sync::Mutex::new(Some(child)) })
    }

    /// The main PID, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|c| c.id())
    }

    /// Exit status if the process has ended.
    pub fn exited(&self) -> Option<String> {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let c = guard.as_mut()?;
        match c.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.prepared.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM the process group, wait up to `grace`, then SIGKILL what is left.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.get_mut().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let pgid = child.id() as i32;
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        // A stopped (hung) server would keep its SIGTERM pending until the grace ran out.
        unsafe { libc::kill(-pgid, libc::SIGCONT) };
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
        if let Some(name) = self.container.take() {
            // The client is gone; make sure its container is too, whatever state it is in.
            super::container::remove(&name);
        }
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
