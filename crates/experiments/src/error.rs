//! The crate's error type and the small helpers every module builds it with.

use std::path::Path;

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

/// The error for a malformed or out-of-range argument.
pub fn invalid(argument: &'static str, value: &str, reason: impl ToString) -> ExperimentError {
    ExperimentError::Invalid {
        argument,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// For `map_err`: the error of a failed read or write of `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExperimentError + '_ {
    move |source| ExperimentError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The error for a file that could not be written or read (`reason` says why).
pub fn output(path: &Path, reason: impl ToString) -> ExperimentError {
    ExperimentError::Output {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Creates the output folder `out` (and its parents) if it does not exist.
pub fn prepare_out(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|source| ExperimentError::Io {
        path: out.display().to_string(),
        source,
    })
}
