//! The `sixpac` command line.

use clap::{Parser, Subcommand, ValueEnum};
use sixpac::report::terminal::{note, Terminal};
use sixpac::report::RunReport;
use sixpac::runner::driver::ClientFile;
use sixpac::runner::suite::{run_suite, Suite};
use sixpac::runner::RunOptions;
use sixpac::servers::Account;
use sixpac::scenario::{discover, parse_scenario, Scenario};
use sixpac::servers::profile::{load_profiles, Profile};
use sixpac::servers::external::ServersFile;
use sixpac::servers::{container, images, missing_binaries, Backend, ServerSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit codes (documented in docs/cli.md).
const EXIT_PASS: u8 = 0;
const EXIT_FAIL: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INFRA: u8 = 3;
const EXIT_INTERRUPTED: u8 = 130;

/// The most accounts `serve` makes (as many as `load` may use, so a load can reuse them).
const MAX_SERVE_ACCOUNTS: usize = sixpac::load::plan::MAX_USERS;

#[derive(Parser)]
#[command(name = "sixpac", version, about = "Interop test harness for SIP+XMPP dual-stack clients, against real servers")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// More on stderr: -v what the harness does, -vv taps and waits, -vvv every frame
    /// (RUST_LOG, e.g. `sixpac::tap=trace`, overrides; the run's sixpac.log has debug always)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    /// Container when a Docker engine answers, else process when the binaries exist.
    Auto,
    /// Debian's server binaries as local processes on loopback.
    Process,
    /// sixpac's images under Docker (built when missing), host networking.
    Container,
    /// Servers already up, described by --servers FILE; nothing is started or stopped.
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
        /// How servers are had.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendChoice,
        /// Servers file for --backend external (see fixtures/compose/servers.yaml).
        #[arg(long)]
        servers: Option<PathBuf>,
        /// Only these profiles (repeatable); default: every profile some scenario names.
        #[arg(long = "profile")]
        profiles: Vec<String>,
        /// Only scenarios whose id contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Write normalized traces as the expected ones instead of comparing.
        #[arg(long)]
        accept: bool,
        /// Make the reference client break a CUSAX rule on purpose: chat-over-sip (chat goes
        /// as SIP MESSAGE). The suite must then fail; this proves it notices.
        #[arg(long, value_name = "RULE")]
        misbehave: Option<String>,
        /// Play an actor with a client under test: ACTOR=CLIENT-FILE (see adapters/), or
        /// all=CLIENT-FILE for every actor. Repeatable; other actors stay the reference client.
        #[arg(long = "client", value_name = "ACTOR=FILE")]
        clients: Vec<String>,
        /// Mask credentials (SASL payloads, Digest responses and nonces) in the raw traces, for
        /// traces that will be shared; nothing else in them changes.
        #[arg(long)]
        redact_raw: bool,
        /// Run everything (servers, taps, clients under test) in a network namespace of its
        /// own that holds only loopback, so that no client can reach anything else. Needs root
        /// (CAP_SYS_ADMIN) and the process backend.
        #[arg(long)]
        isolate: bool,
        /// Run only shard I of N of the (scenario, profile) cases (`--shard 2/3`), a
        /// deterministic slice, for a CI job matrix; `sixpac merge` puts the shards together.
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
        /// Run at most N scenarios at once, over all profiles (1: one after another). Some run
        /// alone whatever N is: see docs/cli.md.
        #[arg(long, short = 'j', value_name = "N", default_value_t = sixpac::runner::suite::DEFAULT_JOBS as u16, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Parent directory of run reports.
        #[arg(long, default_value = "reports")]
        report_dir: PathBuf,
    },
    /// Be a driver for the reference client: speak the driver protocol on stdin and stdout
    /// (docs/driver-protocol.md). adapters/reference/client.yaml starts it.
    Drive {
        /// As for `run`: break a CUSAX rule on purpose.
        #[arg(long, value_name = "RULE")]
        misbehave: Option<String>,
    },
    /// List scenarios with their profiles and requirements.
    List {
        #[command(flatten)]
        paths: Paths,
    },
    /// RFC 4475 torture messages: classified by the parser (--offline), or sent to a profile's SIP server (--profile).
    Torture {
        /// Folder with the 49 .dat files extracted from RFC 4475's appendix.
        #[arg(long)]
        corpus: PathBuf,
        /// Parse only; start no server.
        #[arg(long)]
        offline: bool,
        /// On the wire: send each message to this profile's SIP server through a tap.
        #[arg(long)]
        profile: Option<String>,
        /// How the profile's servers are started (on-wire mode).
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendChoice,
        /// Directory holding profiles and server config templates.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
        /// Parent directory of run reports (on-wire mode writes the raw trace there).
        #[arg(long, default_value = "reports")]
        report_dir: PathBuf,
    },
    /// Check scenario files without starting anything.
    Check {
        #[command(flatten)]
        paths: Paths,
    },
    /// Start a profile's servers behind recording taps for a client of your own: prints the
    /// addresses, accounts and the run's CA, records until Ctrl-C (or --for), then writes the
    /// raw and normalized traces and the server logs.
    Serve {
        /// The profile to start.
        #[arg(long, default_value = "prosody+kamailio")]
        profile: String,
        /// How the servers are started (auto, process or container).
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendChoice,
        /// Directory holding profiles and server config templates.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
        /// How many accounts to make (user01, user02, ... with fresh passwords; at most 2000).
        #[arg(long, default_value_t = 4)]
        accounts: usize,
        /// Stop after this long (e.g. 90s, 10m) instead of at Ctrl-C.
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_for)]
        duration: Option<std::time::Duration>,
        /// Parent directory of run reports.
        #[arg(long, default_value = "reports")]
        report_dir: PathBuf,
    },
    /// Many dual-stack users at once: start a profile's servers (or use --backend external),
    /// join N users (REGISTER and XMPP login, ramped), run the mix at a rate for a duration,
    /// leave, and report per operation: attempts, failures by reason, latency p50/p90/p99/max
    /// and a series per second (summary.json, index.html, a terminal line each second).
    Load {
        /// The profile to start.
        #[arg(long, default_value = "prosody+kamailio")]
        profile: String,
        /// How the servers are had (external: a servers file naming loopback servers).
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendChoice,
        /// Servers file for --backend external; it must list at least --users accounts.
        #[arg(long)]
        servers: Option<PathBuf>,
        /// Directory holding profiles and server config templates.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
        /// Users, each with a SIP leg (UDP) and an XMPP leg (1 to 2000).
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Operations per second over the whole mix, in the steady phase (1 to 20000).
        #[arg(long, default_value_t = 20)]
        rate: u32,
        /// How long the steady phase lasts (at most 10m).
        #[arg(long, default_value = "10s", value_parser = parse_for)]
        duration: std::time::Duration,
        /// The operations, taken in turn: register, message (SIP MESSAGE), chat (XMPP) and
        /// call (INVITE, answer, BYE); a name given twice weighs twice.
        #[arg(long, default_value = "register,message,chat,call")]
        mix: String,
        /// Users joined per second while ramping up.
        #[arg(long, default_value_t = 50)]
        ramp: u32,
        /// How long one operation may take before it counts as failed.
        #[arg(long, default_value = "5s", value_parser = parse_for)]
        timeout: std::time::Duration,
        /// Connect straight to the servers instead of through the recording taps: nothing is
        /// recorded, so comparing with a recorded run measures what the taps cost.
        #[arg(long)]
        no_record: bool,
        /// Exit 1 when any operation's success is below this percentage.
        #[arg(long, default_value_t = 99.9)]
        min_success: f64,
        /// Exit 1 when any operation's p99 latency is above this many milliseconds.
        #[arg(long, value_name = "MS")]
        max_p99: Option<f64>,
        /// Parent directory of run reports.
        #[arg(long, default_value = "reports")]
        report_dir: PathBuf,
    },
    /// Print a scenario's ladder from a run's traces, SIP and XMPP in one, for the terminal
    /// and for pasting into bug reports.
    Show {
        /// The scenario (`cusax/escalation`, or a file base like `cusax.escalation.ejabberd`).
        scenario: String,
        /// The run directory (default: the newest under reports/).
        #[arg(long, default_value = "reports/latest")]
        run: PathBuf,
        /// The profile, when the scenario ran on several (default: the first).
        #[arg(long)]
        profile: Option<String>,
        /// Each frame's exact bytes under its arrow.
        #[arg(long)]
        frames: bool,
        /// ASCII instead of box-drawing characters.
        #[arg(long)]
        ascii: bool,
        /// Draw the taps' lifelines too.
        #[arg(long)]
        taps: bool,
        /// Columns to keep within (default: the terminal's, else 80).
        #[arg(long)]
        width: Option<usize>,
    },
    /// Write a run directory's index.html and pcapng files again from its raw traces and
    /// summary.json (old runs, runs merged from CI shards).
    Report {
        /// The run directory.
        dir: PathBuf,
    },
    /// Server images for the container backend.
    Images {
        #[command(subcommand)]
        command: ImagesCmd,
    },
    /// Print the JSON Schema of scenario files (docs/scenario.schema.json), for editors.
    Schema,
    /// Merge run directories of one suite (CI shards from `run --shard`) into one report:
    /// summary.json, JUnit, the matrix and index.html. Exits with the merged run's code.
    Merge {
        /// The run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the merged report (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Convert another tool's test scripts into sixpac scenarios.
    Import {
        #[command(subcommand)]
        command: ImportCmd,
    },
    /// Remove every container sixpac left behind (by label), e.g. after `kill -9`.
    Clean,
}

