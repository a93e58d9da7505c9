//! The error type shared by every backend.

/// Everything that can go wrong in the engine. Each variant names the argument,
/// size or limit involved, so that the message alone tells the caller what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument is empty (zero rows or zero columns).
    #[error("`{argument}` is empty: {detail}")]
    Empty {
        /// Which argument.
        argument: &'static str,
        /// What was empty.
        detail: String,
    },
    /// Two arguments disagree in dimension.
    #[error("dimension mismatch in `{argument}`: expected {expected}, got {actual}")]
    DimensionMismatch {
        /// Which argument.
        argument: &'static str,
        /// The dimension it must have.
        expected: usize,
        /// The dimension it has.
        actual: usize,
    },
    /// An input holds NaN or ±Inf.
    #[error("`{argument}` holds a non-finite value ({value}) at row {row}, column {col}")]
    NonFinite {
        /// Which argument.
        argument: &'static str,
        /// Row of the first bad value.
        row: usize,
        /// Column of the first bad value.
        col: usize,
        /// The value itself.
        value: f32,
    },
    /// A parameter is outside its domain (β ≤ 0, n = 0, k = 0, k > P, ...).
    #[error("invalid parameter `{argument}` = {value}: {reason}")]
    InvalidParameter {
        /// Which parameter.
        argument: &'static str,
        /// Its value, printed.
        value: String,
        /// What the valid range is.
        reason: String,
    },
    /// A computation left the range of f32 (for example `Polynomial` with no projection,
    /// iterated until the state overflows). The result would be a silently wrong number,
    /// so it is reported instead.
    #[error("the {what} of query {query} is not finite after {steps} step(s) ({hint})")]
    Overflow {
        /// What overflowed (state, energy).
        what: &'static str,
        /// The first query affected.
        query: usize,
        /// Steps taken when it was detected.
        steps: usize,
        /// How to avoid it.
        hint: &'static str,
    },
    /// A size is beyond what the device or the format can hold.
    #[error("`{argument}` is too large: {size} exceeds the limit {limit} ({detail})")]
    TooLarge {
        /// Which argument.
        argument: &'static str,
        /// The requested size.
        size: u64,
        /// The limit.
        limit: u64,
        /// What the limit is.
        detail: String,
    },
    /// An error from a device backend (adapter, device, dispatch, readback).
    #[error("{backend} backend: {source}")]
    Backend {
        /// The backend name (`wgpu`).
        backend: &'static str,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not in the expected format.
    #[error("{path}: not a valid {format} file: {reason}")]
    Format {
        /// The file.
        path: String,
        /// The expected format.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No stored pattern has this id (never given out, or removed).
    #[error("`{argument}`: no stored pattern has id {id} (never inserted, or removed)")]
    UnknownId {
        /// Which argument.
        argument: &'static str,
        /// The id.
        id: u64,
    },
    /// Something needs a cargo feature this build was compiled without.
    #[error("{wanted} needs the `{feature}` cargo feature, which this build was compiled without")]
    FeatureDisabled {
        /// The feature.
        feature: &'static str,
        /// What asked for it.
        wanted: String,
    },
    /// A combination the engine does not run yet.
    #[error("{what} is not supported yet: {detail}")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
        /// What to do instead.
        detail: String,
    },
    /// Training stopped making progress: no memory received a gradient (outputs saturated,
    /// or F′ vanishing), or the loss stayed put for several epochs. The message says what
    /// was seen and which parameter to change.
    #[error("{what} (epoch {epoch}: {detail}): {remedy}")]
    Stalled {
        /// What happened, in a few words.
        what: String,
        /// The 1-based epoch at which it was detected.
        epoch: usize,
        /// The measurements behind it (loss, outputs, gradients).
        detail: String,
        /// Which parameter to change, with its current value.
        remedy: String,
    },
    /// The `DAM_DEVICE` environment variable holds an unknown value.
    #[error("DAM_DEVICE={value:?} is not a device; use `cpu`, `wgpu`, `wgpu:N` (adapter index, see `dam devices`), `wgpu:NAME` or `auto`")]
    UnknownDevice {
        /// The value found.
        value: String,
    },
}

/// Shorthand for `Result<T, dam_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The state of `query` left f32 after `steps` update steps (every backend reports it so).
    pub fn state_overflow(query: usize, steps: usize) -> Self {
        Error::Overflow {
            what: "state",
            query,
            steps,
            hint: "the update left f32; use Projection::Sphere or Sign, or fewer steps",
        }
    }
}
