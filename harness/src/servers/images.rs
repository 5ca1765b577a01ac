//! The server images: one Dockerfile per server under `fixtures/images/<name>/`, built from
//! `debian:bookworm-slim`. Where that base cannot be pulled (no registry), it is made with
//! `debootstrap --variant=minbase` and `docker import`, and the engine keeps it for later runs.

use super::container::{docker, image_id, output_within};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The base every Dockerfile starts from.
pub const BASE_IMAGE: &str = "debian:bookworm-slim";
/// Where debootstrap fetches from, unless `SIXPAC_DEBIAN_MIRROR` says otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Label holding a hash of the Dockerfile the image was built from; a change means rebuild.
pub const RECIPE_LABEL: &str = "org.sixpac.recipe";
/// Prefix of the labels recording Debian package versions (`org.sixpac.package.prosody`).
pub const PACKAGE_LABEL_PREFIX: &str = "org.sixpac.package.";
/// Deadline for one image build or for making the base image.
pub const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{BASE_IMAGE} cannot be pulled and cannot be made here: {0}")]
    NoBase(String),
    #[error("{step} failed: {message}")]
    Step { step: String, message: String },
}

/// One buildable image.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Directory name under fixtures/images, e.g. `prosody`.
    pub name: String,
    pub dir: PathBuf,
    /// Tag sixpac gives it, e.g. `sixpac/prosody:bookworm`.
    pub tag: String,
    /// SHA-1 of the Dockerfile's bytes, hex.
    pub hash: String,
}

/// The image tag for a server kind's recipe name.
pub fn tag_for(name: &str) -> String {
    format!("sixpac/{name}:bookworm")
}