#[derive(Subcommand)]
enum ImportCmd {
    /// scansion scripts (Prosody's spec/scansion/*.scs): one scenario per script in --out,
    /// and what could not be converted, by file and line.
    Scansion {
        /// The .scs files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the scenarios (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The profiles the scenarios name (repeatable; default: prosody+kamailio and ejabberd).
        #[arg(long = "profile")]
        profiles: Vec<String>,
        /// The scenarios' arrival order: next (scansion's rule: the next stanza must match) or
        /// any (any matching stanza that arrived).
        #[arg(long, default_value = "next", value_parser = ["next", "any"])]
        order: String,
    },
}

#[derive(Subcommand)]
enum ImagesCmd {
    /// Build every image under fixtures/images (making the Debian base first if needed).
    Build {
        /// Directory holding the image recipes.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
        /// Rebuild images that are already current.
        #[arg(long)]
        force: bool,
    },
    /// List the images with their ids and recorded package versions.
    List {
        /// Directory holding the image recipes.
        #[arg(long, default_value = "fixtures")]
        fixtures: PathBuf,
    },
}

/// Profiles, scenarios and the requirement catalog, all checked.
struct Loaded {
    profiles: Vec<Profile>,
    scenarios: Vec<Scenario>,
    catalog: Vec<sixpac::catalog::Requirement>,
}

