//! Flywheel's end-to-end tests, one binary (one link) for all of them: real PostgreSQL and
//! Redis, a database and a Redis namespace per test (see `flywheel_tests`).

mod api;
mod openapi;
mod redis;
mod rls;
mod vector;
