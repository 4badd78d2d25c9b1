//! The sidecar status file (format in `docs/SIDECARS.md`): written by every sidecar, read by
//! `qilinctl status` and the recorder's metrics. It lives in `qilin_market::status`.

pub use qilin_market::status::{StatusFile, read_all, status_dir};
