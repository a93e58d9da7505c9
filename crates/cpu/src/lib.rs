//! The CPU backends: the reference ([`reference`]: the maths of `dam-core` written
//! plainly in f64, the oracle) and the fast backend ([`CpuRetriever`] on [`fast`]: f32
//! products, cache blocking, all cores, SIMD epilogues), tested against the reference.
#![warn(missing_docs)]

pub mod binary;
pub mod fast;
pub mod features;
pub mod lagrangian;
pub mod learn;
pub mod learn_epilogue;
pub mod msgn;
pub mod procedural;
pub mod product;
pub mod reference;
mod retriever;
pub mod simd;

pub use reference::ReferenceRetriever;
pub use retriever::CpuRetriever;
