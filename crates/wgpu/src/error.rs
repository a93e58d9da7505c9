//! The wgpu backend's error type.

/// What can go wrong on the wgpu device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WgpuError {
    /// No adapter matched the request (no Vulkan/Metal/DX12/GL driver, or
    /// `VK_ICD_FILENAMES` pointing at nothing).
    #[error("no wgpu adapter found (backends {backends}): {reason}")]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
        /// wgpu's reason.
        reason: String,
    },
    /// The adapter refused the device request.
    #[error("requesting a device from adapter `{adapter}` failed: {reason}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },
    /// A validation or out-of-memory error caught by an error scope.
    #[error("{operation} failed on the device: {reason}")]
    Device {
        /// What was being done (creating a buffer, dispatching a kernel, ...).
        operation: String,
        /// wgpu's message.
        reason: String,
    },
    /// Mapping a buffer for readback failed or the device was lost while waiting.
    #[error("reading back `{buffer}` failed: {reason}")]
    Readback {
        /// Which buffer.
        buffer: &'static str,
        /// wgpu's reason.
        reason: String,
    },
}

impl From<WgpuError> for dam_core::Error {
    fn from(e: WgpuError) -> Self {
        dam_core::Error::Backend {
            backend: "wgpu",
            source: Box::new(e),
        }
    }
}
