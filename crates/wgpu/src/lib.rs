//! wgpu backend for dense associative memories: WGSL kernels on any GPU (Vulkan, Metal,
//! DX12, GL) and on CPU rasterizers such as Mesa lavapipe.
//!
//! * [`WgpuContext`]: adapter, device (requested with the adapter's limits), queue, a
//!   pipeline cache keyed by kernel, pattern loader and specialisation constants, and the
//!   read-back staging buffer.
//! * [`exec`]: the execution layer every workload is written on — slice planning within
//!   binding size, dispatch limits and the loop budget; buffers; dispatch lists encoded as
//!   one pass; batched read-back (one submit, one wait); error scopes.
//! * [`source`]: the WGSL kernels, registered in one place and composed with a pattern
//!   loader (f32, f16, f16 native).
//! * Workloads: [`WgpuRetriever`] (stored patterns and the retrieval loop, which stays on
//!   the device), [`procedural`], [`binary`] (spin dynamics), [`features`] (random
//!   features), [`matmul`] (the generic tiled matrix product), [`learn`] (classifier
//!   training), [`lagrangian`] (networks from Lagrangians).
#![warn(missing_docs)]

pub mod binary;
mod context;
mod error;
pub mod exec;
pub mod features;
pub mod lagrangian;
pub mod learn;
pub mod matmul;
mod params;
pub mod procedural;
mod retriever;
pub mod source;

pub use context::{AdapterChoice, AdapterSummary, Constants, WgpuContext, WgpuOptions};
pub use error::WgpuError;
pub use retriever::WgpuRetriever;
/// The wgpu crate this backend is built on (for `WgpuOptions` fields and feature flags).
pub use wgpu;
