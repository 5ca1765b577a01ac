//! XMPP wire format: stream framing.

pub mod framing;

pub use framing::{XmppFrameKind, XmppFramer, XmppRawFrame};
