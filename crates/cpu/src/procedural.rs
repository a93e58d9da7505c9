//! Streaming log-sum-exp over procedural patterns on the CPU (see `dam_core::procedural`).

pub use crate::reference::procedural::stream_dot;
