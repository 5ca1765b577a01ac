//! `sixpac load`: many dual-stack users at once against a profile's servers. The plan and the
//! statistics are plain data ([`plan`], [`stats`]); [`drive`] is the tokio shell that joins the
//! users, paces the operations and leaves; [`page`] renders the results as HTML.

pub mod drive;
pub mod page;
pub mod plan;
pub mod stats;
pub mod summary;

pub use plan::{LoadPlan, Op};
pub use stats::{LoadStats, Outcome};
