//! A client under test, played through a driver process that speaks the driver protocol
//! (docs/driver-protocol.md): JSON lines, sixpac's on the driver's stdin, the driver's on its
//! stdout; its stderr is the client's log. Every wait has a deadline, and a driver that exits,
//! hangs or writes anything but the protocol ends the scenario with `error` naming the client.
//! The driver runs in its own process group, which is killed whatever happens.

use super::actor::StepError;
use super::intent::{Intent, Setup};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The protocol version this sixpac speaks.
pub const PROTOCOL: u32 = 1;
/// How long a driver may take to start and say hello.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(15);
/// What a driver gets on top of the step's own deadline to answer a command.
pub const COMMAND_MARGIN: Duration = Duration::from_secs(5);
/// How long a driver whose output closed is given to exit, so its status can be reported.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// A client file: how to start the driver of a client under test.
#[derive(Debug, Clone)]
pub struct ClientFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The client's name, until its driver says hello with its own.
    pub name: String,
    /// The driver's argv; a relative program path is taken from the client file's folder,
    /// and `sixpac` means this very binary.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Where this client's expected traces live; none: beside the scenarios (the reference
    /// client's own).
    pub traces: Option<PathBuf>,
    /// The client file's folder, where the driver runs.
    pub dir: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientYaml {
    name: String,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    traces: Option<PathBuf>,
}

impl ClientFile {
    /// Read and check a client file.
    pub fn load(path: &Path) -> Result<ClientFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read client file {}: {e}", path.display()))?;
        let y: ClientYaml = serde_saphyr::from_str(&text).map_err(|e| format!("client file {}", crate::servers::external::yaml_error(path, &e)))?;
        if y.command.is_empty() {
            return Err(format!("client file {}: `command` is empty", path.display()));
        }
        // Absolute, because the driver runs in this folder (its own relative paths work there).
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let dir = dir.canonicalize().map_err(|e| format!("client file {}: its folder: {e}", path.display()))?;
        let dir = dir.as_path();
        let mut command = y.command;
        if command[0].contains('/') && Path::new(&command[0]).is_relative() {
            command[0] = dir.join(&command[0]).display().to_string();
        }
        Ok(ClientFile { path: path.to_path_buf(), name: y.name, command, env: y.env, traces: y.traces.map(|t| dir.join(t)), dir: dir.to_path_buf() })
    }
}

/// What sixpac writes to a driver.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ToDriver<'a> {
    Hello { protocol: u32, actor: &'a str },
    Command { id: u64, setup: &'a Setup, intent: &'a Intent },
    Bye,
}

/// How a command failed, as the driver judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// The system under test did wrong.
    Fail,
    /// The client or its driver broke.
    Error,
    /// The client cannot do this.
    Inconclusive,
}

/// What a driver writes to sixpac.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FromDriver {
    Hello { protocol: u32, name: String, version: String, can: Vec<String> },
    Done { id: u64 },
    Failed { id: u64, verdict: Failure, reason: String },
    /// Something the client reported on its own: `registered`, `logged-in`, `message`,
    /// `incoming-call`, `call-state`, `presence`, `subscription-request`, `told-user`.
    Event {
        event: String,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        about: Option<String>,
        #[serde(default)]
        details: serde_json::Map<String, serde_json::Value>,
    },
}

enum Line {
    Msg(FromDriver),
    Garbage(String),
    Closed,
}

