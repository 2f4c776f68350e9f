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
//! - format 3 ([`compress_entry`]): an entry of format 2, LZ4-compressed (its length as a
//!   little-endian `u32`, then the LZ4 block). The events of one page's batch repeat their
//!   context (URL, user agent, UTM), so an entry shrinks about fourfold (10 KB to 2.3 KB, for
//!   4 µs in a loop and about 6 µs a request under load): the bytes Redis copies in, keeps for
//!   the backlog and hands to the ingestors, and the loopback copies on both sides, fall by as
//!   much.
//!
//! [`decode_entry`] reads all three, so entries left in a stream by a node of the previous version
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
    #[error("entry format {0}, this node reads formats {f}, {p} and {c}", f = IngestEntry::FORMAT, p = PACKED_FORMAT, c = COMPRESSED_FORMAT)]
    UnknownFormat(u8),
}

/// The format of an entry holding all the events of one request.
pub const PACKED_FORMAT: u8 = 2;
/// The format of a compressed entry of format 2.
pub const COMPRESSED_FORMAT: u8 = 3;
/// The largest entry of format 2 a compressed one may expand to: far above what one request can
/// make (a body is at most 1 MiB, its events' metadata no larger), so a corrupt length is
/// refused before anything is allocated for it.
const MAX_EXPANDED_BYTES: usize = 16 << 20;

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
    // Sized up front: grown from empty, a ~10 KB entry was reallocated a dozen times on the way
    // (with it, bincode's share of the edge's CPU fell from 3.6 % to 1.2 % in a perf profile).
    let mut out = Vec::with_capacity(packed_capacity(events));
    // Encoding integers, strings and UUIDs into a Vec cannot fail.
    bincode::serde::encode_into_std_write(&packed, &mut out, bincode::config::standard()).ok()?;
    Some(out)
}

/// The bytes an entry of format 2 holding `events` takes at most: each string's contents, and
/// [`PACKED_EVENT_FIXED`] per event.
fn packed_capacity(events: &[IngestEntry]) -> usize {
    let strings = |e: &IngestEntry| {
        [&e.visitor_id, &e.session_id, &e.ad_id, &e.identify_email]
            .iter()
            .map(|s| s.as_ref().map_or(0, String::len))
            .sum::<usize>()
            + e.meta.len()
    };
    PACKED_HEADER + events.iter().map(|e| PACKED_EVENT_FIXED + strings(e)).sum::<usize>()
}

/// The format, the tenant and the events' count, at their widest.
const PACKED_HEADER: usize = 1 + (1 + 9 + 16) + 9;

/// An upper bound on the bytes of a packed event besides its strings' contents: five UUIDs (a
/// tag, a length prefix and 16 bytes each; the id has no tag), two variant indexes, two
/// timestamps, and five strings' tags (`meta` has none) and length prefixes, every varint at its
/// widest.
const PACKED_EVENT_FIXED: usize = 5 * (1 + 9 + 16) + 2 * 5 + 2 * 9 + 5 * (1 + 9);

/// An entry of format 2 as one of format 3 ([`COMPRESSED_FORMAT`]), or as it is when that is not
/// smaller (a short entry, or one of another format).
pub fn compress_entry(packed: Vec<u8>) -> Vec<u8> {
    let Ok(len) = u32::try_from(packed.len()) else { return packed };
    if packed.first() != Some(&PACKED_FORMAT) {
        return packed;
    }
    // Compressed into a buffer kept per thread and copied out at its size: a fresh buffer of the
    // bound's size had to be zeroed first (LZ4's bound is larger than the input), four times the
    // bytes the copy moves. An entry too large for the kept buffer gets one of its own.
    let bound = 5 + lz4_flex::block::get_maximum_output_size(packed.len());
    if bound > SCRATCH_MAX {
        return compress_with(packed, len, &mut vec![0; bound]);
    }
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < bound {
            scratch.resize(bound, 0);
        }
        compress_with(packed, len, &mut scratch[..bound])
    })
}

/// The largest buffer [`compress_entry`] keeps per thread: room for a page's batch many times
/// over.
const SCRATCH_MAX: usize = 256 << 10;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `packed` (of `len` bytes) compressed through `buffer` (at least its LZ4 bound plus 5 bytes),
/// or as it is when that is not smaller.
fn compress_with(packed: Vec<u8>, len: u32, buffer: &mut [u8]) -> Vec<u8> {
    match lz4_flex::block::compress_into(&packed, &mut buffer[5..]) {
        Ok(written) if 5 + written < packed.len() => {
            let mut out = Vec::with_capacity(5 + written);
            out.push(COMPRESSED_FORMAT);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&buffer[5..5 + written]);
            out
        }
        _ => packed,
    }
}

/// Decodes a stream entry of any format into its events, in the order they were sent.
pub fn decode_entry(bytes: &[u8]) -> Result<Vec<IngestEntry>, EntryError> {
    match bytes.first() {
        Some(&IngestEntry::FORMAT) => IngestEntry::decode(bytes).map(|e| vec![e]),
        Some(&PACKED_FORMAT) => decode_packed(bytes),
        Some(&COMPRESSED_FORMAT) => {
            let expanded = expand(bytes)?;
            // Only format 2 is ever compressed: anything else inside is corrupt.
            match expanded.first() {
                Some(&PACKED_FORMAT) => decode_packed(&expanded),
                other => Err(EntryError::Undecodable(format!("a compressed entry holding format {other:?}"))),
            }
        }
        Some(other) => Err(EntryError::UnknownFormat(*other)),
        None => Err(EntryError::Undecodable("empty".into())),
    }
}

