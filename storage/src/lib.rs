//! Flywheel's storage: the only crate that talks to PostgreSQL, Redis and the vector stores.
//!
//! Tenant data is reachable only through a [`TenantTx`]: a transaction that begins with
//! `set_config('app.tenant_id', …, true)`, so PostgreSQL's forced row-level security scopes every
//! statement in it to one tenant. Repositories (`brand_core`, `campaigns`, …) take a `&mut
//! TenantTx`; the connection inside it is private to this crate. The few things that happen
//! before a tenant is known (API key lookup, tenant creation, slug resolution) go through
//! `SECURITY DEFINER` functions exposed as methods of [`Database`]. Redis keys are built only by
//! [`redis::TenantKey`], and vector memory is scoped per tenant by [`vector::VectorMemory`].

// This is the crate where SQL is allowed; clippy.toml forbids sqlx's query functions elsewhere.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod api_keys;
pub mod approvals;
pub mod audit;
pub mod brand_core;
pub mod campaigns;
pub mod catalog;
pub mod cluster;
pub mod cluster_bus;
mod error;
pub mod event_stream;
pub mod events;
pub mod ingest;
pub mod leads;
mod list;
pub mod model_usage;
pub mod outbox;
pub mod personas;
mod pg;
pub mod redis;
mod row;
pub mod runs;
pub mod tenants;
pub mod tracking;
pub mod vector;

pub use error::{Result, StorageError};
pub use list::ListQuery;
pub use pg::{Database, DatabaseConfig, MIGRATOR, TenantTx, ensure_database, migrate, migrations_fingerprint};
