//! The ingest pipeline's wire type: one accepted event as the edge writes it to a Redis stream
//! and an `EventIngestor` reads it back (version 1, bincode 2).
//!
//! The edge has already validated, enriched and scoped the event: `tenant` is the authenticated
//! tenant, timestamps are final (clamped), `meta` is the JSON object stored in `events.meta`. The
//! first field is the format version; an entry of another version is not misread but refused
//! (and dead-lettered), so formats can change across a rolling upgrade. Enums are encoded as
//! variant indexes: their variants may only ever be appended.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::{EventSource, EventType};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestEntry {
    pub format: u8,
    pub tenant: Uuid,
    pub id: Uuid,
    pub event_type: EventType,
    pub source: EventSource,
    /// Microseconds since the Unix epoch.
    pub occurred_at_us: i64,
    pub received_at_us: i64,
    pub visitor_id: Option<String>,
    pub session_id: Option<String>,
    pub lead_id: Option<Uuid>,
    pub campaign_id: Option<Uuid>,
    pub landing_page_id: Option<Uuid>,
    pub email_id: Option<Uuid>,
    pub ad_id: Option<String>,
    /// A lower-cased email that identifies the visitor (a form's email field, a purchase's
    /// customer): the ingestor links the visitor to that lead, creating the lead if needed.
    pub identify_email: Option<String>,
    /// The `events.meta` object as JSON text: `context`, `properties` and the edge's flags.
    pub meta: String,
}

/// Why bytes are not an entry this version can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("undecodable entry: {0}")]
    Undecodable(String),
    #[error("entry format {0}, this node reads format {f}", f = IngestEntry::FORMAT)]
    UnknownFormat(u8),
}

impl IngestEntry {
    pub const FORMAT: u8 = 1;

    pub fn encode(&self) -> Vec<u8> {
        // Encoding integers, strings and UUIDs into a Vec cannot fail.
        bincode::serde::encode_to_vec(self, bincode::config::standard()).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        // The version is the first byte (a u8 is one byte in bincode's standard config), so an
        // entry of another format is told apart before its body is misread.
        match bytes.first() {
            Some(&Self::FORMAT) => {}
            Some(other) => return Err(EntryError::UnknownFormat(*other)),
            None => return Err(EntryError::Undecodable("empty".into())),
        }
        let (entry, read): (Self, usize) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| EntryError::Undecodable(e.to_string()))?;
        if read != bytes.len() {
            return Err(EntryError::Undecodable(format!("{} trailing bytes", bytes.len() - read)));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> IngestEntry {
        IngestEntry {
            format: IngestEntry::FORMAT,
            tenant: Uuid::now_v7(),
            id: Uuid::now_v7(),
            event_type: EventType::FormSubmit,
            source: EventSource::Web,
            occurred_at_us: 1_764_000_000_000_000,
            received_at_us: 1_764_000_000_100_000,
            visitor_id: Some("v1".into()),
            session_id: None,
            lead_id: None,
            campaign_id: Some(Uuid::now_v7()),
            landing_page_id: None,
            email_id: None,
            ad_id: None,
            identify_email: Some("ann@example.com".into()),
            meta: r#"{"properties":{"form_id":"signup"}}"#.into(),
        }
    }

    #[test]
    fn round_trips_and_refuses_other_formats_and_garbage() {
        let e = entry();
        assert_eq!(IngestEntry::decode(&e.encode()), Ok(e.clone()));
        let other = IngestEntry { format: 2, ..e.clone() };
        assert_eq!(IngestEntry::decode(&other.encode()), Err(EntryError::UnknownFormat(2)));
        assert!(matches!(IngestEntry::decode(b""), Err(EntryError::Undecodable(_))));
        assert!(matches!(IngestEntry::decode(&[1, 0xff, 0xff]), Err(EntryError::Undecodable(_))));
        let mut long = e.encode();
        long.push(0);
        assert!(matches!(IngestEntry::decode(&long), Err(EntryError::Undecodable(_))));
    }
}
