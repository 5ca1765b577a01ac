//! SIP wire format: a lossless message view and digest authentication.

pub mod digest;
pub mod message;

pub use message::SipMessage;