fn load_all(paths: &Paths) -> Result<Loaded, u8> {
    let profiles = load_profiles(&paths.fixtures).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    let names: Vec<String> = profiles.iter().map(|p| p.name.clone()).collect();
    let catalog = sixpac::catalog::load(&paths.fixtures).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    let ids: Vec<String> = catalog.iter().map(|r| r.id.clone()).collect();
    let files = discover(&paths.scenarios).map_err(|e| {
        eprintln!("error: cannot read scenarios in {}: {e}", paths.scenarios.display());
        EXIT_USAGE
    })?;
    let features = sixpac::servers::profile::known_features(&profiles);
    let mut scenarios = Vec::new();
    let mut bad = false;
    for (path, id) in files {
        let text = match sixpac::scenario::read_utf8(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                bad = true;
                continue;
            }
        };
        match parse_scenario(&path, &id, &text, &names, Some(&ids)).and_then(|s| sixpac::scenario::parse::check_needs(&s, &text, &features).map(|()| s)) {
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
    Ok(Loaded { profiles, scenarios, catalog })
}

/// Settle which backend serves the run, building missing images for the container backend.
async fn choose_backend(
    choice: BackendChoice,
    servers: Option<PathBuf>,
    fixtures: &Path,
    profiles: &[&Profile],
) -> Result<Backend, u8> {
    if servers.is_some() && choice != BackendChoice::External {
        eprintln!("error: --servers is only for --backend external");
        return Err(EXIT_USAGE);
    }
    let missing: Vec<String> = profiles.iter().flat_map(|p| missing_binaries(p)).collect();
    let backend = match choice {
        BackendChoice::External => {
            let Some(path) = servers else {
                eprintln!("error: --backend external needs --servers FILE (see fixtures/compose/servers.yaml)");
                return Err(EXIT_USAGE);
            };
            return ServersFile::load(&path).map(Backend::External).map_err(|e| {
                eprintln!("error: {e}");
                EXIT_USAGE
            });
        }
        BackendChoice::Process => Backend::Process,
        BackendChoice::Container => match container::engine_answers() {
            Ok(_) => Backend::Container,
            Err(why) => {
                eprintln!("error: --backend container: no Docker engine answers ({why})");
                return Err(EXIT_INFRA);
            }
        },
        BackendChoice::Auto => match container::engine_answers() {
            Ok(v) => {
                note(&format!("backend auto: Docker engine {v} answers, using containers"));
                Backend::Container
            }
            Err(why) if missing.is_empty() => {
                note(&format!("backend auto: no Docker engine ({why}); using local processes"));
                Backend::Process
            }
            Err(why) => {
                eprintln!(
                    "error: no backend can run: no Docker engine answers ({why}), and the process backend needs {}.\n\
                     Install Docker (then `sixpac images build`), or the servers: apt-get install {}",
                    missing.join(", "),
                    missing_packages(profiles).join(" ")
                );
                return Err(EXIT_INFRA);
            }
        },
    };
    if matches!(backend, Backend::Process) && !missing.is_empty() {
        eprintln!("error: the process backend needs: {}", missing.join(", "));
        return Err(EXIT_INFRA);
    }
    if matches!(backend, Backend::Container) {
        let wanted: Vec<&str> = profiles.iter().flat_map(|p| p.servers.iter().map(|s| s.kind.name())).collect();
        let recipes = match images::recipes(fixtures) {
            Ok(r) => r.into_iter().filter(|r| wanted.contains(&r.name.as_str())).collect::<Vec<_>>(),
            Err(e) => {
                eprintln!("error: {e}");
                return Err(EXIT_USAGE);
            }
        };
        let built = tokio::task::spawn_blocking(move || images::ensure(&recipes, false, &mut |m| note(m))).await;
        match built {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                eprintln!("error: {e}");
                return Err(EXIT_INFRA);
            }
            Err(e) => {
                eprintln!("error: image build task: {e}");
                return Err(EXIT_INFRA);
            }
        }
    }
    Ok(backend)
}

fn missing_packages(profiles: &[&Profile]) -> Vec<String> {
    let mut pkgs: Vec<String> = profiles
        .iter()
        .flat_map(|p| p.servers.iter())
        .filter(|s| !sixpac::servers::process::binary_exists(s.kind.binary()))
        .flat_map(|s| s.kind.packages().split(' ').map(str::to_string))
        .collect();
    pkgs.sort();
    pkgs.dedup();
    pkgs
}

