//! The one error body every endpoint answers with: `{"error": {"code", "message", "field"?}}`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `malformed_json`, `validation_failed`, `not_found`, `conflict`,
    /// `payload_too_large`, `rate_limited` (429), `overloaded` (503, the tracking edge is full),
    /// `unsupported_media_type`, `unauthorized`, `forbidden`, `method_not_allowed`, `unavailable`,
    /// `internal`.
    pub code: String,
    /// For humans; never contains internal details.
    pub message: String,
    /// The offending input field, dotted (`budget.amount`, `channels.2`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
