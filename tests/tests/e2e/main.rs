//! Flywheel's end-to-end tests, one binary (one link) for all of them: real PostgreSQL and
//! Redis, a database and a Redis namespace per test (see `flywheel_tests`).

// Tests reach PostgreSQL with raw SQL on purpose: to read the catalog and to attack row-level
// security in ways the typed storage API cannot even express.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod admin;
mod api;
mod architecture;
mod branding;
mod cli;
mod cluster;
mod crash;
mod harness;
mod ingest_crash;
mod models;
mod openapi;
mod redis;
mod rls;
mod runtime;
mod tls;
mod tracker;
mod tracking;
mod vector;
