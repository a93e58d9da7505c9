//! Exact binary spin dynamics on the CPU (see `dam_core::binary`).

pub use crate::reference::binary::{run, run_clamped};