#[allow(clippy::too_many_arguments)]
async fn run(
    paths: Paths,
    choice: BackendChoice,
    servers: Option<PathBuf>,
    only: Vec<String>,
    filter: Option<String>,
    accept: bool,
    misbehave: Option<String>,
    clients: Vec<String>,
    redact_raw: bool,
    shard: Option<(usize, usize)>,
    jobs: u16,
    report_dir: PathBuf,
) -> u8 {
    let Ok(misbehave) = parse_misbehave(misbehave) else { return EXIT_USAGE };
    let Loaded { profiles, scenarios, catalog } = match load_all(&paths) {
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
    let clients = match parse_clients(&clients, &scenarios) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut only = only;
    if let Some(path) = servers.as_ref().filter(|_| choice == BackendChoice::External) {
        // The servers file names the profile whose expected traces apply.
        if let Ok(f) = ServersFile::load(path) {
            if !profiles.iter().any(|p| p.name == f.profile) {
                eprintln!("error: {}: unknown profile `{}`", path.display(), f.profile);
                return EXIT_USAGE;
            }
            only = vec![f.profile.clone()];
        }
    }
    let chosen: Vec<&Profile> = profiles
        .iter()
        .filter(|p| only.is_empty() || only.contains(&p.name))
        .filter(|p| scenarios.iter().any(|s| s.profiles.contains(&p.name)))
        .collect();
    let backend = match choose_backend(choice, servers, &paths.fixtures, &chosen).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let mut report = match RunReport::create(&report_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot create report in {}: {e}", report_dir.display());
            return EXIT_INFRA;
        }
    };
    report.redact_raw = redact_raw;
    report.catalog = catalog.clone();
    note(&format!("report: {}", report.dir.display()));
    let profiles: Vec<&Profile> = profiles.iter().filter(|p| only.is_empty() || only.contains(&p.name)).collect();
    // A servers file with too few accounts is the user's to fix, before anything runs.
    if let Backend::External(f) = &backend {
        if let Some(e) = scenarios.iter().find_map(|s| f.accounts_for(s.actors.len()).err()) {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    }
    let all_cases = sixpac::runner::suite::cases(&profiles, &scenarios);
    let only = shard.map(|(i, n)| sixpac::runner::suite::shard(&all_cases, i, n));
    report.suite = Some(sixpac::report::SuiteId::of(&all_cases, &scenarios, shard));
    let suite = Suite { profiles, scenarios: &scenarios, fixtures: &paths.fixtures, backend: &backend, options: RunOptions { accept, misbehave, clients: &clients }, only: only.as_ref(), jobs: jobs.into() };
    let logs_root = report.dir.join("logs");
    let mut terminal = Terminal::new(&catalog);
    let (_, result) = run_suite(suite, &mut [&mut terminal, &mut report], |profile| logs_root.join(profile)).await;
    println!("report: {}", report.dir.display());
    if report.write_failed {
        return EXIT_INFRA;
    }
    result.exit_code()
}

/// `--misbehave RULE`, or a usage error already printed.
fn parse_misbehave(rule: Option<String>) -> Result<Option<sixpac::runner::actor::cusax::Misbehaviour>, ()> {
    match rule.as_deref().map(|m| (m, sixpac::runner::actor::cusax::Misbehaviour::parse(m))) {
        None => Ok(None),
        Some((_, Some(m))) => Ok(Some(m)),
        Some((m, None)) => {
            eprintln!("error: unknown --misbehave `{m}`; known: chat-over-sip");
            Err(())
        }
    }
}

/// `--client ACTOR=FILE` bindings, checked against the scenarios' actors; or a usage error.
fn parse_clients(args: &[String], scenarios: &[Scenario]) -> Result<Vec<(String, ClientFile)>, String> {
    let mut out = Vec::new();
    for arg in args {
        let Some((actor, file)) = arg.split_once('=') else {
            return Err(format!("--client {arg}: expected ACTOR=CLIENT-FILE (or all=CLIENT-FILE)"));
        };
        if actor != "all" && !scenarios.iter().any(|s| s.actors.iter().any(|a| a.name == actor)) {
            return Err(format!("--client {arg}: no scenario has an actor `{actor}`"));
        }
        if out.iter().any(|(a, _): &(String, ClientFile)| a == actor) {
            return Err(format!("--client {arg}: `{actor}` is bound twice"));
        }
        out.push((actor.to_string(), ClientFile::load(Path::new(file))?));
    }
    Ok(out)
}

/// `sixpac torture --profile`: start the profile, send the corpus through the SIP tap.
async fn torture_on_wire(corpus: &Path, name: &str, choice: BackendChoice, fixtures: &Path, report_dir: &Path) -> u8 {
    if !corpus.is_dir() {
        eprintln!("error: {} is not a directory", corpus.display());
        return EXIT_USAGE;
    }
    let profiles = match load_profiles(fixtures) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let Some(profile) = profiles.iter().find(|p| p.name == name) else {
        eprintln!("error: unknown profile `{name}`");
        return EXIT_USAGE;
    };
    let backend = match choose_backend(choice, None, fixtures, &[profile]).await {
        Ok(b) => b,
        Err(c) => return c,
    };
    let report = match RunReport::create(report_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot create report in {}: {e}", report_dir.display());
            return EXIT_INFRA;
        }
    };
    let set = match ServerSet::start(profile, fixtures, &[], &backend, |m| note(&format!("[{name}] {m}"))).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: [{name}] {e}");
            return EXIT_INFRA;
        }
    };
    let tap = set.endpoint(sixpac::trace::frame::Proto::Sip, sixpac::trace::frame::Transport::Udp);
    let (Some(tap), Some(server)) = (tap, set.servers.iter().find_map(|s| s.sip)) else {
        eprintln!("error: profile {name} has no SIP server");
        return EXIT_USAGE;
    };
    let server_name = set.servers.iter().find(|s| s.sip.is_some()).map(|s| s.name.clone()).unwrap_or_default();
    note(&format!("sending the corpus to {server_name} through its tap"));
    let results = match sixpac::torture::wire::run(corpus, tap, server).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INFRA;
        }
    };
    let (table, alive) = sixpac::torture::wire::report(&results, &server_name);
    print!("{table}");
    let frames = set.recorder.frames_for_all();
    if let Ok(mut f) = std::fs::File::create(report.dir.join("torture.raw")) {
        let _ = sixpac::trace::raw::write(&frames, &mut f);
    }
    set.save_logs(&report.logs_dir(name));
    set.stop();
    println!("report: {}", report.dir.display());
    if alive { EXIT_PASS } else { EXIT_FAIL }
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

/// `--shard I/N`: 1 ≤ I ≤ N.
fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not I/N with 1 <= I <= N (e.g. 2/3)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

fn parse_for(s: &str) -> Result<std::time::Duration, String> {
    sixpac::scenario::parse::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 90s, 10m, 500ms)"))
}

/// What `serve` has started: the servers, the report directory, the accounts.
struct Served {
    set: ServerSet,
    report: RunReport,
    users: Vec<Account>,
    profile: Profile,
}

/// `serve`'s first phase: check the arguments, settle the backend, start the servers.
async fn start_serving(name: &str, choice: BackendChoice, servers: Option<PathBuf>, fixtures: &Path, accounts: usize, report_dir: &Path) -> Result<Served, u8> {
    let profiles = load_profiles(fixtures).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })?;
    let Some(profile) = profiles.into_iter().find(|p| p.name == name) else {
        eprintln!("error: unknown profile `{name}` (see fixtures/profiles)");
        return Err(EXIT_USAGE);
    };
    let backend = choose_backend(choice, servers, fixtures, &[&profile]).await?;
    let users: Vec<Account> = match &backend {
        Backend::External(f) => f.accounts_for(accounts).map_err(|e| {
            eprintln!("error: {e}");
            EXIT_USAGE
        })?,
        _ => (1..=accounts)
            .map(|i| Account { user: format!("user{i:02}"), password: sixpac::ids::token(12), domain: profile.domain.clone() })
            .collect(),
    };
    let report = RunReport::create(report_dir).map_err(|e| {
        eprintln!("error: cannot create report in {}: {e}", report_dir.display());
        EXIT_INFRA
    })?;
    let set = ServerSet::start(&profile, fixtures, &users, &backend, |m| note(&format!("[{name}] {m}"))).await.map_err(|e| {
        eprintln!("error: [{name}] {e}");
        EXIT_INFRA
    })?;
    Ok(Served { set, report, users, profile })
}

