//! The one door to atomics (style.md): every atomic type and fence the crate uses comes from here.
//!
//! Under `--cfg loom` the same names resolve to loom's model-checked types, so the protocol code in
//! [`crate::seqlock`] is checked by loom exactly as it is compiled for production. Nothing outside this
//! module names `core::sync::atomic`; `clippy.toml` forbids it elsewhere in the workspace.
#![allow(clippy::disallowed_types)] // this module is the single place allowed to name atomic types

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering, fence};
