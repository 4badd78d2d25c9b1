//! The only unsafe code of the CTP source, two operations ctp2rs leaves to its caller: viewing the
//! depth-market-data struct the SDK hands to `OnRtnDepthMarketData` as bytes (the hand-off carries
//! raw structs), and owning the SPI object whose pointer the SDK holds between `RegisterSpi` and
//! `Release`. Everything else (loading the library, the vtables, the calls) is in ctp2rs.
#![allow(unsafe_code)] // FFI glue around ctp2rs; each block states its invariant.

use std::mem::size_of;

use ctp2rs::v1alpha1::{CThostFtdcDepthMarketDataField, MdApi, MdSpi};

use crate::ctp::V67_SIZE;

// The binding's struct is the 6.7.x layout the normalizer parses (offsets asserted in crate::ctp).
const _: () = assert!(size_of::<CThostFtdcDepthMarketDataField>() == V67_SIZE);

/// The bytes of a depth-market-data struct, exactly as the SDK laid them out (584 bytes).
#[inline]
pub fn depth_bytes(field: &CThostFtdcDepthMarketDataField) -> &[u8] {
    let ptr = (field as *const CThostFtdcDepthMarketDataField).cast::<u8>();
    // SAFETY: `ptr` comes from a live shared reference, so the `size_of` bytes behind it are one
    // allocation, readable for the returned borrow (tied to `field`'s lifetime) and suitably aligned
    // for u8; nothing writes them while the borrow lives (the SDK owns the struct until the callback
    // returns and the borrow ends before that). The struct's padding bytes were written by the
    // SDK's C++ code, not by Rust; the feed never interprets them (the parser reads named fields
    // only and the dedup fingerprint skips padding, see engine::fingerprint).
    unsafe { std::slice::from_raw_parts(ptr, size_of::<CThostFtdcDepthMarketDataField>()) }
}

/// An SPI object registered with one `MdApi`: created here, its pointer handed to the SDK, and
/// taken back only once that API has been released.
pub struct RegisteredSpi<S: MdSpi + 'static> {
    ptr: *mut S,
}

// SAFETY: `RegisteredSpi` is only a pointer to an `S: MdSpi` (which ctp2rs requires to be Send); it
// is moved between the fronts' thread and nowhere else, and the SDK's callback thread uses the
// object only while the API is alive, never concurrently with `reclaim` (see there).
unsafe impl<S: MdSpi + 'static> Send for RegisteredSpi<S> {}

impl<S: MdSpi + 'static> RegisteredSpi<S> {
    /// Registers `spi` with `api` (`RegisterSpi`); the SDK calls it back from its own thread.
    pub fn register(api: &MdApi, spi: S) -> RegisteredSpi<S> {
        let ptr = Box::into_raw(Box::new(spi));
        api.register_spi(ptr as *mut dyn MdSpi);
        RegisteredSpi { ptr }
    }

    /// Releases `api` (ctp2rs's drop: `RegisterSpi(NULL)`, then `Release()`, which returns once the
    /// SDK's threads have stopped) and gives the SPI object back.
    pub fn release(self, api: MdApi) -> S {
        drop(api);
        // SAFETY: `self.ptr` came from `Box::into_raw` in `register` and is reclaimed exactly once
        // (`self` is consumed). The only other holder of the pointer was the SDK, through the API
        // just dropped: ctp2rs's drop unregisters the SPI and calls `Release()`, which joins the
        // SDK's threads, so no callback is running or can start; ctp2rs's own wrapper around the
        // pointer (`CThostFtdcMdSpiExt`) is freed there without dereferencing it.
        *unsafe { Box::from_raw(self.ptr) }
    }
}