/// Start the servers, unless a signal comes first: then what was started is dropped (and
/// so stopped) and the exit code says interrupted.
async fn unless_interrupted(start: impl std::future::Future<Output = Result<Served, u8>>, stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>) -> Result<Served, u8> {
    tokio::select! {
        r = start => r,
        _ = stop => {
            note("interrupted: stopping servers");
            Err(EXIT_INTERRUPTED)
        }
    }
}

/// `sixpac serve`: the servers and their taps for a client of the user's own, until stopped.
async fn serve(name: &str, choice: BackendChoice, fixtures: &Path, accounts: usize, duration: Option<std::time::Duration>, report_dir: &Path) -> u8 {
    use sixpac::trace::normalize::{normalize, NormalizeContext};
    // One signal listener for both phases: Ctrl-C while starting abandons the start (dropping
    // what was started), Ctrl-C while recording ends the recording normally.
    let stop_signal = interrupted();
    tokio::pin!(stop_signal);
    let start = async {
        if choice == BackendChoice::External {
            eprintln!("error: serve starts servers; use --backend auto, process or container");
            return Err(EXIT_USAGE);
        }
        if accounts == 0 || accounts > MAX_SERVE_ACCOUNTS {
            eprintln!("error: --accounts takes 1 to {MAX_SERVE_ACCOUNTS}");
            return Err(EXIT_USAGE);
        }
        start_serving(name, choice, None, fixtures, accounts, report_dir).await
    };
    let Served { set, report, users, profile } = match unless_interrupted(start, stop_signal.as_mut()).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Opened now: a session that ends out of file descriptors can still write its traces.
    let traces = match report.reserve_trace_pair(&format!("serve.{}", profile.name)) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("error: cannot create the traces in {}: {e}", report.dir.join("traces").display());
            return EXIT_INFRA;
        }
    };
    let ca = report.dir.join("ca.crt");
    if let Some(pki) = &set.pki {
        if let Err(e) = std::fs::write(&ca, pki.ca_pem()) {
            eprintln!("error: cannot write {}: {e}", ca.display());
            return EXIT_INFRA;
        }
    }
    // The listing goes to stdout, one fact per line, so scripts can read it.
    println!("profile {} ({} backend), domain {}", profile.name, set.backend, profile.domain);
    for t in &set.taps {
        let starttls = t.spec.proto == sixpac::trace::frame::Proto::Xmpp && t.spec.tls.is_some();
        let tls = if starttls { " (STARTTLS offered)" } else { "" };
        println!("{}/{} {} -> {} {}{tls}", t.spec.proto.name(), t.spec.transport.name(), t.listen, t.spec.server, t.spec.upstream);
    }
    for a in &users {
        println!("account {} {}", a.user, a.password);
    }
    println!("ca {}", ca.display());
    match duration {
        Some(d) => note(&format!("recording for {} s; Ctrl-C stops earlier", d.as_secs_f64())),
        None => note("recording; Ctrl-C stops"),
    }
    let until = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = until => {}
        _ = &mut stop_signal => note("stopping"),
    }
    let Some(traces) = traces else { return EXIT_INFRA };
    let frames = set.recorder.frames_for_all();
    let session_start = std::time::SystemTime::now() - set.recorder.elapsed();
    let mut ctx = NormalizeContext { title: format!("sixpac serve on {}", profile.name), ..Default::default() };
    // Clients are unknown here: their addresses become {addr-N}, numbered by first appearance.
    ctx.addr_names = set.addr_names();
    for a in &users {
        ctx.literals.push((a.password.clone(), "{password}".into()));
    }
    let normalized = normalize(&frames, &ctx);
    if let Err(e) = traces.write(&frames, &normalized.text) {
        eprintln!("error: cannot write the traces in {}: {e}", report.dir.join("traces").display());
        return EXIT_INFRA;
    }
    let base = format!("serve.{}", profile.name);
    let facts = set.facts();
    let session = sixpac::report::Session {
        base: &base,
        title: &ctx.title,
        profile: &profile.name,
        frames: &frames,
        normalized_seqs: &normalized.seqs,
        cast: &ctx.addr_names,
        clock_unix_us: set.recorder.epoch_unix_us(),
        started: session_start,
        servers: &facts,
        backend: set.backend,
    };
    if let Err(e) = report.finish_session(&session) {
        eprintln!("error: cannot write the session's report in {}: {e}", report.dir.display());
        return EXIT_INFRA;
    }
    set.save_logs(&report.logs_dir(name));
    set.stop();
    println!("{} frames recorded", frames.len());
    println!("report: {}", report.dir.display());
    EXIT_PASS
}

