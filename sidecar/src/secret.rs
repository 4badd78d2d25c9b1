//! Secrets of a sidecar's config (`nats.password_file`, the TLS key, …): from an environment
//! variable or a secret file, through the one secret-file loader of `qilin_market::secrets::file`
//! (`O_NOFOLLOW`, checked on the open descriptor, private mode required).

pub use qilin_market::secrets::file::{SecretError, load};
