//! Sidecars (qilin-nats, qilin-recorder, qilin-secrets) arrive with their issues; this crate holds
//! nothing yet.
