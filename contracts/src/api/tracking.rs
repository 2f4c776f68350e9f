//! Tracking over the API: the body and answer of `POST /v1/collect`, the tenant's tracking
//! settings (`GET|PATCH /v1/tracking`) and events as stored (`GET /v1/events`,
//! `GET /v1/leads/{id}/timeline`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Patch;
use crate::api::JsonObject;
use crate::events::{EventContext, EventSource, EventType, TrackingEvent};

/// `POST /v1/collect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectBatch {
    pub events: Vec<TrackingEvent>,
}

/// The answer to `POST /v1/collect`: every event of the batch is queued durably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collected {
    pub accepted: usize,
    /// The id of each event in the order sent (the client's, or the one assigned).
    pub ids: Vec<Uuid>,
}

/// `GET /v1/tracking`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingSettings {
    pub write_key: String,
    /// Origins allowed to send events with the write key; empty = any.
    pub allowed_origins: Vec<String>,
    pub cookieless: bool,
    /// The tenant's own rate limit; `null` = the node's default.
    pub events_per_second: Option<u32>,
    /// The HTML to paste into pages.
    pub snippet: String,
    pub key_rotated_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// `PATCH /v1/tracking`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingSettingsUpdate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookieless: Option<bool>,
    #[serde(default, skip_serializing_if = "Patch::is_missing")]
    pub events_per_second: Patch<u32>,
}

/// An event as stored, with what the edge added when it received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEvent {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub source: EventSource,
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub visitor_id: Option<String>,
    pub session_id: Option<String>,
    pub lead_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub landing_page_id: Option<Uuid>,
    pub email_id: Option<Uuid>,
    pub ad_id: Option<String>,
    pub context: EventContext,
    pub properties: JsonObject,
    /// The user agent is a known bot.
    pub bot: bool,
    /// The client's `occurred_at` when it was out of range and replaced.
    pub clamped_from: Option<DateTime<Utc>>,
    /// The sender's address without its host part (IPv4 /24, IPv6 /48).
    pub ip: Option<String>,
}

/// `GET /v1/events`, `GET /v1/leads/{id}/timeline`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEvents {
    pub data: Vec<StoredEvent>,
    pub next_cursor: Option<String>,
}