/// Every recipe under `fixtures/images/`, sorted by name.
pub fn recipes(fixtures: &Path) -> Result<Vec<Recipe>, ImageError> {
    let root = fixtures.join("images");
    let io = |path: &Path, source| ImageError::Io { path: path.display().to_string(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(|e| io(&root, e))? {
        let dir = entry.map_err(|e| io(&root, e))?.path();
        let file = dir.join("Dockerfile");
        if !file.is_file() {
            continue;
        }
        let bytes = std::fs::read(&file).map_err(|e| io(&file, e))?;
        use sha1::Digest;
        let hash: String = sha1::Sha1::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.push(Recipe { tag: tag_for(&name), name, dir, hash });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The id of this recipe's image if the engine has one, and whether it was built from the
/// current Dockerfile (its recipe label is the Dockerfile's hash): one question to the engine.
pub fn installed(r: &Recipe) -> Option<(String, bool)> {
    let fmt = format!("{{{{.Id}}}} {{{{index .Config.Labels \"{RECIPE_LABEL}\"}}}}");
    let out = docker(&["image", "inspect", "--format", &fmt, &r.tag]).ok()?;
    let out = out.trim();
    let (id, label) = out.split_once(' ').unwrap_or((out, ""));
    (!id.is_empty()).then(|| (id.to_string(), label == r.hash))
}

/// Run a long command, its output to `log`, with a progress line for each milestone and a
/// heartbeat at most every 10 s otherwise.
fn run_logged(
    cmd: &mut Command,
    step: &str,
    log: &Path,
    milestone: impl Fn(&str) -> bool,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ImageError> {
    let fail = |message: String| ImageError::Step { step: step.into(), message };
    let mut file = std::fs::File::create(log).map_err(|e| fail(format!("{}: {e}", log.display())))?;
    super::process::die_with_parent(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Both streams feed one channel; the channel closes when both have ended.
    let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut last_beat = Instant::now();
    let mut tail: std::collections::VecDeque<String> = Default::default();
    loop {
        use std::io::Write;
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                let _ = writeln!(file, "{line}");
                if milestone(&line) {
                    progress(&format!("{step}: {}", line.trim()));
                    last_beat = Instant::now();
                }
                tail.push_back(line);
                if tail.len() > 15 {
                    tail.pop_front();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_beat.elapsed() > Duration::from_secs(10) {
            progress(&format!("{step}: still working ({} s)", started.elapsed().as_secs()));
            last_beat = Instant::now();
        }
        if started.elapsed() > BUILD_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("did not finish within {} min", BUILD_DEADLINE.as_secs() / 60)));
        }
    }
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    if !status.success() {
        let lines: Vec<String> = tail.into_iter().collect();
        return Err(fail(format!("{status}; full log: {}; last lines:\n{}", log.display(), lines.join("\n"))));
    }
    Ok(())
}

/// Where sixpac keeps build logs and the debootstrap work area.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sixpac")
}

/// Make sure the engine has [`BASE_IMAGE`]: pull it, or else debootstrap and import it.
pub fn ensure_base(progress: &mut dyn FnMut(&str)) -> Result<(), ImageError> {
    if image_id(BASE_IMAGE).is_some() {
        return Ok(());
    }
    progress(&format!("{BASE_IMAGE} is not here; trying to pull it"));
    let pulled = output_within(Command::new("docker").args(["pull", BASE_IMAGE]), Duration::from_secs(300));
    if matches!(&pulled, Ok(o) if o.status.success()) {
        return Ok(());
    }
    progress("no registry answered; making the base image with debootstrap (about 1-2 min)");
    if !super::process::binary_exists("debootstrap") {
        return Err(ImageError::NoBase("debootstrap is not installed (apt-get install debootstrap)".into()));
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ImageError::NoBase("debootstrap needs root; run `sudo sixpac images build` once".into()));
    }
    let cache = cache_dir();
    let rootfs = cache.join("bookworm-minbase");
    let _ = std::fs::remove_dir_all(&rootfs);
    std::fs::create_dir_all(&cache).map_err(|e| ImageError::Io { path: cache.display().to_string(), source: e })?;
    let mirror = std::env::var("SIXPAC_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    let result = (|| {
        run_logged(
            Command::new("debootstrap").args(["--variant=minbase", "bookworm"]).arg(&rootfs).arg(&mirror),
            "debootstrap",
            &cache.join("debootstrap.log"),
            // The per-package lines number in the hundreds; show the stages.
            |l| l.starts_with("I: ") && !l.contains("Retrieving ") && !l.contains("Validating ") && !l.contains("Extracting ")
                && !l.contains("Unpacking ") && !l.contains("Configuring "),
            progress,
        )?;
        // The official slim image carries no .deb cache either.
        if let Ok(entries) = std::fs::read_dir(rootfs.join("var/cache/apt/archives")) {
            for e in entries.flatten() {
                if e.path().extension().is_some_and(|x| x == "deb") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        progress(&format!("importing the rootfs as {BASE_IMAGE}"));
        let import = format!(
            "tar -C {} -c . | docker import -c 'CMD [\"bash\"]' -c 'LABEL org.sixpac.origin=debootstrap' - {BASE_IMAGE}",
            super::prepare::sh_quote(&rootfs.display().to_string())
        );
        run_logged(Command::new("sh").args(["-c", &import]), "docker import", &cache.join("import.log"), |_| false, progress)
    })();
    let _ = std::fs::remove_dir_all(&rootfs);
    result
}

/// Build one recipe (legacy builder: works without buildx), then label it with the versions
/// of the packages it installed.
pub fn build(r: &Recipe, progress: &mut dyn FnMut(&str)) -> Result<String, ImageError> {
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(|e| ImageError::Io { path: cache.display().to_string(), source: e })?;
    let step = format!("build {}", r.tag);
    let stage = format!("{}-unlabelled", r.tag);
    run_logged(
        Command::new("docker").env("DOCKER_BUILDKIT", "0").args(["build", "-t", &stage]).arg(&r.dir),
        &step,
        &cache.join(format!("build-{}.log", r.name)),
        |l| l.starts_with("Step "),
        progress,
    )?;
    let packages = docker(&["run", "--rm", &stage, "cat", "/etc/sixpac-packages"])
        .map_err(|e| ImageError::Step { step: step.clone(), message: format!("reading /etc/sixpac-packages: {e}") })?;
    let mut args: Vec<String> = vec!["build".into(), "-q".into(), "-t".into(), r.tag.clone()];
    let mut labels = vec![format!("{RECIPE_LABEL}={}", r.hash)];
    for line in packages.lines() {
        if let Some((pkg, version)) = line.split_once('=') {
            labels.push(format!("{PACKAGE_LABEL_PREFIX}{}={version}", pkg.trim_end_matches(":amd64")));
        }
    }
    for l in &labels {
        args.push("--label".into());
        args.push(l.clone());
    }
    args.push("-".into());
    // A one-line Dockerfile on stdin: the labels land on the final image without a rebuild.
    let mut child = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ImageError::Step { step: step.clone(), message: e.to_string() })?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped");
        let _ = writeln!(stdin, "FROM {stage}");
    }
    let out = child.wait_with_output().map_err(|e| ImageError::Step { step: step.clone(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(ImageError::Step { step, message: String::from_utf8_lossy(&out.stderr).into_owned() });
    }
    let _ = docker(&["rmi", &stage]);
    image_id(&r.tag).ok_or_else(|| ImageError::Step { step, message: "image missing after build".into() })
}

/// Build the named recipes that are missing or stale (every one when `force`); ids by name.
pub fn ensure(
    recipes: &[Recipe],
    force: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<(String, String)>, ImageError> {
    let current: Vec<Option<String>> = recipes.iter().map(|r| if force { None } else { installed(r).filter(|(_, current)| *current).map(|(id, _)| id) }).collect();
    if current.iter().any(Option::is_none) {
        ensure_base(progress)?;
    }
    let mut ids = Vec::new();
    for (i, (r, id)) in recipes.iter().zip(current).enumerate() {
        let id = match id {
            Some(id) => id,
            None => {
                progress(&format!("building {} ({}/{})", r.tag, i + 1, recipes.len()));
                let started = Instant::now();
                let id = build(r, progress)?;
                progress(&format!("built {} in {:.0} s", r.tag, started.elapsed().as_secs_f64()));
                id
            }
        };
        ids.push((r.name.clone(), id));
    }
    Ok(ids)
}

/// The versions recorded on an image, as `package=version` pairs.
pub fn package_labels(tag: &str) -> Vec<(String, String)> {
    let fmt = "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}\n{{end}}";
    let listed = docker(&["image", "inspect", "--format", fmt, tag]).unwrap_or_default();
    listed
        .lines()
        .filter_map(|l| l.strip_prefix(PACKAGE_LABEL_PREFIX))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
