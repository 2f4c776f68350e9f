//! Turning untrusted bytes into events: a `POST /v1/collect` body or the query of a `GET /t.gif`
//! pixel. Limits are checked before the work they bound (size before parsing, count before
//! validating), every event is held to `event.schema.json` and typed, and an error names the
//! event by its index (`events.3.properties.amount`). Never panics, whatever the input (a
//! property test and a `cargo fuzz` target hold it to that).
//!
//! Two ways to one answer: the fast path (`parse/fast.rs`) reads events straight into their type
//! and checks the schema's rules by hand; anything it does not accept takes the slow path (a
//! `Value`, the schema validator, then the type), which is the answer, and the error, of record.

use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use super::TrackingEvent;
use crate::schema;

mod fast;

/// One event, serialized, at most.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Events in one batch, at most.
pub const MAX_BATCH_EVENTS: usize = 500;
/// A batch's body, at most.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Why input is not a batch of events. Each kind is one HTTP status at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Over a size or count limit (413).
    #[error("{message}")]
    TooLarge { field: Option<String>, message: String },
    /// Not JSON at all (400).
    #[error("{message}")]
    Malformed { message: String },
    /// JSON that breaks the schema or a rule (422), at `field`.
    #[error("{message}")]
    Invalid { field: Option<String>, message: String },
}

impl BatchError {
    pub fn field(&self) -> Option<&str> {
        match self {
            BatchError::TooLarge { field, .. } | BatchError::Invalid { field, .. } => field.as_deref(),
            BatchError::Malformed { .. } => None,
        }
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> BatchError {
    BatchError::Invalid { field: Some(field.into()), message: message.into() }
}

/// Parses a `POST /v1/collect` body: `{"events": [...]}` (a top-level `tenant_id` is ignored: the
/// tenant is the key's).
///
/// The common case, a well-formed batch of valid events, takes the fast path (`parse/fast.rs`):
/// events are read straight from the body into their type (in one pass when the body is no
/// larger than one event may be, else each once it is measured) and the schema's rules are
/// checked by hand. Whatever the fast path does not accept goes the slow way (a `Value`, the
/// schema, then the type), which gives the same answer and the error a client sees.
pub fn parse_batch(body: &[u8]) -> Result<Vec<TrackingEvent>, BatchError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(BatchError::TooLarge {
            field: None,
            message: format!("a batch is at most {MAX_BATCH_BYTES} bytes, this one is {}", body.len()),
        });
    }
    if let Some(events) = fast::small_batch(body) {
        return Ok(events);
    }
    let Some(events) = fast::batch_events(body) else {
        return parse_batch_slowly(body, parse_one);
    };
    events
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let text = raw.get();
            // The size limit before the work it bounds; the path is only built for the slow way.
            match (text.len() <= MAX_EVENT_BYTES).then(|| fast::event(text)).flatten() {
                Some(event) => Ok(event),
                None => parse_one_slowly(text, &format!("events.{i}")),
            }
        })
        .collect()
}

/// The body as a map of raw values, checked key by key (the errors of a body that is not a plain
/// batch), each event parsed by `parse_event`.
fn parse_batch_slowly(
    body: &[u8],
    parse_event: fn(&str, &str) -> Result<TrackingEvent, BatchError>,
) -> Result<Vec<TrackingEvent>, BatchError> {
    let top: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            BatchError::Invalid { field: None, message: "the body must be a JSON object: {\"events\": [...]}".into() }
        } else {
            BatchError::Malformed { message: format!("the body is not valid JSON: {e}") }
        }
    })?;
    if let Some(unknown) = top.keys().find(|k| !matches!(k.as_str(), "events" | "tenant_id")) {
        return Err(invalid(unknown.clone(), format!("unknown field `{unknown}`; a batch is {{\"events\": [...]}}")));
    }
    let raw = top.get("events").ok_or_else(|| invalid("events", "`events` is required"))?;
    let events: Vec<Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|_| invalid("events", "`events` must be an array of events"))?;
    if events.is_empty() {
        return Err(invalid("events", "`events` must hold at least one event"));
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(BatchError::TooLarge {
            field: Some("events".into()),
            message: format!("a batch holds at most {MAX_BATCH_EVENTS} events, this one {}", events.len()),
        });
    }
    events.iter().enumerate().map(|(i, raw)| parse_event(raw.get(), &format!("events.{i}"))).collect()
}

/// Parses one event's JSON text; `path` prefixes the field of any error.
pub fn parse_one(text: &str, path: &str) -> Result<TrackingEvent, BatchError> {
    match (text.len() <= MAX_EVENT_BYTES).then(|| fast::event(text)).flatten() {
        Some(event) => Ok(event),
        None => parse_one_slowly(text, path),
    }
}

