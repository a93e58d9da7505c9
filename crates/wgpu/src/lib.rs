//! wgpu backend for dense associative memories: WGSL kernels on any GPU (Vulkan, Metal,
//! DX12, GL) and on CPU rasterizers such as Mesa lavapipe.
//!
//! * [`WgpuContext`]: adapter, device (requested with the adapter's limits), queue and a
//!   pipeline cache keyed by kernel and specialisation constants.
//! * [`source::Kernel`]: the WGSL kernels, registered in one place.
//! * [`WgpuRetriever`]: stored patterns on the device (split into chunks when they exceed
//!   one storage binding) and the retrieval loop, which stays on the device: the only
//!   per-step readback is one `u32`, the count of queries still moving.
#![warn(missing_docs)]

pub mod binary;
mod context;
mod error;
pub mod features;
pub mod procedural;
mod retriever;
pub mod source;

pub use context::{Constants, WgpuContext, WgpuOptions};
pub use error::WgpuError;
pub use retriever::WgpuRetriever;
/// The wgpu crate this backend is built on (for `WgpuOptions` fields and feature flags).
pub use wgpu;
