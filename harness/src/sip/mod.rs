//! SIP wire format: a lossless message view and digest authentication.

pub mod digest;
pub mod message;
pub mod pidf;
pub mod sdp;
pub mod validate;

pub use message::SipMessage;
