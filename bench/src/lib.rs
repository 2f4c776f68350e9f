//! Flywheel's load and performance harness: measurements run as ratios against a baseline taken
//! in the same process (raw PostgreSQL, a no-op handler), never as absolute pass/fail timings.
