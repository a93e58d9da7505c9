//! Capacity experiments for dense associative memories, and the `dam` command line.
//!
//! A sweep stores P = round(e^{αN}) procedural patterns (never materialised: pattern μ is
//! a function of the trial's seed and μ), starts from pattern 0 (or a corrupted copy),
//! applies the update, and counts the trials that meet a retrieval criterion. See
//! [`capacity::Sweep::run_point`] and the README's "Capacity experiments" section.
//!
//! Every command of `dam` is a spec and a `run` here ([`sweep::run`], [`search::run`],
//! [`census::run`], [`train::run`], [`curve::run`], [`ensemble_curve::run`],
//! [`drdam::run`], [`lagrangian::run`], [`minima::run`], [`bench::run`], [`phase::run`],
//! [`muon::run`], [`kernel_fit::run`], [`sequential::run`]); the binary maps its arguments ([`cli`]) to a spec,
//! shows progress and prints the closing line.
//!
//! # Features
//!
//! `cli` (default): the `dam` binary, its arguments ([`cli`], clap) and every module that
//! draws a figure (plotters): [`output`], [`sweep`], [`census`], [`curve`],
//! [`ensemble_curve`], [`drdam`], [`lagrangian`], [`minima`], [`phase_plot`], [`muon_plot`],
//! [`kernel_fit_plot`], [`sequential_plot`]. Without it the crate is the capacity sweep and its languages
//! ([`args`], [`capacity`], [`ensembles`], [`search`], [`theory`]), the classifier training
//! ([`train`]), the associative-memory optimisers ([`muon`]), the U-Hop+ feature maps
//! ([`kernel_fit`]), the sequential learning of permuted digits ([`sequential`]) and the step benchmark ([`bench`](mod@bench)), with no clap, plotters or
//! indicatif.
//!
//! # Layers
//!
//! Each module uses only those listed before it: [`error`], [`seed`], [`ensembles`],
//! [`capacity`], [`args`], [`theory`], [`search`], [`train`], [`bench`](mod@bench), [`phase`],
//! [`muon`], [`kernel_fit`], [`sequential`], then (`cli`) [`output`], [`sweep`], [`census`], [`curve`],
//! [`ensemble_curve`], [`drdam`], [`lagrangian`], [`minima`], [`phase_plot`], [`muon_plot`],
//! [`kernel_fit_plot`], [`sequential_plot`], [`cli`].

#![warn(missing_docs)]

pub mod error;
pub mod seed;

pub mod ensembles;

pub mod capacity;

pub mod args;
pub mod bench;
pub mod kernel_fit;
pub mod muon;
pub mod phase;
pub mod search;
pub mod sequential;
pub mod theory;
pub mod train;

#[cfg(feature = "cli")]
pub mod output;

#[cfg(feature = "cli")]
pub mod census;
#[cfg(feature = "cli")]
pub mod curve;
#[cfg(feature = "cli")]
pub mod drdam;
#[cfg(feature = "cli")]
pub mod ensemble_curve;
#[cfg(feature = "cli")]
pub mod kernel_fit_plot;
#[cfg(feature = "cli")]
pub mod lagrangian;
#[cfg(feature = "cli")]
pub mod minima;
#[cfg(feature = "cli")]
pub mod muon_plot;
#[cfg(feature = "cli")]
pub mod phase_plot;
#[cfg(feature = "cli")]
pub mod sequential_plot;
#[cfg(feature = "cli")]
pub mod sweep;

#[cfg(feature = "cli")]
pub mod cli;

pub use capacity::{Criterion, DynamicsArg, Energy, PatternSet, PointResult, QueryKind, Sweep};
pub use error::{ExperimentError, Result};