/// `sixpac load`: the servers (or a servers file's), the users, the run, the report.
async fn load(
    name: &str,
    choice: BackendChoice,
    servers: Option<PathBuf>,
    fixtures: &Path,
    plan: sixpac::load::LoadPlan,
    goals: sixpac::load::summary::Goals,
    report_dir: &Path,
) -> u8 {
    use sixpac::load::drive::{run, Target, Tick};
    use sixpac::load::summary::{achieved_rate, missed_goals, LoadSummary};
    use sixpac::trace::frame::Proto;
    use sixpac::wire::Transport;
    if let Err(e) = plan.check() {
        eprintln!("error: {e}");
        return EXIT_USAGE;
    }
    if !(0.0..=100.0).contains(&goals.min_success_pct) {
        eprintln!("error: --min-success takes a percentage, 0 to 100");
        return EXIT_USAGE;
    }
    let stop_signal = interrupted();
    tokio::pin!(stop_signal);
    let start = start_serving(name, choice, servers, fixtures, plan.users, report_dir);
    let Served { set, report, users, profile } = match unless_interrupted(start, stop_signal.as_mut()).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Load goes to loopback only, whatever a servers file says.
    let direct = |proto: Proto| set.servers.iter().find_map(|s| if proto == Proto::Xmpp { s.xmpp } else { s.sip });
    let addr = |proto: Proto| if plan.record { set.endpoint(proto, if proto == Proto::Xmpp { Transport::Tcp } else { Transport::Udp }) } else { direct(proto) };
    let (Some(xmpp), Some(sip)) = (addr(Proto::Xmpp), addr(Proto::Sip)) else {
        eprintln!("error: profile {} serves no XMPP or no SIP over UDP; load needs both", profile.name);
        return EXIT_USAGE;
    };
    // The taps listen on 127.0.0.1; only a servers file's servers can be elsewhere.
    let outside: Vec<String> = set.servers.iter().flat_map(|s| [s.xmpp, s.sip]).flatten().filter(|a| !a.ip().is_loopback()).map(|a| a.to_string()).collect();
    if !outside.is_empty() {
        eprintln!("error: load goes to loopback only, and these servers are elsewhere: {}", outside.join(", "));
        return EXIT_USAGE;
    }
    let target = Target { xmpp, sip, domain: profile.domain.clone() };
    let through = if plan.record { "taps" } else { "servers" };
    note(&format!(
        "[load] {} users at {}/s, then {} operations/s of {} for {} s, through the {through} (XMPP {xmpp}, SIP/UDP {sip})",
        plan.users,
        plan.ramp,
        plan.rate,
        plan.mix.iter().map(|o| o.name()).collect::<Vec<_>>().join(","),
        plan.duration.as_secs_f64()
    ));
    let line = |t: &Tick| {
        let ops: Vec<String> = t
            .stats
            .second(t.second)
            .into_iter()
            .map(|(op, ok, failed, p99)| {
                let p99 = p99.map(|v| format!(" p99 {v:.1} ms")).unwrap_or_default();
                let failed = if failed > 0 { format!(" {failed} failed") } else { String::new() };
                format!("{} {ok} ok{failed}{p99}", op.name())
            })
            .collect();
        let ops = if ops.is_empty() { "nothing ended".to_string() } else { ops.join(" · ") };
        note(&format!("[load] {:>3} s {:<8} joined {} · issued {} · {ops} · {} pending", t.second + 1, t.phase.name(), t.joined, t.issued, t.stats.outstanding()));
    };
    let result = run(&plan, &target, &users, &mut stop_signal, line).await;
    let frames = set.recorder.frames_for_all();
    let base = format!("load.{}", profile.name);
    if plan.record {
        let written = report.write_raw_trace(&base, &frames).and_then(|_| report.write_pcapng(&base, &frames, set.recorder.epoch_unix_us()));
        if let Err(e) = written {
            eprintln!("error: cannot write the traces in {}: {e}", report.dir.join("traces").display());
            return EXIT_INFRA;
        }
    }
    let operations = result.stats.summaries();
    let missed = missed_goals(&operations, &goals, result.interrupted);
    let exit_code = if result.interrupted { EXIT_INTERRUPTED } else if missed.is_empty() { EXIT_PASS } else { EXIT_FAIL };
    let summary = LoadSummary {
        kind: sixpac::load::summary::KIND.into(),
        sixpac_version: env!("CARGO_PKG_VERSION").into(),
        run_id: report.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        profile: profile.name.clone(),
        backend: set.backend.to_string(),
        servers: set.facts(),
        through: through.into(),
        xmpp: xmpp.to_string(),
        sip: sip.to_string(),
        joined: result.joined,
        issued: result.issued,
        interrupted: result.interrupted,
        wall_seconds: result.wall.as_secs_f64(),
        steady_seconds: result.steady,
        achieved_rate: achieved_rate(&operations, result.steady),
        frames_recorded: frames.len(),
        peak_rss_kib: sixpac::load::summary::peak_rss_kib(),
        operations,
        goals,
        missed,
        exit_code,
        plan,
    };
    let json = serde_json::to_string_pretty(&summary).expect("summary serializes");
    let written = std::fs::write(report.dir.join("summary.json"), json + "\n")
        .and_then(|_| std::fs::write(report.dir.join("index.html"), sixpac::load::page::render(&summary)));
    if let Err(e) = written {
        eprintln!("error: cannot write the report in {}: {e}", report.dir.display());
        return EXIT_INFRA;
    }
    set.save_logs(&report.logs_dir(name));
    set.stop();
    println!("{:<10} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}", "operation", "attempts", "ok", "failed", "p50 ms", "p90 ms", "p99 ms", "max ms");
    for o in &summary.operations {
        let l = |f: fn(&sixpac::load::stats::Latency) -> f64| o.latency.as_ref().map(|l| format!("{:.2}", f(l))).unwrap_or_else(|| "-".into());
        println!(
            "{:<10} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
            o.op.name(), o.attempts, o.successes, o.failures, l(|l| l.p50_ms), l(|l| l.p90_ms), l(|l| l.p99_ms), l(|l| l.max_ms)
        );
        for (why, n) in &o.failures_by_reason {
            println!("    {n} × {why}");
        }
    }
    println!(
        "steady phase: {:.1} operations ended per second; {} frames recorded; sixpac's peak RSS {} MiB",
        summary.achieved_rate,
        summary.frames_recorded,
        summary.peak_rss_kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "?".into())
    );
    for m in &summary.missed {
        println!("missed: {m}");
    }
    println!("report: {}", report.dir.display());
    exit_code
}

/// The terminal's width: COLUMNS, else the window size of stdout, else 80.
fn terminal_width() -> usize {
    if let Some(n) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return n;
    }
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we own; a failure leaves it zero.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 { usize::from(ws.ws_col) } else { 80 }
}