/// The entry of format 2 a compressed entry holds, checked to be exactly the length it claims.
fn expand(bytes: &[u8]) -> Result<Vec<u8>, EntryError> {
    let Some(len) = bytes.get(1..5).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
        return Err(EntryError::Undecodable("a compressed entry without its length".into()));
    };
    if len > MAX_EXPANDED_BYTES {
        return Err(EntryError::Undecodable(format!("a compressed entry claiming {len} bytes")));
    }
    let mut out = vec![0; len];
    match lz4_flex::block::decompress_into(&bytes[5..], &mut out) {
        Ok(written) if written == len => Ok(out),
        Ok(written) => Err(EntryError::Undecodable(format!("a compressed entry of {written} bytes, not {len}"))),
        Err(e) => Err(EntryError::Undecodable(format!("a corrupt compressed entry: {e}"))),
    }
}

fn decode_packed(bytes: &[u8]) -> Result<Vec<IngestEntry>, EntryError> {
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

    #[test]
    fn a_packed_entry_fits_the_room_made_for_it() {
        // Every field present and every number at its widest varint.
        let widest = IngestEntry {
            event_type: EventType::Purchase,
            occurred_at_us: i64::MIN,
            received_at_us: i64::MAX,
            session_id: Some("s".repeat(300)),
            lead_id: Some(Uuid::max()),
            landing_page_id: Some(Uuid::max()),
            email_id: Some(Uuid::max()),
            ad_id: Some("é".repeat(200)),
            meta: "x".repeat(70_000),
            ..entry()
        };
        let plain = IngestEntry { tenant: widest.tenant, ..entry() };
        for events in [vec![widest.clone()], vec![widest.clone(); 500], vec![plain, widest]] {
            let packed = encode_packed(events[0].tenant, &events).expect("one tenant");
            assert!(packed.len() <= packed_capacity(&events), "{} > {}", packed.len(), packed_capacity(&events));
        }
    }

    /// Twenty events of one page, as a browser's batch sends them.
    fn page_batch() -> (Uuid, Vec<IngestEntry>) {
        let first = entry();
        let meta = r#"{"context":{"url":"https://shop.example/products/trail-runner","title":"Trail runner","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36","locale":"en-US","utm":{"source":"google","medium":"cpc"}},"ip":"203.0.113.0"}"#;
        let events = (0..20).map(|_| IngestEntry { id: Uuid::now_v7(), meta: meta.into(), ..first.clone() }).collect();
        (first.tenant, events)
    }

    #[test]
    fn a_compressed_entry_round_trips_smaller_and_a_short_one_stays_packed() {
        let (tenant, events) = page_batch();
        let packed = encode_packed(tenant, &events).expect("one tenant");
        let compressed = compress_entry(packed.clone());
        assert_eq!(compressed[0], COMPRESSED_FORMAT);
        assert!(compressed.len() * 3 < packed.len(), "{} of {} bytes", compressed.len(), packed.len());
        assert_eq!(decode_entry(&compressed), Ok(events.clone()));
        // One past the buffer kept per thread, then a small one again through that buffer.
        let many: Vec<IngestEntry> = (0..40).flat_map(|_| events.clone()).collect();
        let large = encode_packed(tenant, &many).expect("one tenant");
        assert!(lz4_flex::block::get_maximum_output_size(large.len()) > SCRATCH_MAX);
        assert_eq!(decode_entry(&compress_entry(large)), Ok(many));
        assert_eq!(compress_entry(packed), compressed);
        // Nothing to gain on one short event without repeats: left as it is.
        let short = IngestEntry {
            tenant: Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            id: Uuid::from_u128(0x1f2e_3d4c_5b6a_7988_a7b6_c5d4_e3f2_0112),
            campaign_id: None,
            identify_email: None,
            meta: "{}".into(),
            ..entry()
        };
        let one = encode_packed(short.tenant, std::slice::from_ref(&short)).expect("one tenant");
        assert_eq!(compress_entry(one.clone()), one);
        assert_eq!(decode_entry(&one), Ok(vec![short]));
        // Other formats are never compressed.
        let single = entry().encode();
        assert_eq!(compress_entry(single.clone()), single);
    }

    #[test]
    fn a_corrupt_compressed_entry_is_refused_not_misread() {
        let (tenant, events) = page_batch();
        let compressed = compress_entry(encode_packed(tenant, &events).expect("one tenant"));
        let undecodable = |bytes: &[u8]| matches!(decode_entry(bytes), Err(EntryError::Undecodable(_)));
        // Cut short, in its length or in its data.
        assert!(undecodable(&compressed[..3]));
        assert!(undecodable(&compressed[..compressed.len() - 1]));
        // A length that is not the data's, or past the bound (refused before allocating it).
        let mut wrong = compressed.clone();
        let claimed = u32::from_le_bytes([wrong[1], wrong[2], wrong[3], wrong[4]]);
        wrong[1..5].copy_from_slice(&(claimed - 1).to_le_bytes());
        assert!(undecodable(&wrong));
        let mut huge = compressed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(undecodable(&huge));
        // A compressed entry holds format 2 only: not another compressed one, not format 1.
        for inner in [compressed.clone(), entry().encode()] {
            let len = u32::try_from(inner.len()).expect("short");
            let mut nested = vec![COMPRESSED_FORMAT];
            nested.extend(len.to_le_bytes());
            nested.extend(lz4_flex::block::compress(&inner));
            assert!(undecodable(&nested), "format {} inside", inner[0]);
        }
    }

    proptest::proptest! {
        /// Whatever follows the format byte of a compressed entry, decoding answers, never panics.
        #[test]
        fn decoding_random_compressed_entries_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut bytes = vec![COMPRESSED_FORMAT];
            bytes.extend(body);
            let _ = decode_entry(&bytes);
        }
    }
}
