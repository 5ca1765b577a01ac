//! An account: the credentials one actor uses on every server of a profile.

/// Credentials made for one actor of one scenario.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub user: String,
    pub password: String,
    pub domain: String,
}
