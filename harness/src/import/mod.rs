//! Importers: other tools' test scripts as sixpac scenarios.

pub mod scansion;
