//! sixpac: an interop test harness and conformance suite for SIP+XMPP dual-stack clients.

pub mod account;
pub mod catalog;
pub mod client;
pub mod ids;
pub mod import;
pub mod load;
pub mod logging;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod servers;
pub mod side_by_side;
pub mod sip;
pub mod tap;
pub mod tls;
pub mod torture;
pub mod trace;
pub mod xml;
pub mod wire;
pub mod xmpp;
