//! The reference client's SIP leg: sans-IO user agent plus its tokio shell.

pub mod call;
pub mod endpoint;
pub mod transaction;
pub mod ua;

pub use endpoint::SipEndpoint;