/// A running driver for one actor.
pub struct Driver {
    /// `name version` as the driver said.
    pub label: String,
    can: Vec<String>,
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    lines: mpsc::UnboundedReceiver<Line>,
    next_id: u64,
    /// What the client told its user and the run has not shown yet.
    notices: Vec<String>,
    /// Every told-user event, by what it was about (`protection`, `caution`), newest last.
    pub told: Vec<(Option<String>, String)>,
    /// Index into `told` where the last call began (cautions count from there).
    told_at_last_call: usize,
    /// Events the driver reported, one JSON line each, for the client's log.
    events: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Once the driver broke, every further command is refused at once.
    broken: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Driver {
    /// Start the driver and wait for its hello.
    pub async fn start(file: &ClientFile, actor: &str) -> Result<Driver, StepError> {
        let program = if file.command[0] == "sixpac" {
            std::env::current_exe().map_err(|e| StepError::Error(format!("client {}: {e}", file.name)))?
        } else {
            PathBuf::from(&file.command[0])
        };
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&file.command[1..])
            .envs(&file.env)
            .current_dir(&file.dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe, as pre_exec requires.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| StepError::Error(format!("client {}: cannot start its driver {}: {e}", file.name, program.display())))?;
        let stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let log: Arc<Mutex<Vec<u8>>> = Default::default();
        let sink = log.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock().expect("log lock").extend_from_slice(&buf[..n]);
            }
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                let line = match lines.next_line().await {
                    Ok(Some(l)) if l.trim().is_empty() => continue,
                    Ok(Some(l)) => match serde_json::from_str::<FromDriver>(&l) {
                        Ok(m) => Line::Msg(m),
                        Err(_) => Line::Garbage(l),
                    },
                    Ok(None) => Line::Closed,
                    Err(e) => Line::Garbage(format!("(unreadable output: {e})")),
                };
                let last = matches!(line, Line::Closed);
                if tx.send(line).is_err() || last {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut d = Driver {
            label: file.name.clone(),
            can: Vec::new(),
            child,
            stdin,
            lines: rx,
            next_id: 0,
            notices: Vec::new(),
            told: Vec::new(),
            told_at_last_call: 0,
            events: Vec::new(),
            stderr: log,
            broken: None,
        };
        d.write(&ToDriver::Hello { protocol: PROTOCOL, actor }).await?;
        match d.next(Instant::now() + HELLO_DEADLINE, "hello").await? {
            FromDriver::Hello { protocol, name, version, can } if protocol == PROTOCOL => {
                d.label = format!("{name} {version}");
                d.can = can;
                Ok(d)
            }
            FromDriver::Hello { protocol, .. } => {
                Err(d.break_with(format!("speaks driver protocol {protocol}; this sixpac speaks {PROTOCOL}")))
            }
            other => Err(d.break_with(format!("answered hello with {}", serde_json::to_string(&other).unwrap_or_default()))),
        }
    }

    /// Whether the client says it can do this action.
    pub fn can(&self, action: &str) -> bool {
        self.can.iter().any(|c| c == action)
    }

    /// Have the client carry out one intent, within `within` (plus a margin for the driver).
    pub async fn perform(&mut self, intent: &Intent, setup: &Setup, within: Duration) -> Result<(), StepError> {
        let action = intent.name();
        if let Some(why) = &self.broken {
            return Err(StepError::Error(why.clone()));
        }
        if !self.can(&action) {
            return Err(StepError::Inconclusive(format!("client {} cannot `{action}` (not in its driver's `can` list)", self.label)));
        }
        if matches!(intent, Intent::Call { .. } | Intent::CallClaiming { .. } | Intent::Escalate) {
            self.told_at_last_call = self.told.len();
        }
        self.next_id += 1;
        let id = self.next_id;
        self.write(&ToDriver::Command { id, setup, intent }).await?;
        let deadline = Instant::now() + within + COMMAND_MARGIN;
        loop {
            match self.next(deadline, &action).await? {
                FromDriver::Done { id: got } if got == id => return Ok(()),
                FromDriver::Failed { id: got, verdict, reason } if got == id => {
                    let reason = format!("client {}: {reason}", self.label);
                    return Err(match verdict {
                        Failure::Fail => StepError::Fail(reason),
                        Failure::Error => StepError::Error(reason),
                        Failure::Inconclusive => StepError::Inconclusive(reason),
                    });
                }
                other => return Err(self.break_with(format!("answered `{action}` (command {id}) with {}", serde_json::to_string(&other).unwrap_or_default()))),
            }
        }
    }

    /// `expect protection warning` and `expect call caution` for a client whose driver reports
    /// what it tells its user (`told-user` in its `can`) but does not check them itself:
    /// judged on those events (`about`: `protection`, `caution` since the last call). None
    /// when the intent is not such a check, or the driver checks it itself.
    pub fn judge_told(&mut self, intent: &Intent) -> Option<Result<(), StepError>> {
        let (about, warned) = match intent {
            Intent::ExpectProtectionWarning { warned } => ("protection", *warned),
            Intent::ExpectCallCaution { warned } => ("caution", *warned),
            _ => return None,
        };
        if self.can(&intent.name()) || !self.can("told-user") {
            return None;
        }
        if let Err(e) = self.take_events() {
            return Some(Err(e));
        }
        let from = if about == "caution" { self.told_at_last_call } else { 0 };
        let said = self.told[from.min(self.told.len())..].iter().find(|(a, _)| a.as_deref() == Some(about)).map(|(_, t)| t.clone());
        Some(match (warned, said) {
            (true, Some(_)) | (false, None) => Ok(()),
            (true, None) => Err(StepError::Fail(format!("client {} told its user nothing about {about} (no told-user event)", self.label))),
            (false, Some(t)) => Err(StepError::Fail(format!("client {} told its user: {t}", self.label))),
        })
    }

