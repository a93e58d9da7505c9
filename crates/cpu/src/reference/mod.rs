//! The reference: the maths of `dam-core` written plainly, one query and one pattern at a
//! time, accumulated in f64 (or exact integers). The oracle every fast path is tested
//! against; `dam::Device::Reference` runs it.

pub mod binary;
pub mod procedural;
