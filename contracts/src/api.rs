//! Wire types of the tenant REST API (`/v1/...`). Each resource has its representation, a
//! `…Create` body and a `…Update` (PATCH) body; each has a JSON Schema under `contracts/api/`
//! named after it. Input types deny unknown fields so that a schema property without a Rust
//! field (or the reverse) fails the examples' round-trip test instead of drifting.

pub mod approval;
pub mod brand_core;
pub mod campaign;
pub mod error;
pub mod lead;
pub mod memory;
pub mod model_budget;
pub mod persona;
pub mod run;
pub mod tenant;
pub mod tracking;

use serde::{Deserialize, Serialize};

/// A JSON object (`{...}`), the shape of every free-form field (guidelines, strategy,
/// attributes, meta).
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// One page of a list. `next_cursor` is opaque; pass it back as `?cursor=` for the next page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}
