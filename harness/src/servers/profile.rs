//! Profiles: which real servers serve a run, declared as data under `fixtures/profiles/`.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The server programs sixpac knows how to start, provision and probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Prosody,
    Kamailio,
    /// XMPP and, through mod_sip, SIP.
    Ejabberd,
}

impl ServerKind {
    /// Which protocols the server serves to actors.
    pub fn serves(self) -> &'static [crate::trace::frame::Proto] {
        use crate::trace::frame::Proto;
        match self {
            ServerKind::Prosody => &[Proto::Xmpp],
            ServerKind::Kamailio => &[Proto::Sip],
            ServerKind::Ejabberd => &[Proto::Xmpp, Proto::Sip],
        }
    }

    /// True when accounts can only be made once the server runs (ejabberd: in-band
    /// registration), not by the setup script before it starts.
    pub fn registers_in_band(self) -> bool {
        self == ServerKind::Ejabberd
    }

    /// The binary whose presence the process backend needs.
    pub fn binary(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Kamailio => "kamailio",
            ServerKind::Ejabberd => "ejabberdctl",
        }
    }

    /// Its lower-case name: in reports, and the image recipe (fixtures/images/<name>).
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Kamailio => "kamailio",
            ServerKind::Ejabberd => "ejabberd",
        }
    }

    /// The Debian packages that provide it.
    pub fn packages(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Kamailio => "kamailio kamailio-presence-modules",
            ServerKind::Ejabberd => "ejabberd erlang-p1-sip",
        }
    }
}

/// One server of a profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDecl {
    pub name: String,
    pub kind: ServerKind,
    /// Config template, relative to the fixtures directory.
    pub config: PathBuf,
}

/// A profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub domain: String,
    pub servers: Vec<ServerDecl>,
    /// The server features this profile serves (its templates enable the modules behind
    /// them): what a scenario's `needs:` may name.
    #[serde(default)]
    pub features: Vec<String>,
    /// Features this profile's servers cannot serve, each with the reason (scenarios that
    /// need one are `inconclusive` here, never `pass`).
    #[serde(default)]
    pub lacks: std::collections::BTreeMap<String, String>,
    /// Scenarios (by id) whose verdict or trace the servers' shared state makes depend on
    /// what runs beside them, each with the reason: they run alone on this profile.
    #[serde(default)]
    pub serial: std::collections::BTreeMap<String, String>,
}

impl Profile {
    /// Why this profile cannot serve a scenario that needs `needs`, if it cannot: a feature it
    /// lacks (with the reason), or one it does not declare.
    pub fn cannot_serve(&self, needs: &[String]) -> Option<String> {
        needs.iter().find_map(|n| match self.lacks.get(n) {
            Some(why) => Some(format!("profile {} lacks `{n}`: {why}", self.name)),
            None if !self.features.contains(n) => Some(format!("profile {} does not serve `{n}` (it serves: {})", self.name, self.features.join(", "))),
            None => None,
        })
    }
}

/// Every feature some profile serves or says it lacks: the names `needs:` may use.
pub fn known_features(profiles: &[Profile]) -> Vec<String> {
    let mut out: Vec<String> = profiles.iter().flat_map(|p| p.features.iter().chain(p.lacks.keys()).cloned()).collect();
    out.sort();
    out.dedup();
    out
}

/// Why profiles could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// Every profile under `fixtures/profiles/`, sorted by name.
pub fn load_profiles(fixtures: &Path) -> Result<Vec<Profile>, ProfileError> {
    let dir = fixtures.join("profiles");
    let io = |source| ProfileError::Io { path: dir.display().to_string(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ProfileError::Io { path: path.display().to_string(), source })?;
        let p: Profile = serde_saphyr::from_str(&text).map_err(|e| ProfileError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if p.name != stem {
            return Err(ProfileError::Invalid {
                path: path.display().to_string(),
                message: format!("name `{}` must match the file name `{stem}`", p.name),
            });
        }
        out.push(p);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_serves_what_it_declares_and_says_why_it_lacks_the_rest() {
        let p: Profile = serde_saphyr::from_str(
            "name: p\ndomain: d\nservers: []\nfeatures: [muc, offline]\nlacks:\n  mam: no archive here\n",
        )
        .unwrap();
        assert_eq!(p.cannot_serve(&["muc".into(), "offline".into()]), None);
        assert_eq!(p.cannot_serve(&["mam".into()]).unwrap(), "profile p lacks `mam`: no archive here");
        assert!(p.cannot_serve(&["muc".into(), "carbons".into()]).unwrap().contains("does not serve `carbons` (it serves: muc, offline)"));
        assert_eq!(known_features(&[p]), ["mam", "muc", "offline"]);
    }

    #[test]
    fn a_profile_names_the_scenarios_that_run_alone_with_the_reason() {
        let p: Profile = serde_saphyr::from_str("name: p\ndomain: d\nservers: []\nserial:\n  sip/x: one notifier timer for all\n").unwrap();
        assert_eq!(p.serial.get("sip/x").map(String::as_str), Some("one notifier timer for all"));
        assert!(serde_saphyr::from_str::<Profile>("name: p\ndomain: d\nservers: []\nserial: [sip/x]\n").is_err(), "a reason is required");
    }
}
