//! Core types and maths definitions for dense associative memories (DAMs).
//!
//! This crate holds no device code. It defines *what* is computed — the stored
//! [`Patterns`], the [`Similarity`], the [`Separation`] function, the [`Dynamics`]
//! and [`Projection`] of the update, the [`RetrievalResult`] — and the shared
//! [`Error`] and [`Tolerance`] types. The CPU reference (`dam-cpu`) and the wgpu
//! backend (`dam-wgpu`) both implement exactly these definitions.
//!
//! # The maths
//!
//! For stored patterns ξ^μ (μ = 1..P, rows of a P×N matrix) and a state x ∈ R^N:
//!
//! * similarity s_μ(x): `Dot` ξ·x, `NegEuclidean` −‖ξ−x‖₂, `NegManhattan` −‖ξ−x‖₁;
//! * energy E(x) = −Σ_μ F(s_μ(x)) for a separation F (see [`Separation`] for each one,
//!   including the log-sum-exp energy of `Softmax`);
//! * one update x ← proj(Σ_μ w_μ ξ^μ) with w = softmax(βs) for `Softmax` and
//!   w = F′(s) otherwise.
#![warn(missing_docs)]

pub mod backend;
pub mod binary;
mod config;
pub mod dynamics;
pub mod entmax;
mod error;
pub mod features;
pub mod kernelized;
pub mod lagrangian;
pub mod learn;
mod patterns;
pub mod procedural;
pub use procedural::{
    PatternKind, Procedural, ReluStats, StreamRequest, StreamSeparation, StreamStats,
};
mod result;
pub mod search;
mod tolerance;
pub mod weights;

pub use backend::Backend;
pub use config::{checked_energy, Config, Dynamics, Projection, Separation, Similarity};
pub use error::{Error, Result};
pub use patterns::{validate_queries, Edit, NormBounds, Patterns, Storage};
pub use result::{RetrievalResult, TopEntry};
pub use search::{SearchResult, TopK};
pub use tolerance::{Mismatch, Tolerance};
