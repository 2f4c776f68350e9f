//! The ingest pipeline's wire types: accepted events as the edge writes them to a Redis stream
//! entry and an `EventIngestor` reads them back (bincode 2, standard config).
//!
//! The edge has already validated, enriched and scoped each event: `tenant` is the authenticated
//! tenant, timestamps are final (clamped), `meta` is the JSON object stored in `events.meta`.
//! The first byte of an entry is its format:
//!
//! - format 1 ([`IngestEntry::encode`]): one event. Written by nodes before format 2, and still
//!   the encoding of a single dead-lettered event.
//! - format 2 ([`encode_packed`]): every accepted event of one request, which all belong to one
//!   tenant, in one entry: the tenant once, then the events without the format and tenant.
//!
//! [`decode_entry`] reads both, so entries left in a stream by a node of the previous version
//! are stored after an upgrade. An entry of an unknown format is not misread but refused (and
//! dead-lettered), so formats can change across a rolling upgrade. Enums are encoded as variant
//! indexes: their variants may only ever be appended.

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
    #[error("entry format {0}, this node reads formats {f} and {p}", f = IngestEntry::FORMAT, p = PACKED_FORMAT)]
    UnknownFormat(u8),
}

/// The format of an entry holding all the events of one request.
pub const PACKED_FORMAT: u8 = 2;

/// One event of a packed entry: an [`IngestEntry`] without the format and the tenant (the
/// entry's). Borrowed when encoding, so the edge copies no string to write it.
#[derive(Serialize)]
struct PackedEventRef<'a> {
    id: &'a Uuid,
    event_type: &'a EventType,
    source: &'a EventSource,
    occurred_at_us: i64,
    received_at_us: i64,
    visitor_id: &'a Option<String>,
    session_id: &'a Option<String>,
    lead_id: &'a Option<Uuid>,
    campaign_id: &'a Option<Uuid>,
    landing_page_id: &'a Option<Uuid>,
    email_id: &'a Option<Uuid>,
    ad_id: &'a Option<String>,
    identify_email: &'a Option<String>,
    meta: &'a str,
}

/// The owned twin of [`PackedEventRef`]: same fields, same order (the encoding is positional).
#[derive(Deserialize)]
struct PackedEvent {
    id: Uuid,
    event_type: EventType,
    source: EventSource,
    occurred_at_us: i64,
    received_at_us: i64,
    visitor_id: Option<String>,
    session_id: Option<String>,
    lead_id: Option<Uuid>,
    campaign_id: Option<Uuid>,
    landing_page_id: Option<Uuid>,
    email_id: Option<Uuid>,
    ad_id: Option<String>,
    identify_email: Option<String>,
    meta: String,
}

#[derive(Serialize)]
struct PackedRef<'a> {
    format: u8,
    tenant: Uuid,
    events: Vec<PackedEventRef<'a>>,
}

#[derive(Deserialize)]
struct Packed {
    format: u8,
    tenant: Uuid,
    events: Vec<PackedEvent>,
}

/// Encodes the events of one request as one entry of format 2. They must all be of `tenant`
/// (the edge admits a request for one tenant); `None` when one is not, or when there is none.
pub fn encode_packed(tenant: Uuid, events: &[IngestEntry]) -> Option<Vec<u8>> {
    if events.is_empty() || events.iter().any(|e| e.tenant != tenant) {
        return None;
    }
    let packed = PackedRef {
        format: PACKED_FORMAT,
        tenant,
        events: events
            .iter()
            .map(|e| PackedEventRef {
                id: &e.id,
                event_type: &e.event_type,
                source: &e.source,
                occurred_at_us: e.occurred_at_us,
                received_at_us: e.received_at_us,
                visitor_id: &e.visitor_id,
                session_id: &e.session_id,
                lead_id: &e.lead_id,
                campaign_id: &e.campaign_id,
                landing_page_id: &e.landing_page_id,
                email_id: &e.email_id,
                ad_id: &e.ad_id,
                identify_email: &e.identify_email,
                meta: &e.meta,
            })
            .collect(),
    };
    // Encoding integers, strings and UUIDs into a Vec cannot fail.
    bincode::serde::encode_to_vec(&packed, bincode::config::standard()).ok()
}

/// Decodes a stream entry of either format into its events, in the order they were sent.
pub fn decode_entry(bytes: &[u8]) -> Result<Vec<IngestEntry>, EntryError> {
    match bytes.first() {
        Some(&IngestEntry::FORMAT) => return IngestEntry::decode(bytes).map(|e| vec![e]),
        Some(&PACKED_FORMAT) => {}
        Some(other) => return Err(EntryError::UnknownFormat(*other)),
        None => return Err(EntryError::Undecodable("empty".into())),
    }
    let (packed, read): (Packed, usize) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|e| EntryError::Undecodable(e.to_string()))?;
    if read != bytes.len() {
        return Err(EntryError::Undecodable(format!("{} trailing bytes", bytes.len() - read)));
    }
    if packed.events.is_empty() {
        return Err(EntryError::Undecodable("an entry without events".into()));
    }
    debug_assert_eq!(packed.format, PACKED_FORMAT);
    let tenant = packed.tenant;
    Ok(packed
        .events
        .into_iter()
        .map(|e| IngestEntry {
            format: IngestEntry::FORMAT,
            tenant,
            id: e.id,
            event_type: e.event_type,
            source: e.source,
            occurred_at_us: e.occurred_at_us,
            received_at_us: e.received_at_us,
            visitor_id: e.visitor_id,
            session_id: e.session_id,
            lead_id: e.lead_id,
            campaign_id: e.campaign_id,
            landing_page_id: e.landing_page_id,
            email_id: e.email_id,
            ad_id: e.ad_id,
            identify_email: e.identify_email,
            meta: e.meta,
        })
        .collect())
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

    #[test]
    fn a_packed_entry_round_trips_and_single_events_still_decode() {
        let first = entry();
        let tenant = first.tenant;
        let second = IngestEntry { id: Uuid::now_v7(), identify_email: None, meta: "{}".into(), ..first.clone() };
        let packed = encode_packed(tenant, &[first.clone(), second.clone()]).expect("one tenant");
        assert_eq!(packed[0], PACKED_FORMAT);
        assert_eq!(decode_entry(&packed), Ok(vec![first.clone(), second.clone()]));
        // Smaller than the two events apart: the tenant is written once.
        assert!(packed.len() < first.encode().len() + second.encode().len());
        // Format 1, as written by a node of the previous version.
        assert_eq!(decode_entry(&first.encode()), Ok(vec![first.clone()]));
        let stranger = IngestEntry { tenant: Uuid::now_v7(), ..second };
        assert_eq!(encode_packed(tenant, &[first.clone(), stranger]), None);
        assert_eq!(encode_packed(tenant, &[]), None);
        assert_eq!(decode_entry(&[9, 1, 2]), Err(EntryError::UnknownFormat(9)));
        let mut long = packed.clone();
        long.push(0);
        assert!(matches!(decode_entry(&long), Err(EntryError::Undecodable(_))));
        assert!(matches!(decode_entry(&packed[..packed.len() - 3]), Err(EntryError::Undecodable(_))));
    }
}
