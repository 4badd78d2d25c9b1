//! End-to-end tests live in `tests/tests/`; this library only holds helpers they share.
