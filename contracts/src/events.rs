//! Tracking events (version 1): the wire type of `POST /v1/collect` (a batch of them), of the
//! `GET /t.gif` pixel and of server-side events, described by `contracts/events/event.schema.json`.
//!
//! Type-specific rules (a purchase has an amount, an `email_open` an `email_id`, …) live in the
//! schema, which the edge checks before deserializing; these types carry the shape.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::api::JsonObject;
use crate::ids::{CampaignId, LandingPageId, LeadId};

mod parse;

pub use parse::{BatchError, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, parse_batch, parse_one, parse_pixel};

/// An event as JSON text (what a client would send).
pub fn to_json(event: &TrackingEvent) -> String {
    // Serializing plain fields and JSON maps cannot fail.
    serde_json::to_string(event).unwrap_or_default()
}

/// What happened. The same list as the `events.event_type` check constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    PageView,
    Click,
    FormSubmit,
    LeadCreated,
    MeetingBooked,
    EmailSent,
    EmailOpen,
    EmailClick,
    WhatsappSent,
    Purchase,
    Refund,
    Feedback,
    AffiliateClick,
    AdImpression,
    AdClick,
}

impl EventType {
    pub const ALL: [EventType; 15] = [
        EventType::PageView,
        EventType::Click,
        EventType::FormSubmit,
        EventType::LeadCreated,
        EventType::MeetingBooked,
        EventType::EmailSent,
        EventType::EmailOpen,
        EventType::EmailClick,
        EventType::WhatsappSent,
        EventType::Purchase,
        EventType::Refund,
        EventType::Feedback,
        EventType::AffiliateClick,
        EventType::AdImpression,
        EventType::AdClick,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            EventType::PageView => "page_view",
            EventType::Click => "click",
            EventType::FormSubmit => "form_submit",
            EventType::LeadCreated => "lead_created",
            EventType::MeetingBooked => "meeting_booked",
            EventType::EmailSent => "email_sent",
            EventType::EmailOpen => "email_open",
            EventType::EmailClick => "email_click",
            EventType::WhatsappSent => "whatsapp_sent",
            EventType::Purchase => "purchase",
            EventType::Refund => "refund",
            EventType::Feedback => "feedback",
            EventType::AffiliateClick => "affiliate_click",
            EventType::AdImpression => "ad_impression",
            EventType::AdClick => "ad_click",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What sent the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    /// The tracking script in a browser.
    Web,
    /// The tenant's own backend, with an API key.
    Server,
    /// The `GET /t.gif` image.
    Pixel,
    /// Flywheel's email sender.
    Email,
    /// Flywheel's WhatsApp sender.
    Whatsapp,
    /// An ad platform's reports or webhooks.
    Ads,
    /// A bulk import of past events.
    Import,
}

impl EventSource {
    pub const ALL: [EventSource; 7] = [
        EventSource::Web,
        EventSource::Server,
        EventSource::Pixel,
        EventSource::Email,
        EventSource::Whatsapp,
        EventSource::Ads,
        EventSource::Import,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            EventSource::Web => "web",
            EventSource::Server => "server",
            EventSource::Pixel => "pixel",
            EventSource::Email => "email",
            EventSource::Whatsapp => "whatsapp",
            EventSource::Ads => "ads",
            EventSource::Import => "import",
        }
    }
}

impl fmt::Display for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tracking event as a client sends it. Absent optional fields stay absent when
/// serialized, so a value round-trips exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingEvent {
    /// Client-generated, so that a retried send is counted once; the edge assigns one if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When absent, the time in `id` when that is a UUID v7 within the accepted window (so a
    /// retry within that window stays a duplicate), else the time the edge received the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    pub source: EventSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<LeadId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<CampaignId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page_id: Option<LandingPageId>,
    /// The Flywheel email (`emails.id`) the event is about; there is no typed id for it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_id: Option<Uuid>,
    /// The ad platform's id of the ad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    /// Boxed: the event is moved several times between the body and its stream entry, and the
    /// context is two thirds of its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Box<EventContext>>,
    /// Type-specific details (`amount`, `currency` and `order_id` of a purchase, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<JsonObject>,
}

/// Where the event happened.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// A BCP 47 language tag (`en-US`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm: Option<Utm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_ids: Option<ClickIds>,
    /// The affiliate referral code (`affiliates.referral_code`), `ref` on the wire.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub referral_code: Option<String>,
}

/// A screen size in CSS pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Screen {
    pub width: u32,
    pub height: u32,
}

/// The `utm_*` parameters of the landing URL, without the prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Click ids ad platforms append to landing URLs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickIds {
    /// Google Ads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    /// Meta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fbclid: Option<String>,
    /// Microsoft Advertising.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msclkid: Option<String>,
    /// TikTok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttclid: Option<String>,
    /// LinkedIn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub li_fat_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_wire_names() {
        for t in EventType::ALL {
            assert_eq!(serde_json::to_value(t).ok(), Some(serde_json::json!(t.as_str())));
        }
        for s in EventSource::ALL {
            assert_eq!(serde_json::to_value(s).ok(), Some(serde_json::json!(s.as_str())));
        }
    }
}