/// `sixpac show`.
fn show(scenario: &str, run: &Path, profile: Option<&str>, frames: bool, ascii: bool, taps: bool, width: Option<usize>) -> u8 {
    use sixpac::report::ladder_text::{comment, render, TextOptions};
    use std::io::IsTerminal;
    let dir = match std::fs::canonicalize(run) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {}: {e}", run.display());
            return EXIT_USAGE;
        }
    };
    let loaded = match sixpac::report::run_dir::RunDir::load(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let found = loaded.find(scenario, profile);
    let Some(r) = found.first() else {
        let known: Vec<String> = loaded.results.iter().map(|r| format!("{} ({})", r.scenario, r.profile)).collect();
        eprintln!("error: no result for `{scenario}`{} in {}; it holds: {}", profile.map(|p| format!(" on {p}")).unwrap_or_default(), dir.display(), known.join(", "));
        return EXIT_USAGE;
    };
    if found.len() > 1 {
        let others: Vec<&str> = found[1..].iter().map(|o| o.profile.as_str()).collect();
        eprintln!("sixpac: showing {} on {}; also on {} (--profile)", r.scenario, r.profile, others.join(", "));
    }
    if let Some(p) = &r.trace_problem {
        eprintln!("error: {p}");
        return EXIT_INFRA;
    }
    let ladder = sixpac::report::ladder::build(&r.frames, &r.cast, &r.steps);
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let opts = TextOptions {
        width: width.unwrap_or_else(terminal_width),
        ascii,
        color: !no_color && std::io::stdout().is_terminal(),
        taps,
        frames: frames.then(|| r.frames.iter().map(|f| (f.seq, f.bytes.clone())).collect()),
    };
    let heading = format!("{} on {}: {} ({} frames)\n{}", r.scenario, r.column(), r.verdict, r.frames.len(), r.title);
    print!("{}", render(&ladder, &heading, &opts));
    if !r.message.is_empty() {
        print!("{}", comment(&r.message, opts.width));
    }
    print!("{}", comment(&format!("wireshark, from {}:\n  {}", dir.display(), r.tshark()), opts.width));
    EXIT_PASS
}

/// `sixpac import scansion`: exit 0 when every script converted whole, 1 when some parts did
/// not (those scenarios are written, marked `unconverted`), 2 on a file that cannot be read.
fn import_scansion(files: &[PathBuf], out: &Path, profiles: Vec<String>, order: &str) -> u8 {
    let profiles = if profiles.is_empty() { vec!["prosody+kamailio".to_string(), "ejabberd".to_string()] } else { profiles };
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("error: cannot create {}: {e}", out.display());
        return EXIT_INFRA;
    }
    let (mut whole, mut partial) = (0, 0);
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", f.display());
                return EXIT_USAGE;
            }
        };
        let name = f.display().to_string();
        let c = sixpac::import::scansion::convert(&name, &text, &profiles, order);
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "script".into());
        let target = out.join(format!("{stem}.yaml"));
        if let Err(e) = std::fs::write(&target, &c.yaml) {
            eprintln!("error: cannot write {}: {e}", target.display());
            return EXIT_INFRA;
        }
        let needs = if c.needs.is_empty() { String::new() } else { format!("; needs {}", c.needs.join(", ")) };
        if c.unconverted.is_empty() {
            whole += 1;
            println!("{name}: converted -> {}{needs}", target.display());
        } else {
            partial += 1;
            println!("{name}: {} part(s) not converted -> {} (marked, will be inconclusive){needs}", c.unconverted.len(), target.display());
            for (line, what) in &c.unconverted {
                println!("  {name}:{line}: {what}");
            }
        }
    }
    println!("{whole} converted whole, {partial} with parts not converted, in {}", out.display());
    if partial > 0 { EXIT_FAIL } else { EXIT_PASS }
}

/// `sixpac report DIR`.
fn rerender(dir: &Path) -> u8 {
    if let Some(load) = sixpac::load::summary::read(dir) {
        return match load {
            Ok(s) => match std::fs::write(dir.join("index.html"), sixpac::load::page::render(&s)) {
                Ok(()) => {
                    println!("a load run, {} operations: {}", s.operations.len(), dir.join("index.html").display());
                    EXIT_PASS
                }
                Err(e) => {
                    eprintln!("error: writing index.html in {}: {e}", dir.display());
                    EXIT_INFRA
                }
            },
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_USAGE
            }
        };
    }
    let run = match sixpac::report::run_dir::RunDir::load(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    for r in run.results.iter().filter_map(|r| r.trace_problem.as_ref()) {
        eprintln!("warning: {r}");
    }
    let pcaps = match run.write_pcapngs() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: writing pcapng files in {}: {e}", dir.display());
            return EXIT_INFRA;
        }
    };
    if let Err(e) = sixpac::report::write_pages(dir) {
        eprintln!("error: writing junit.xml and index.html in {}: {e}", dir.display());
        return EXIT_INFRA;
    }
    println!("{} results, {pcaps} pcapng files, {}", run.results.len(), dir.join("index.html").display());
    EXIT_PASS
}

/// Resolves at SIGINT or SIGTERM. The handlers are installed when this is called, not when it
/// is first polled, so a signal that comes while work starts is not missed. Must be called
/// inside the runtime.
fn interrupted() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}

/// `--isolate`: move this process, before any thread exists, into a new network namespace whose
/// only interface is loopback; everything it starts inherits it.
fn isolate() -> Result<(), String> {
    // SAFETY: plain syscall; called while the process has one thread, so it applies to all.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("--isolate: cannot make a network namespace: {} (needs root or CAP_SYS_ADMIN)", std::io::Error::last_os_error()));
    }
    let up = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
    match up {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("--isolate: `ip link set lo up` failed ({s})")),
        Err(e) => Err(format!("--isolate: cannot run `ip` (apt-get install iproute2): {e}")),
    }
}

