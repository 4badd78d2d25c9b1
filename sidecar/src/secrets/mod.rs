//! `qilin-secrets`' library: the schema, loading and validation are [`qilin_market::secrets`] (so
//! `qilinctl validate-env` and this sidecar run the same checks),
//! re-exported here; this module adds what only the sidecar does: [`shred()`]ding the runtime file
//! once its secrets are held in memory, the [`handoff`] of CTP credentials to the core over its
//! control socket, [`rotate`]: watching the source and driving failover → re-login → failback (and
//! back to the previous credentials when a step fails), and its [`status`] file.

pub mod handoff;
pub mod rotate;
pub mod shred;
pub mod status;

pub use qilin_market::secrets::{
    Loaded, Origin, Problem, Profile, Source, SourceError, Value, check, load, schema, validate,
};
pub use shred::shred;
