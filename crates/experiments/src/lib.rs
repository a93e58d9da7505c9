//! Capacity experiments for dense associative memories, and the `dam` command line.
//!
//! A sweep stores P = round(e^{αN}) procedural patterns (never materialised: pattern μ is
//! a function of the trial's seed and μ), starts from pattern 0 (or a corrupted copy),
//! applies the update, and counts the trials that meet a retrieval criterion. See
//! [`capacity::Sweep::run_point`] and the README's "Capacity experiments" section.

#![warn(missing_docs)]

pub mod args;
pub mod bench;
pub mod capacity;
pub mod census;
pub mod curve;
pub mod drdam;
pub mod ensemble_curve;
pub mod ensembles;
pub mod output;
pub mod phase;
pub mod search;
pub mod theory;
pub mod train;

pub use capacity::{Criterion, DynamicsArg, Energy, PatternSet, PointResult, QueryKind, Sweep};

/// Errors of the experiments crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExperimentError {
    /// An argument is malformed or out of range.
    #[error("invalid `{argument}` = {value:?}: {reason}")]
    Invalid {
        /// Which argument (`--alpha`, `--shard`, ...).
        argument: &'static str,
        /// What was given.
        value: String,
        /// What is expected.
        reason: String,
    },
    /// A combination the engine does not run yet.
    #[error("{0}")]
    Unsupported(String),
    /// An engine error.
    #[error(transparent)]
    Engine(#[from] dam::Error),
    /// Reading or writing an output file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV, JSON or SVG file could not be written or read.
    #[error("{path}: {reason}")]
    Output {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Shorthand result.
pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;
