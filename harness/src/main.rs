//! The `sixpac` command line.

use clap::{Parser, Subcommand, ValueEnum};
use sixpac::report::{summary_table, RunReport, ServerFacts};
use sixpac::runner::{plan_accounts, run_scenario, Outcome, RunOptions, Verdict};
use sixpac::servers::Account;
use sixpac::scenario::{discover, parse_scenario, Scenario};
use sixpac::servers::profile::{load_profiles, Profile};
use sixpac::servers::{missing_binaries, ServerSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Exit codes (documented in README.md).
const EXIT_PASS: u8 = 0;
const EXIT_FAIL: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INFRA: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

#[derive(Parser)]
#[command(name = "sixpac", version, about = "Interop test harness for SIP+XMPP dual-stack clients, against real servers")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// Today the same as process; will prefer containers once that backend exists.
    Auto,
    /// Debian's server binaries as local processes on loopback.
    Process,
    /// Servers in Docker containers (not yet available).
    Container,
    /// Servers that are already running (not yet available).
    External,
}

#[derive(clap::Args)]
struct Paths {
    /// Directory holding scenario files (searched recursively for *.yaml).
    #[arg(long, default_value = "scenarios")]
    scenarios: PathBuf,
    /// Directory holding profiles and server config templates.
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the servers of each profile and run the scenarios against them.
    Run {
        #[command(flatten)]
        paths: Paths,
        /// How servers are started.
        #[arg(long, value_enum, default_value = "auto")]
        backend: Backend,
        /// Only these profiles (repeatable); default: every profile some scenario names.
        #[arg(long = "profile")]
        profiles: Vec<String>,
        /// Only scenarios whose id contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Write normalized traces as the expected ones instead of comparing.
        #[arg(long)]
        accept: bool,
        /// Parent directory of run reports.
        #[arg(long, default_value = "reports")]
        report_dir: PathBuf,
    },
    /// List scenarios with their profiles and requirements.
    List {
        #[command(flatten)]
        paths: Paths,
    },
    /// Classify the RFC 4475 torture messages (offline: the parser alone).
    Torture {
        /// Folder with the 49 .dat files extracted from RFC 4475's appendix.
        #[arg(long)]
        corpus: PathBuf,
        /// Parse only; start no server. (On-wire mode is not built yet.)
        #[arg(long)]
        offline: bool,
    },
    /// Check scenario files without starting anything.
    Check {
        #[command(flatten)]
        paths: Paths,
    },
}

fn load_all(paths: &Paths) -> Result<(Vec<Profile>, Vec<Scenario>), u8> {
    let profiles = load_profiles(&paths.fixtures).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    let files = discover(&paths.scenarios).map_err(|e| {
        eprintln!("error: cannot read scenarios in {}: {e}", paths.scenarios.display());
        EXIT_USAGE
    })?;
    let mut scenarios = Vec::new();
    let mut bad = false;
    for (path, id) in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                bad = true;
                continue;
            }
        };
        match parse_scenario(&path, &id, &text, &names) {
            Ok(s) => scenarios.push(s),
            Err(e) => {
                // One greppable line first, then the snippet.
                eprintln!("error: {e}");
                eprintln!("{:?}", miette::Report::new(e));
                bad = true;
            }
        }
    }
    if bad {
        return Err(EXIT_USAGE);
    }
    Ok((profiles, scenarios))
}

fn note(msg: &str) {
    eprintln!("sixpac: {msg}");
}

