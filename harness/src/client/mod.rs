//! The reference dual-stack client.

pub mod sip;
pub mod xmpp;
