//! Flywheel's contracts: the typed ids, values and wire types every other crate shares, and the
//! JSON Schemas (`contracts/api/*.json`, `contracts/events/event.schema.json`) that validate
//! them at the edge. Only this crate defines types that cross a process boundary.
//!
//! Values are newtypes that parse (`TenantId`, `Slug`, `Email`, `Money`): an invalid one cannot
//! be constructed. Examples under `contracts/examples/` are checked against both the schemas and
//! these types, so the two cannot drift.

pub mod admin;
pub mod api;
pub mod cluster;
pub mod email;
pub mod events;
pub mod hot;
pub mod ids;
pub mod ingest;
pub mod money;
pub mod patch;
pub mod phone;
pub mod role;
pub mod schema;
pub mod secret;
pub mod slug;

pub use email::Email;
pub use ids::TenantId;
pub use money::{Currency, Money};
pub use patch::Patch;
pub use phone::Phone;
pub use role::Role;
pub use secret::Secret;
pub use slug::Slug;

/// Why a value could not be parsed into one of the contract types. `field` names the input
/// field when the caller knows it; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidValue {
    pub message: String,
}

impl InvalidValue {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}
