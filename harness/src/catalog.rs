//! The requirement catalog (`fixtures/requirements.yaml`): what each requirement ID means and
//! how the suite observes it.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// One requirement.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub id: String,
    pub spec: String,
    pub section: String,
    /// RFC 2119 keyword as written (`should*` for RFC 7081's advisory lower-case should).
    pub keyword: String,
    pub summary: String,
    /// How the suite sees it on the wire.
    pub observed: String,
    /// sixpac's own profile item, not asked for by any RFC.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub own: bool,
}

/// Read the catalog; duplicate IDs are an error.
pub fn load(fixtures: &Path) -> Result<Vec<Requirement>, String> {
    let path = fixtures.join("requirements.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let list: Vec<Requirement> = serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    for r in &list {
        if !seen.insert(r.id.as_str()) {
            return Err(format!("{}: requirement `{}` is listed twice", path.display(), r.id));
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_projects_catalog_loads_and_covers_the_sip_requirements() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let cat = super::load(&fixtures).unwrap();
        for id in ["SIP-MSG-1", "SIP-PRES-1", "SIP-EVT-4", "SIP-PUB-1", "SIP-CALL-1"] {
            assert!(cat.iter().any(|r| r.id == id), "{id} missing");
        }
    }
}
