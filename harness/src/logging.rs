//! Where the harness's own log goes: `tracing` events (server start and readiness, each step
//! and what it waits for, each tap connection and what it recorded) to stderr at the level
//! `-v`/`-vv`/`-vvv` or `RUST_LOG` asks for, and always at debug level to the run's
//! `sixpac.log`, so a CI failure can be read afterwards.
//!
//! Events from before the run's report directory exists are held and written first.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// The run's log file, once there is one, and what came before it.
#[derive(Default)]
struct Sink {
    held: Vec<u8>,
    file: Option<std::fs::File>,
}

/// Held bytes past this are dropped (with the file never attached, e.g. `sixpac check`).
const MAX_HELD: usize = 4 << 20;

static SINK: Mutex<Sink> = Mutex::new(Sink { held: Vec::new(), file: None });

/// A writer into [`SINK`].
struct LogFile;

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut guard = SINK.lock().unwrap_or_else(|p| p.into_inner());
        let sink = &mut *guard;
        match sink.file.as_mut() {
            // A full disk must not stop a run: the log is a convenience, not evidence.
            Some(f) => {
                let _ = f.write_all(buf);
            }
            None if sink.held.len() + buf.len() <= MAX_HELD => sink.held.extend_from_slice(buf),
            None => {}
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFile;
    fn make_writer(&'a self) -> LogFile {
        LogFile
    }
}

/// The stderr filter: `RUST_LOG` when set (`info`, `sixpac=debug,warn`), else by `-v` count.
pub fn stderr_filter(verbose: u8, rust_log: Option<&str>) -> Result<Targets, String> {
    if let Some(directives) = rust_log.filter(|s| !s.trim().is_empty()) {
        return directives.parse::<Targets>().map_err(|e| format!("RUST_LOG={directives:?} is not a filter ({e}); try RUST_LOG=sixpac=debug"));
    }
    let level = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    Ok(Targets::new().with_target("sixpac", level).with_target(PROGRESS, LevelFilter::OFF).with_default(LevelFilter::WARN))
}

/// The target of progress lines, which stderr shows already in its own form.
pub const PROGRESS: &str = "sixpac::progress";

/// Install the subscriber for this process.
pub fn init(verbose: u8) -> Result<(), String> {
    let stderr = stderr_filter(verbose, std::env::var("RUST_LOG").ok().as_deref())?;
    let file = Targets::new().with_target("sixpac", LevelFilter::DEBUG).with_default(LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false).with_filter(stderr))
        .with(tracing_subscriber::fmt::layer().with_writer(LogFile).with_ansi(false).with_filter(file))
        .try_init()
        .map_err(|e| e.to_string())
}

/// From now on the log goes to `path` too, starting with what was held.
pub fn attach(path: &Path) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut sink = SINK.lock().unwrap_or_else(|p| p.into_inner());
    f.write_all(&std::mem::take(&mut sink.held))?;
    sink.file = Some(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_over_the_flag_and_bad_filters_are_refused() {
        use tracing::Level;
        let by_flag = stderr_filter(2, None).unwrap();
        assert!(by_flag.would_enable("sixpac::tap", &Level::DEBUG) && !by_flag.would_enable("sixpac::tap", &Level::TRACE));
        assert!(!stderr_filter(0, None).unwrap().would_enable("sixpac", &Level::INFO));
        assert!(!by_flag.would_enable(PROGRESS, &Level::INFO), "progress lines are on stderr already");
        let by_env = stderr_filter(0, Some("sixpac::tap=trace")).unwrap();
        assert!(by_env.would_enable("sixpac::tap", &Level::TRACE) && !by_env.would_enable("sixpac::runner", &Level::INFO));
        assert!(stderr_filter(0, Some("sixpac=loud")).unwrap_err().contains("RUST_LOG"));
    }
}