/// Raise the soft limit on open files to the hard one: every tap connection and UDP client
/// holds a descriptor towards its server.
fn raise_file_limit() {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = sixpac::logging::init(cli.verbose) {
        eprintln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    raise_file_limit();
    if let Cmd::Run { isolate: true, backend, .. } = &cli.command {
        if *backend != BackendChoice::Process {
            eprintln!("error: --isolate needs --backend process (containers and external servers live in the host's network)");
            return ExitCode::from(EXIT_USAGE);
        }
        if let Err(e) = isolate() {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_INFRA);
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INFRA);
        }
    };
    let code = match cli.command {
        Cmd::Drive { misbehave } => match parse_misbehave(misbehave) {
            Ok(m) => rt.block_on(sixpac::runner::drive::serve_stdio(m)),
            Err(()) => EXIT_USAGE,
        },
        Cmd::Run { paths, backend, servers, profiles, filter, accept, misbehave, clients, redact_raw, isolate: _, shard, jobs, report_dir } => {
            let paths = Paths { scenarios: locate(paths.scenarios), fixtures: locate(paths.fixtures) };
            rt.block_on(async {
                tokio::select! {
                    code = run(paths, backend, servers, profiles, filter, accept, misbehave, clients, redact_raw, shard, jobs, report_dir) => code,
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
                Ok(Loaded { scenarios, .. }) => {
                    for s in scenarios {
                        println!("{:<32} [{}]  {}  {}", s.id, s.profiles.join(", "), s.requirements.join(","), s.title);
                    }
                    EXIT_PASS
                }
                Err(c) => c,
            }
        }
        Cmd::Torture { corpus, offline, profile, backend, fixtures, report_dir } => match (offline, profile) {
            (true, _) => match sixpac::torture::classify_dir(&corpus) {
                Err(e) => {
                    eprintln!("error: cannot read {}: {e}", corpus.display());
                    EXIT_USAGE
                }
                Ok((classified, missing)) => {
                    let (table, right) = sixpac::torture::offline_report(&classified, &missing);
                    print!("{table}");
                    if right == sixpac::torture::EXPECTED.len() { EXIT_PASS } else { EXIT_FAIL }
                }
            },
            (false, None) => {
                eprintln!("error: give --offline, or --profile NAME to send the messages to that profile's SIP server");
                EXIT_USAGE
            }
            (false, Some(name)) => {
                let fixtures = locate(fixtures);
                rt.block_on(async {
                    tokio::select! {
                        code = torture_on_wire(&corpus, &name, backend, &fixtures, &report_dir) => code,
                        _ = interrupted() => {
                            note("interrupted: stopping servers");
                            EXIT_INTERRUPTED
                        }
                    }
                })
            }
        },
        // Ctrl-C is how serve normally ends: it handles the signal itself and still writes
        // its traces.
        Cmd::Serve { profile, backend, fixtures, accounts, duration, report_dir } => {
            let fixtures = locate(fixtures);
            rt.block_on(serve(&profile, backend, &fixtures, accounts, duration, &report_dir))
        }
        Cmd::Load { profile, backend, servers, fixtures, users, rate, duration, mix, ramp, timeout, no_record, min_success, max_p99, report_dir } => {
            let mix = match sixpac::load::plan::parse_mix(&mix) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("error: --mix: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let plan = sixpac::load::LoadPlan { users, rate, duration, mix, ramp, record: !no_record, timeout };
            let goals = sixpac::load::summary::Goals { min_success_pct: min_success, max_p99_ms: max_p99 };
            let fixtures = locate(fixtures);
            rt.block_on(load(&profile, backend, servers, &fixtures, plan, goals, &report_dir))
        }
        Cmd::Show { scenario, run, profile, frames, ascii, taps, width } => show(&scenario, &run, profile.as_deref(), frames, ascii, taps, width),
        Cmd::Report { dir } => rerender(&dir),
        Cmd::Merge { dirs, out } => match sixpac::report::merge::merge(&dirs, &out) {
            Ok(m) => {
                println!("{} results from {} runs in {}", m.results, dirs.len(), out.display());
                m.exit_code as u8
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_USAGE
            }
        },
        Cmd::Schema => {
            print!("{}", sixpac::scenario::SCHEMA);
            EXIT_PASS
        }
        Cmd::Import { command: ImportCmd::Scansion { files, out, profiles, order } } => import_scansion(&files, &out, profiles, &order),
        Cmd::Images { command: ImagesCmd::Build { fixtures, force } } => {
            let fixtures = locate(fixtures);
            match images::recipes(&fixtures) {
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_USAGE
                }
                Ok(recipes) => match container::engine_answers() {
                    Err(why) => {
                        eprintln!("error: no Docker engine answers ({why})");
                        EXIT_INFRA
                    }
                    Ok(_) => match images::ensure(&recipes, force, &mut |m| note(m)) {
                        Ok(ids) => {
                            for (name, id) in ids {
                                println!("{:<28} {id}", images::tag_for(&name));
                            }
                            EXIT_PASS
                        }
                        Err(e) => {
                            eprintln!("error: {e}");
                            EXIT_INFRA
                        }
                    },
                },
            }
        }
        Cmd::Images { command: ImagesCmd::List { fixtures } } => match images::recipes(&locate(fixtures)) {
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_USAGE
            }
            Ok(recipes) => {
                for r in recipes {
                    let state = match images::installed(&r) {
                        None => "missing".to_string(),
                        Some((id, true)) => id,
                        Some((id, false)) => format!("{id} (stale: Dockerfile changed)"),
                    };
                    let pkgs: Vec<String> = images::package_labels(&r.tag).into_iter().map(|(p, v)| format!("{p}={v}")).collect();
                    println!("{:<28} {state}  {}", r.tag, pkgs.join(" "));
                }
                EXIT_PASS
            }
        },
        Cmd::Clean => match container::clean() {
            Ok(names) => {
                println!("removed {} container(s){}{}", names.len(), if names.is_empty() { "" } else { ": " }, names.join(", "));
                let stale = sixpac::servers::stale_run_dirs();
                // Servers that outlived their sixpac would write the directory back.
                let killed = sixpac::servers::kill_processes_holding(&stale);
                if !killed.is_empty() {
                    println!("stopped {} leftover server process(es) of dead runs: {killed:?}", killed.len());
                }
                for d in &stale {
                    let _ = std::fs::remove_dir_all(d);
                }
                if !stale.is_empty() {
                    println!("removed {} run directory(ies) of dead sixpac processes", stale.len());
                }
                EXIT_PASS
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_INFRA
            }
        },
        Cmd::Check { paths } => {
            let paths = Paths { scenarios: locate(paths.scenarios), fixtures: locate(paths.fixtures) };
            match load_all(&paths) {
                Ok(Loaded { scenarios: s, .. }) => {
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
