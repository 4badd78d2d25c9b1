//! qilin-core: the pinned busy-poll ingest loop. Being built (issue #4).