async fn run(
    paths: Paths,
    backend: Backend,
    only: Vec<String>,
    filter: Option<String>,
    accept: bool,
    report_dir: PathBuf,
) -> u8 {
    let wall = Instant::now();
    let (profiles, scenarios) = match load_all(&paths) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Some(bad) = only.iter().find(|p| !profiles.iter().any(|q| &q.name == *p)) {
        eprintln!("error: unknown profile `{bad}`");
        return EXIT_USAGE;
    }
    let scenarios: Vec<Scenario> = scenarios
        .into_iter()
        .filter(|s| filter.as_ref().is_none_or(|f| s.id.contains(f.as_str())))
        .collect();
    if scenarios.is_empty() {
        eprintln!("error: no scenario matches in {}", paths.scenarios.display());
        return EXIT_USAGE;
    }
    match backend {
        Backend::Container | Backend::External => {
            eprintln!("error: this backend is not available yet; use --backend process");
            return EXIT_USAGE;
        }
        Backend::Auto | Backend::Process => {}
    }
    let report = match RunReport::create(&report_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot create report in {}: {e}", report_dir.display());
            return EXIT_INFRA;
        }
    };
    note(&format!("report: {}", report.dir.display()));
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut facts: Vec<ServerFacts> = Vec::new();
    let mut infra_failed = false;
    let total: usize = profiles
        .iter()
        .filter(|p| only.is_empty() || only.contains(&p.name))
        .map(|p| scenarios.iter().filter(|s| s.profiles.contains(&p.name)).count())
        .sum();
    let mut n = 0;
    for profile in profiles.iter().filter(|p| only.is_empty() || only.contains(&p.name)) {
        let mine: Vec<&Scenario> = scenarios.iter().filter(|s| s.profiles.contains(&profile.name)).collect();
        if mine.is_empty() {
            continue;
        }
        let missing = missing_binaries(profile);
        if !missing.is_empty() {
            eprintln!("error: the process backend needs: {}", missing.join(", "));
            return EXIT_INFRA;
        }
        let tag = profile.name.clone();
        let accounts: Vec<Vec<Account>> = mine.iter().map(|s| plan_accounts(s, &profile.domain)).collect();
        let flat: Vec<Account> = accounts.iter().flatten().cloned().collect();
        let mut set = match ServerSet::start(profile, &paths.fixtures, &flat, |m| note(&format!("[{tag}] {m}"))).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: [{tag}] {e}");
                infra_failed = true;
                for s in mine {
                    n += 1;
                    let mut o = Outcome::new(s, &profile.name);
                    o.verdict = Verdict::Error;
                    o.message = e.to_string();
                    outcomes.push(o);
                }
                continue;
            }
        };
        for s in &set.servers {
            facts.push(ServerFacts {
                profile: profile.name.clone(),
                name: s.process.name.clone(),
                kind: s.process.kind.binary().into(),
                ready_ms: s.ready_in.as_millis(),
            });
        }
        for (sc, acc) in mine.into_iter().zip(&accounts) {
            n += 1;
            let o = run_scenario(sc, acc, &mut set, RunOptions { accept }, |m| note(&format!("[{n}/{total}] {} {m}", sc.id))).await;
            note(&format!("[{n}/{total}] {} on {}: {} ({:.2} s)", o.scenario, o.profile, o.verdict.as_str(), o.duration.as_secs_f64()));
            if o.verdict != Verdict::Pass {
                eprintln!("  {}", o.message.replace('\n', "\n  "));
                if let Some(d) = &o.diff {
                    eprintln!("{d}");
                }
            }
            if let Err(e) = report.write_traces(&o) {
                eprintln!("error: writing traces: {e}");
            }
            outcomes.push(o);
        }
        set.save_logs(&report.logs_dir(&profile.name));
        set.stop();
    }
    let any = |v: Verdict| outcomes.iter().any(|o| o.verdict == v);
    let code = if infra_failed || any(Verdict::Error) {
        EXIT_INFRA
    } else if any(Verdict::Fail) {
        EXIT_FAIL
    } else {
        EXIT_PASS
    };
    print!("{}", summary_table(&outcomes, &facts));
    if let Err(e) = report.finish(&outcomes, &facts, "process", code as i32, wall.elapsed().as_secs_f64()) {
        eprintln!("error: writing report: {e}");
        return EXIT_INFRA;
    }
    println!("report: {}", report.dir.display());
    code
}

/// Resolve a default relative path against the project root when the cwd lacks it.
fn locate(p: PathBuf) -> PathBuf {
    if p.is_relative() && !p.exists() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let alt = root.join(&p);
        if alt.exists() {
            return alt;
        }
    }
    p
}

async fn interrupted() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INFRA);
        }
    };
    let code = match cli.command {
        Cmd::Run { paths, backend, profiles, filter, accept, report_dir } => {
            let paths = Paths { scenarios: locate(paths.scenarios), fixtures: locate(paths.fixtures) };
            rt.block_on(async {
                tokio::select! {
                    code = run(paths, backend, profiles, filter, accept, report_dir) => code,
                    _ = interrupted() => {
                        // Leaving select drops the run future, and with it every ServerSet:
                        // their Drop stops the servers before we exit.
                        note("interrupted: stopping servers");
                        EXIT_INTERRUPTED
                    }
                }
            })
        }
        Cmd::List { paths } => {
            let paths = Paths { scenarios: locate(paths.scenarios), fixtures: locate(paths.fixtures) };
            match load_all(&paths) {
                Ok((_, scenarios)) => {
                    for s in scenarios {
                        println!("{:<32} [{}]  {}  {}", s.id, s.profiles.join(", "), s.requirements.join(","), s.title);
                    }
                    EXIT_PASS
                }
                Err(c) => c,
            }
        }
        Cmd::Torture { corpus, offline } => {
            if !offline {
                eprintln!("error: only --offline is available yet");
                EXIT_USAGE
            } else {
                match sixpac::torture::classify_dir(&corpus) {
                    Err(e) => {
                        eprintln!("error: cannot read {}: {e}", corpus.display());
                        EXIT_USAGE
                    }
                    Ok((classified, missing)) => {
                        let (table, right) = sixpac::torture::offline_report(&classified, &missing);
                        print!("{table}");
                        if right == sixpac::torture::EXPECTED.len() { EXIT_PASS } else { EXIT_FAIL }
                    }
                }
            }
        }
        Cmd::Check { paths } => {
            let paths = Paths { scenarios: locate(paths.scenarios), fixtures: locate(paths.fixtures) };
            match load_all(&paths) {
                Ok((_, s)) => {
                    println!("{} scenario files OK", s.len());
                    EXIT_PASS
                }
                Err(c) => c,
            }
        }
    };
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    ExitCode::from(code)
}