/// [`parse_one`] through a `Value` and the schema: the answer, and the error, of record.
fn parse_one_slowly(text: &str, path: &str) -> Result<TrackingEvent, BatchError> {
    if text.len() > MAX_EVENT_BYTES {
        return Err(BatchError::TooLarge {
            field: Some(path.to_owned()),
            message: format!("an event is at most {MAX_EVENT_BYTES} bytes, {path} is {}", text.len()),
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| invalid(path, format!("not a JSON value: {e}")))?;
    validate_value(value, path)
}

/// Validates a JSON value as an event and types it.
pub fn validate_value(value: Value, path: &str) -> Result<TrackingEvent, BatchError> {
    let join = |field: Option<String>| match field {
        Some(f) => format!("{path}.{f}"),
        None => path.to_owned(),
    };
    if let Err(v) = schema::validate(schema::EVENT, &value) {
        return Err(BatchError::Invalid { field: Some(join(v.field)), message: v.message });
    }
    let typed: Result<TrackingEvent, _> = serde_path_free(value);
    typed.map_err(|message| BatchError::Invalid { field: Some(path.to_owned()), message })
}

fn serde_path_free(value: Value) -> Result<TrackingEvent, String> {
    // The schema accepted it, so a failure here is a rule the schema cannot express (none today)
    // or a drift between schema and type; either way the client gets a 422, not a panic.
    serde_json::from_value(value).map_err(|e| format!("not a valid event: {e}"))
}

/// Pixel query parameters and the event field each fills. Anything else (cache busters such as
/// `_=` or `cb=`, and the key `k`) is ignored.
const PIXEL_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("t", "type"),
    ("ts", "occurred_at"),
    ("vid", "visitor_id"),
    ("sid", "session_id"),
    ("lid", "lead_id"),
    ("cid", "campaign_id"),
    ("lp", "landing_page_id"),
    ("e", "email_id"),
    ("ad", "ad_id"),
];
const PIXEL_CONTEXT: &[(&str, &str)] = &[("u", "url"), ("r", "referrer"), ("ref", "ref")];
const UTM: &[&str] = &["source", "medium", "campaign", "term", "content"];
const CLICK_IDS: &[&str] = &["gclid", "fbclid", "msclkid", "ttclid", "li_fat_id"];

/// Builds the event of a `GET /t.gif?t=email_open&e=<email id>&vid=…` pixel: `t` defaults to
/// `page_view`, the source is `pixel`; `p.<name>=` sets `properties.<name>`. Errors name the
/// query parameter.
pub fn parse_pixel<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<TrackingEvent, BatchError> {
    let mut event = serde_json::Map::new();
    let mut context = serde_json::Map::new();
    let mut utm = serde_json::Map::new();
    let mut click_ids = serde_json::Map::new();
    let mut properties = serde_json::Map::new();
    // Which parameter set each event field, to name it in an error.
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in pairs {
        if name.len() > 140 {
            continue;
        }
        let target = if let Some((_, field)) = PIXEL_FIELDS.iter().find(|(p, _)| *p == name) {
            event.insert((*field).to_owned(), Value::String(value.to_owned()));
            (*field).to_owned()
        } else if let Some((_, field)) = PIXEL_CONTEXT.iter().find(|(p, _)| *p == name) {
            context.insert((*field).to_owned(), Value::String(value.to_owned()));
            format!("context.{field}")
        } else if let Some(part) = name.strip_prefix("utm_").filter(|p| UTM.contains(p)) {
            utm.insert(part.to_owned(), Value::String(value.to_owned()));
            format!("context.utm.{part}")
        } else if CLICK_IDS.contains(&name) {
            click_ids.insert(name.to_owned(), Value::String(value.to_owned()));
            format!("context.click_ids.{name}")
        } else if let Some(key) = name.strip_prefix("p.").filter(|k| !k.is_empty()) {
            properties.insert(key.to_owned(), pixel_property(value));
            format!("properties.{key}")
        } else {
            continue;
        };
        origin.insert(target, name.to_owned());
    }
    event.entry("type").or_insert_with(|| Value::String("page_view".into()));
    event.insert("source".into(), Value::String("pixel".into()));
    if !utm.is_empty() {
        context.insert("utm".into(), Value::Object(utm));
    }
    if !click_ids.is_empty() {
        context.insert("click_ids".into(), Value::Object(click_ids));
    }
    if !context.is_empty() {
        event.insert("context".into(), Value::Object(context));
    }
    if !properties.is_empty() {
        event.insert("properties".into(), Value::Object(properties));
    }
    let value = Value::Object(event);
    if value.to_string().len() > MAX_EVENT_BYTES {
        return Err(BatchError::TooLarge {
            field: None,
            message: format!("an event is at most {MAX_EVENT_BYTES} bytes"),
        });
    }
    validate_value(value, "").map_err(|e| match e {
        BatchError::Invalid { field, message } => {
            let field = field.map(|f| f.trim_start_matches('.').to_owned());
            // Name the query parameter the client sent, not the event field it became.
            let param = field.as_ref().and_then(|f| {
                origin.iter().find(|(target, _)| f == *target || f.starts_with(&format!("{target}."))).map(|(_, p)| p)
            });
            BatchError::Invalid { field: param.cloned().or(field.filter(|f| !f.is_empty())), message }
        }
        other => other,
    })
}

/// A pixel property's value: an integer when it reads as one (a feedback `score`), else text.
fn pixel_property(value: &str) -> Value {
    match value.parse::<i64>() {
        // "007" and "+7" stay text: they are codes, not numbers.
        Ok(n) if !(value.starts_with('+') || (value.starts_with('0') && value.len() > 1)) => Value::from(n),
        _ => Value::String(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventType;

    #[test]
    fn a_batch_parses_and_errors_name_the_event() {
        let ok = br#"{"tenant_id": "x", "events": [{"type": "page_view", "source": "web"}]}"#;
        assert_eq!(parse_batch(ok).map(|e| e.len()), Ok(1));
        let bad = br#"{"events": [{"type": "page_view", "source": "web"}, {"type": "purchase", "source": "server"}]}"#;
        let err = parse_batch(bad).expect_err("a purchase without properties");
        assert_eq!(err.field(), Some("events.1.properties"), "{err:?}");
        assert!(matches!(parse_batch(b"{nope"), Err(BatchError::Malformed { .. })));
        assert!(matches!(parse_batch(b"[1]"), Err(BatchError::Invalid { field: None, .. })));
        assert_eq!(parse_batch(br#"{"events": []}"#).expect_err("empty").field(), Some("events"));
        assert_eq!(parse_batch(br#"{"evnts": []}"#).expect_err("typo").field(), Some("evnts"));
    }

    #[test]
    fn limits_are_413() {
        let many = format!(r#"{{"events": [{}]}}"#, vec![r#"{"type":"click","source":"web"}"#; 501].join(","));
        assert!(matches!(parse_batch(many.as_bytes()), Err(BatchError::TooLarge { .. })));
        let big = format!(
            r#"{{"events": [{{"type":"click","source":"web"}}, {{"type":"click","source":"web","properties":{{"x":"{}"}}}}]}}"#,
            "a".repeat(MAX_EVENT_BYTES)
        );
        assert_eq!(parse_batch(big.as_bytes()).expect_err("big").field(), Some("events.1"));
        assert!(matches!(parse_batch(&vec![b' '; MAX_BATCH_BYTES + 1]), Err(BatchError::TooLarge { field: None, .. })));
    }

    #[test]
    fn a_pixel_builds_an_event_and_names_the_bad_parameter() {
        let e = parse_pixel([("t", "email_open"), ("e", "0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51"), ("cb", "123")])
            .expect("an email open");
        assert_eq!(e.event_type, EventType::EmailOpen);
        let e = parse_pixel([("utm_source", "news"), ("gclid", "g1"), ("p.score", "9"), ("t", "feedback")])
            .expect("feedback");
        assert_eq!(e.properties.and_then(|p| p.get("score").cloned()), Some(Value::from(9)));
        let err = parse_pixel([("t", "email_open")]).expect_err("no email id");
        assert_eq!(err.field(), Some("email_id"));
        let err = parse_pixel([("vid", "bad id!")]).expect_err("bad visitor");
        assert_eq!(err.field(), Some("vid"));
        let err = parse_pixel([("t", "nope")]).expect_err("bad type");
        assert_eq!(err.field(), Some("t"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    /// Arbitrary JSON, nested a few levels.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            prop_oneof![Just("page_view"), Just("click"), Just("form_submit"), Just("purchase"), Just("web")]
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("type".to_owned()),
                            Just("source".to_owned()),
                            Just("properties".to_owned()),
                            Just("context".to_owned()),
                            Just("id".to_owned()),
                            ".{0,12}"
                        ],
                        inner
                    ),
                    0..6
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<String, Value>>())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

        /// Random JSON in the events array, or as the whole body: an answer, never a panic;
        /// an accepted event parses again from its own JSON.
        #[test]
        fn random_json_never_panics(events in prop::collection::vec(any_json(), 0..8), body in any_json()) {
            let batch = json!({"events": events}).to_string();
            if let Ok(parsed) = parse_batch(batch.as_bytes()) {
                for e in parsed {
                    prop_assert!(parse_one(&crate::events::to_json(&e), "e").is_ok());
                }
            }
            let _ = parse_batch(body.to_string().as_bytes());
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_batch(&bytes);
        }

        #[test]
        fn random_pixel_queries_never_panic(pairs in prop::collection::vec((".{0,10}", ".{0,40}"), 0..12)) {
            let _ = parse_pixel(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
    }
}
