//! The container backend's side of Docker, spoken through the `docker` CLI (see
//! docs/decisions/0004-docker-cli.md): commands that run a server or its setup in its image,
//! labels, and the sweep that removes whatever a killed run left behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every container sixpac starts carries this label (value `true`); `sixpac clean` removes them.
pub const MANAGED_LABEL: &str = "org.sixpac.managed";
/// The run a container belongs to.
pub const RUN_LABEL: &str = "org.sixpac.run";
/// The profile server a container runs.
pub const SERVER_LABEL: &str = "org.sixpac.server";

/// How long a plain `docker` query may take before the engine counts as not answering.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(15);

/// Run a command to completion, killing it when `deadline` passes.
pub fn output_within(cmd: &mut Command, deadline: Duration) -> Result<Output, String> {
    let what = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    // Drain both pipes on threads so a chatty command cannot block on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || read_all(out.as_mut()));
    let t_err = std::thread::spawn(move || read_all(err.as_mut()));
    let until = Instant::now() + deadline;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {} s", deadline.as_secs()));
            }
        }
    };
    Ok(Output { status, stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() })
}

fn read_all<R: std::io::Read>(r: Option<&mut R>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(r) = r {
        let _ = r.read_to_end(&mut v);
    }
    v
}

/// `docker` with the given arguments, its stdout trimmed on success, stderr as the error.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = output_within(Command::new("docker").args(args), QUERY_DEADLINE)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The engine's version when a Docker engine answers; why not otherwise.
pub fn engine_answers() -> Result<String, String> {
    docker(&["version", "--format", "{{.Server.Version}}"]).map_err(|e| {
        if e.is_empty() { "the Docker engine did not answer".into() } else { e }
    })
}

/// The image's id, when the engine has it.
pub fn image_id(image: &str) -> Option<String> {
    docker(&["image", "inspect", "--format", "{{.Id}}", image]).ok().filter(|s| !s.is_empty())
}

/// Force-remove one container; quiet when it is already gone.
pub fn remove(name: &str) {
    let _ = docker(&["rm", "-f", name]);
}

/// Remove every container carrying sixpac's label; returns the names removed. Containers the
/// engine is already removing (a `--rm` container whose server just stopped) are waited for.
pub fn clean() -> Result<Vec<String>, String> {
    let filter = format!("label={MANAGED_LABEL}=true");
    // The containers of runs whose sixpac is gone (or that carry no run at all): a live run's
    // containers are its own to stop.
    let list = || -> Result<Vec<String>, String> {
        let format = format!("{{{{.Names}}}}\t{{{{.Label \"{RUN_LABEL}\"}}}}");
        let listed = docker(&["ps", "-a", "--filter", &filter, "--format", &format])?;
        Ok(listed
            .lines()
            .filter_map(|l| {
                let (name, run) = l.split_once('\t').unwrap_or((l, ""));
                let pid = run.split('-').next().and_then(|p| p.parse::<i32>().ok());
                (!name.is_empty() && !pid.is_some_and(super::pid_alive)).then(|| name.to_string())
            })
            .collect())
    };
    let names = list()?;
    for n in &names {
        if let Err(e) = docker(&["rm", "-f", n]) {
            if !e.contains("already in progress") && !e.contains("No such container") {
                return Err(format!("removing {n}: {e}"));
            }
        }
    }
    let until = Instant::now() + QUERY_DEADLINE;
    loop {
        let left: Vec<String> = list()?.into_iter().filter(|n| names.contains(n)).collect();
        if left.is_empty() {
            return Ok(names);
        }
        if Instant::now() > until {
            return Err(format!("still there after {} s: {}", QUERY_DEADLINE.as_secs(), left.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How to run one run's servers in one image.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub image: String,
    pub run_id: String,
    /// The run's directory, mounted at the same path so rendered paths hold inside too.
    pub mount: PathBuf,
}

impl ContainerSpec {
    /// `docker run` with everything both uses share: labels, the mount, the caller's uid.
    fn run(&self, server: &str, container: &str) -> Command {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mount = self.mount.display().to_string();
        let mut c = Command::new("docker");
        c.args(["run", "--rm", "--init", "--name", container])
            .args(["--label", &format!("{MANAGED_LABEL}=true")])
            .args(["--label", &format!("{RUN_LABEL}={}", self.run_id)])
            .args(["--label", &format!("{SERVER_LABEL}={server}")])
            // Files the server writes stay owned by whoever runs sixpac, so teardown can delete them.
            .args(["--user", &format!("{uid}:{gid}")])
            .args(["-v", &format!("{mount}:{mount}")]);
        c
    }

    /// The container name for a server of this run.
    pub fn container_name(&self, server: &str) -> String {
        let safe: String = server.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        format!("sixpac-{}-{safe}", self.run_id)
    }

    /// Run the setup script inside the image, without network.
    pub fn setup_command(&self, server: &str, script: &str) -> Command {
        let mut c = self.run(server, &format!("{}-setup", self.container_name(server)));
        c.args(["--network", "none", &self.image, "sh", script]);
        c
    }

    /// Run the server in the foreground on the host's network namespace: SIP over UDP then
    /// sees real loopback addresses, not the bridge's NAT (Via, Contact and rport stay true).
    pub fn server_command(&self, server: &str, dir: &Path, argv: &[String]) -> (Command, String) {
        let name = self.container_name(server);
        let mut c = self.run(server, &name);
        c.args(["--network", "host", "-w"]).arg(dir).arg("-e").arg(format!("HOME={}", dir.display()));
        c.arg(&self.image).args(argv);
        (c, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_within_kills_a_command_past_its_deadline() {
        let t = Instant::now();
        let err = output_within(Command::new("sleep").arg("5"), Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn server_command_labels_mounts_and_uses_host_network() {
        let spec = ContainerSpec { image: "sixpac/kamailio".into(), run_id: "r1".into(), mount: "/tmp/x".into() };
        let (cmd, name) = spec.server_command("kamailio", Path::new("/tmp/x/kamailio"), &["kamailio".into(), "-DD".into()]);
        assert_eq!(name, "sixpac-r1-kamailio");
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        for want in ["--label org.sixpac.managed=true", "--label org.sixpac.run=r1", "-v /tmp/x:/tmp/x", "--network host", "sixpac/kamailio kamailio -DD"] {
            assert!(joined.contains(want), "missing `{want}` in {joined}");
        }
    }
}
