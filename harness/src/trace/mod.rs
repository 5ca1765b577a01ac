//! Frames, the recorder, normalized and raw traces, and trace diffs.

pub mod attribution;
pub mod diff;
pub mod frame;
pub mod normalize;
pub mod raw;

pub use frame::{Frame, Recorder};
