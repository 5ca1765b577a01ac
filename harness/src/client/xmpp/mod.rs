//! The reference client's XMPP leg: SCRAM, the sans-IO session and its tokio shell.

pub mod connection;
pub mod features;
pub mod scram;
pub mod session;

pub use connection::XmppConnection;
pub use session::{XmppConfig, XmppEvent};
