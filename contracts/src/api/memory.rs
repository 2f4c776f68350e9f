//! Brand memory search (`GET /v1/memory/search?q=`): the tenant's stored texts most similar in
//! meaning to a query.

use serde::{Deserialize, Serialize};

use super::JsonObject;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryHit {
    /// Stable id of the stored item (`brand_core:positioning`, `persona:<name>`).
    pub external_id: String,
    pub content: String,
    pub metadata: JsonObject,
    /// Cosine similarity to the query, from -1 to 1; higher is closer.
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySearch {
    pub data: Vec<MemoryHit>,
}
