//! Helpers shared by the process-level tests in core/tests: unique names for segments and sockets,
//! and the watchdog wait every test uses instead of a sleep.

#[allow(unused_imports)] // each test file uses a different part
pub use qilin_testkit::{WATCHDOG, unique, wait_for};
