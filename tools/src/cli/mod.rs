//! The `qilinctl` commands, one module per group; `main.rs` holds the clap definitions of the
//! top-level commands and dispatches to these. Dependencies run one way: `control` uses
//! `control_client`; `control`, `journal` and `validate_env` use `audited`; nothing uses `main`.

pub mod audit;
pub mod audited;
pub mod calendar;
pub mod control;
pub mod control_client;
pub mod journal;
pub mod products;
pub mod segment;
pub mod validate_env;