    /// Take in the events the driver has written so far.
    pub fn take_events(&mut self) -> Result<(), StepError> {
        loop {
            match self.lines.try_recv() {
                Ok(Line::Msg(FromDriver::Event { event, text, about, details })) => self.note_event(event, text, about, details),
                Ok(Line::Msg(other)) => {
                    return Err(self.break_with(format!("wrote {} unasked", serde_json::to_string(&other).unwrap_or_default())))
                }
                Ok(Line::Garbage(l)) => return Err(self.break_with(format!("wrote something that is not the driver protocol: {l:?}"))),
                // Once broken (and killed), its output closing is that, not news.
                Ok(Line::Closed) => return Err(match &self.broken {
                    Some(why) => StepError::Error(why.clone()),
                    None => self.exited_now("while idle"),
                }),
                Err(_) => return Ok(()),
            }
        }
    }

    /// What the client told its user and the run has not shown yet.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// The client's log: the events it reported, then its driver's stderr.
    pub fn log(&self) -> String {
        let stderr = String::from_utf8_lossy(&self.stderr.lock().expect("log lock")).into_owned();
        format!("# client {}\n# events\n{}\n# driver stderr\n{stderr}", self.label, self.events.join("\n"))
    }

    /// Say bye, give the driver a moment to end its client, then kill its process group.
    pub async fn stop(&mut self) {
        if self.broken.is_none() {
            let _ = self.write(&ToDriver::Bye).await;
        }
        self.stdin = None;
        let _ = tokio::time::timeout(Duration::from_secs(3), self.child.wait()).await;
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(pid) = self.child.id() {
            // The whole group: the driver's own children (the client it runs) too.
            unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
        }
        let _ = self.child.start_kill();
    }

    fn note_event(&mut self, event: String, text: Option<String>, about: Option<String>, details: serde_json::Map<String, serde_json::Value>) {
        let line = serde_json::json!({ "event": event, "text": text, "about": about, "details": details });
        self.events.push(line.to_string());
        if event == "told-user" {
            let text = text.unwrap_or_default();
            self.notices.push(text.clone());
            self.told.push((about, text));
        }
    }

    /// The next protocol message that is not an event, before `deadline`.
    async fn next(&mut self, deadline: Instant, waiting_for: &str) -> Result<FromDriver, StepError> {
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Err(_) => {
                    let why = format!("client {}: its driver did not answer `{waiting_for}` in time (hung?); it was stopped", self.label);
                    self.broken = Some(why.clone());
                    self.kill();
                    return Err(StepError::Error(why));
                }
                Ok(Some(Line::Msg(FromDriver::Event { event, text, about, details }))) => self.note_event(event, text, about, details),
                Ok(Some(Line::Msg(m))) => return Ok(m),
                Ok(Some(Line::Garbage(l))) => {
                    return Err(self.break_with(format!("wrote something that is not the driver protocol: {l:?}")))
                }
                Ok(Some(Line::Closed)) | Ok(None) => return Err(self.exited(&format!("before answering `{waiting_for}`")).await),
            }
        }
    }

    async fn write(&mut self, msg: &ToDriver<'_>) -> Result<(), StepError> {
        let mut line = serde_json::to_vec(msg).expect("plain data serializes");
        line.push(b'\n');
        let Some(stdin) = self.stdin.as_mut() else { return Err(self.exited("(stdin closed)").await) };
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            return Err(self.exited("while sixpac wrote to it").await);
        }
        Ok(())
    }

    /// Its output closes as it exits, a moment before it can be reaped: give that moment, so
    /// the error says how it ended (seen in CI: "its output closed" for an exit status 7).
    async fn exited(&mut self, when: &str) -> StepError {
        let _ = tokio::time::timeout(EXIT_GRACE, self.child.wait()).await;
        self.exited_now(when)
    }

    fn exited_now(&mut self, when: &str) -> StepError {
        let status = self.child.try_wait().ok().flatten().map(|s| s.to_string()).unwrap_or_else(|| "its output closed".into());
        let tail: String = {
            let log = self.stderr.lock().expect("log lock");
            let text = String::from_utf8_lossy(&log);
            text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n  ")
        };
        self.break_with(format!("its driver exited ({status}) {when}; last lines of its stderr:\n  {tail}"))
    }

    fn break_with(&mut self, why: String) -> StepError {
        let why = if why.starts_with("client ") { why } else { format!("client {}: {why}", self.label) };
        self.broken = Some(why.clone());
        self.kill();
        StepError::Error(why)
    }
}
