//! The fast path of event parsing: events read from the body's text straight into
//! `TrackingEvent` (in one pass when the body is no larger than one event may be, else event by
//! event once each is measured), with every rule of `event.schema.json` (and of the
//! `common.json` definitions it references) that the Rust types do not enforce checked by hand,
//! instead of building a `serde_json::Value` per event, running the schema validator over it and
//! deserializing it again.
//!
//! It only ever says yes or "not sure": `None` sends the input down the slow path (`Value`,
//! `jsonschema`, `from_value`), which produces the answer, error and field included. So a rule
//! this file checks too strictly costs speed, never behaviour; a rule it checks too loosely
//! would accept what the schema refuses, and the property test at the end of this file (the
//! schema as the oracle, on events near the edge of valid) exists to catch that. A test also
//! pins the schema documents these rules were written from: change the schema, change the rules.
//!
//! Reading a value never fails on its kind: a field holding the wrong kind is remembered as
//! bad and read through, because a later duplicate key replaces it, as it does in a `Value`.
//! Anything read through is read as a `Value`, so that it is held to the same JSON rules
//! (lone surrogates, the raw-value key) as on the slow path.

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{MAX_BATCH_EVENTS, MAX_EVENT_BYTES};
use crate::events::{ClickIds, EventContext, EventSource, EventType, Screen, TrackingEvent, Utm};
use crate::ids::{CampaignId, LandingPageId, LeadId};
use crate::money::Currency;

/// The key with which `serde_json` marks a raw value: as the first key of an object read into a
/// `Value`, it turns the object into the JSON its (string) value holds. Such input goes the slow
/// way.
const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

/// The events of a `{"events": [...]}` body (a `tenant_id` is skipped), each as its own text,
/// when the body is exactly that and holds 1 to `MAX_BATCH_EVENTS` of them.
pub(super) fn batch_events(body: &[u8]) -> Option<Vec<&RawValue>> {
    let events = read_batch(body, PhantomData::<Vec<&RawValue>>)?;
    (!events.is_empty() && events.len() <= MAX_BATCH_EVENTS).then_some(events)
}

/// The events of a body no larger than one event may be, read in one pass: no event in it can
/// be over the size limit, so there is no need to measure each before reading it. `None` unless
/// the body is a plain batch of 1 to `MAX_BATCH_EVENTS` events that all pass.
pub(super) fn small_batch(body: &[u8]) -> Option<Vec<TrackingEvent>> {
    if body.len() > MAX_EVENT_BYTES {
        return None;
    }
    let events = read_batch(body, Events)?;
    (!events.is_empty()).then_some(events)
}

/// One event's JSON text as a `TrackingEvent`, when the schema and the type both accept it.
pub(super) fn event(text: &str) -> Option<TrackingEvent> {
    let mut de = serde_json::Deserializer::from_str(text);
    let event = Lenient(EventReader).deserialize(&mut de).ok()??;
    de.end().ok()?;
    Some(event)
}

/// Reads `{"events": ..., "tenant_id": ...}` as the slow path does (`tenant_id` as a raw value,
/// the last `events` winning), `events` with `seed`; any other key, or no `events`, is `None`.
fn read_batch<'de, S: DeserializeSeed<'de> + Clone>(body: &'de [u8], seed: S) -> Option<S::Value> {
    // Checked once here rather than string by string while reading; the slow path refuses a
    // body that is not UTF-8 anyway.
    let body = std::str::from_utf8(body).ok()?;
    let mut de = serde_json::Deserializer::from_str(body);
    let events = de.deserialize_map(BatchVisitor(seed)).ok()??;
    de.end().ok()?;
    Some(events)
}

struct BatchVisitor<S>(S);

impl<'de, S: DeserializeSeed<'de> + Clone> Visitor<'de> for BatchVisitor<S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut events = None;
        while let Some(key) = map.next_key_seed(Key(&["events", "tenant_id"]))? {
            match key {
                Key::EVENTS => events = Some(map.next_value_seed(self.0.clone())?),
                Key::TENANT_ID => {
                    map.next_value::<&'de RawValue>()?;
                }
                _ => return Err(de::Error::custom("not a plain batch")),
            }
        }
        Ok(events)
    }
}

/// An array of at most `MAX_BATCH_EVENTS` events that all pass; reading stops at the first that
/// does not.
#[derive(Clone, Copy)]
struct Events;

impl<'de> DeserializeSeed<'de> for Events {
    type Value = Vec<TrackingEvent>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Events {
    type Value = Vec<TrackingEvent>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::with_capacity(32);
        while let Some(event) = seq.next_element_seed(Lenient(EventReader))? {
            match event {
                Some(event) if events.len() < MAX_BATCH_EVENTS => events.push(event),
                _ => return Err(de::Error::custom("not a plain event")),
            }
        }
        Ok(events)
    }
}

/// A key among `names`: its index, `OTHER` for any other key, `RAW` for [`RAW_VALUE_KEY`].
#[derive(Clone, Copy)]
struct Key(&'static [&'static str]);

impl Key {
    const EVENTS: usize = 0;
    const TENANT_ID: usize = 1;
    const OTHER: usize = usize::MAX;
    const RAW: usize = usize::MAX - 1;
}

impl<'de> DeserializeSeed<'de> for Key {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<usize, E> {
        // Most names differ in length or first letter: cheaper to tell apart by those.
        let same = |name: &&str| name.len() == key.len() && name.bytes().next() == key.bytes().next() && *name == key;
        Ok(match self.0.iter().position(same) {
            Some(i) => i,
            None if key == RAW_VALUE_KEY => Key::RAW,
            None => Key::OTHER,
        })
    }
}

/// Takes a JSON value of the kinds it knows; every other kind is refused (`None`).
trait Take<'de>: Sized {
    type Out;
    fn string(self, _: &str) -> Option<Self::Out> {
        None
    }
    fn unsigned(self, _: u64) -> Option<Self::Out> {
        None
    }
    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Option<Self::Out>, A::Error> {
        read_through_object(map).map(|()| None)
    }
}

/// Reads an object read through as the slow path would (into a `Value`); only one whose first
/// key is [`RAW_VALUE_KEY`] (it becomes something else there) makes the read fail.
fn read_through_object<'de, A: MapAccess<'de>>(map: A) -> Result<(), A::Error> {
    match Value::deserialize(de::value::MapAccessDeserializer::new(map))? {
        Value::Object(_) => Ok(()),
        _ => Err(de::Error::custom("a raw value")),
    }
}

/// Reads any JSON value; `Some` when `T` takes it.
struct Lenient<T>(T);

impl<'de, T: Take<'de>> DeserializeSeed<'de> for Lenient<T> {
    type Value = Option<T::Out>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Take<'de>> Visitor<'de> for Lenient<T> {
    type Value = Option<T::Out>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Ok(self.0.unsigned(n))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(self.0.string(s))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Value>()?.is_some() {}
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.object(map)
    }
}

/// A string that `check` turns into a value (`None`: refused).
struct Str<T>(fn(&str) -> Option<T>);

impl<T> Take<'_> for Str<T> {
    type Out = T;
    fn string(self, s: &str) -> Option<T> {
        (self.0)(s)
    }
}

/// A field as read: `None` when absent, `Some(None)` when present but refused. A later
/// duplicate key overwrites it.
type Slot<T> = Option<Option<T>>;

/// A slot as a field: `None` (refuse the event) when present but refused.
fn field<T>(slot: Slot<T>) -> Option<Option<T>> {
    match slot {
        None => Some(None),
        Some(value) => value.map(Some),
    }
}

/// Reads the value of the entry just keyed into a slot.
fn next_slot<'de, A: MapAccess<'de>, T: Take<'de>>(map: &mut A, take: T) -> Result<Slot<T::Out>, A::Error> {
    map.next_value_seed(Lenient(take)).map(Some)
}

/// Reads an object's entries, calling `entry(map, index)` for each key in `names`; any other
/// key is read through and makes the object refused. A first key of [`RAW_VALUE_KEY`] fails the
/// read (the slow path decides).
fn read_object<'de, A: MapAccess<'de>>(
    mut map: A,
    names: &'static [&'static str],
    mut entry: impl FnMut(&mut A, usize) -> Result<(), A::Error>,
) -> Result<bool, A::Error> {
    let mut known = true;
    let mut first = true;
    while let Some(key) = map.next_key_seed(Key(names))? {
        match key {
            Key::RAW if first => return Err(de::Error::custom("a raw value")),
            Key::RAW | Key::OTHER => {
                map.next_value::<Value>()?;
                known = false;
            }
            i => entry(&mut map, i)?,
        }
        first = false;
    }
    Ok(known)
}

/// Whether `s` is `min..=max` Unicode code points long (JSON Schema's `minLength`/`maxLength`).
fn chars_within(s: &str, min: usize, max: usize) -> bool {
    // A code point is 1 to 4 bytes: the byte length often settles it without counting.
    if s.len() < min || s.len().div_ceil(4) > max {
        return false;
    }
    if s.len() <= max && s.len().div_ceil(4) >= min {
        return true;
    }
    (min..=max).contains(&s.chars().count())
}

fn text<const MIN: usize, const MAX: usize>(s: &str) -> Option<String> {
    chars_within(s, MIN, MAX).then(|| s.to_owned())
}

/// `common.json#/$defs/uuid`: `format: uuid` accepts the hyphenated form only (8-4-4-4-12 hex
/// digits, either case), which `Uuid` parses as the slow path does.
fn uuid(s: &str) -> Option<Uuid> {
    let b = s.as_bytes();
    let shaped = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if !shaped {
        return None;
    }
    let de: de::value::StrDeserializer<'_, de::value::Error> = s.into_deserializer();
    Uuid::deserialize(de).ok()
}

/// `common.json#/$defs/date_time`: the schema's `format: date-time` and chrono (what serde
/// types it with) must both accept it; the value is chrono's, as on the slow path.
///
/// A time the schema's rule accepts is read from its digits as chrono reads it
/// ([`time_of_digits`]): chrono's general parser, through serde, was 4 % of the edge's CPU when
/// every event carries its time, as the browser script's do. A leap second, and anything the
/// digits do not make a time of, goes to chrono itself.
fn date_time(s: &str) -> Option<DateTime<Utc>> {
    if !is_date_time(s) {
        return None;
    }
    time_of_digits(s.as_bytes()).or_else(|| {
        let de: de::value::StrDeserializer<'_, de::value::Error> = s.into_deserializer();
        DateTime::<Utc>::deserialize(de).ok()
    })
}

/// The instant of a time [`is_date_time`] accepted, as chrono makes it: the fraction cut (not
/// rounded) to nanoseconds, the offset subtracted. `None` for a leap second (chrono's own
/// reading of `:60` decides) and for what the digits make no time of.
fn time_of_digits(b: &[u8]) -> Option<DateTime<Utc>> {
    let number = |at: usize, len: usize| b.get(at..at + len).and_then(digits);
    let second = u32::from(number(17, 2)?);
    if second == 60 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(i32::from(number(0, 4)?), number(5, 2)?.into(), number(8, 2)?.into())?;
    let mut at = 19;
    let mut nanos = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let fraction = b.get(at..)?.iter().take_while(|c| c.is_ascii_digit()).count();
        let mut scale = 100_000_000;
        for &digit in b.get(at..at + fraction.min(9))? {
            nanos += u32::from(digit - b'0') * scale;
            scale /= 10;
        }
        at += fraction;
    }
    let east = match b.get(at)? {
        b'Z' | b'z' => 0,
        sign => {
            let offset = i32::from(number(at + 1, 2)?) * 3600 + i32::from(number(at + 4, 2)?) * 60;
            if *sign == b'-' { -offset } else { offset }
        }
    };
    let local = date.and_hms_nano_opt(number(11, 2)?.into(), number(14, 2)?.into(), second, nanos)?;
    let utc = local.checked_sub_offset(FixedOffset::east_opt(east)?)?;
    Some(DateTime::from_naive_utc_and_offset(utc, Utc))
}

/// The validator's `date-time` format, rule for rule: `YYYY-MM-DD`, `T` or `t`, `HH:MM:SS`, an
/// optional fraction, then `Z`, `z` or `±HH:MM`; a real calendar date; a leap second (`:60`)
/// only at 23:59 UTC.
fn is_date_time(s: &str) -> bool {
    let Some(t) = s.bytes().position(|b| b == b'T' || b == b't') else {
        return false;
    };
    is_date(&s.as_bytes()[..t]) && is_time(&s.as_bytes()[t + 1..])
}

fn digits(b: &[u8]) -> Option<u16> {
    b.iter().try_fold(0u16, |n, c| c.is_ascii_digit().then(|| n * 10 + u16::from(c - b'0')))
}

fn is_date(b: &[u8]) -> bool {
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (digits(&b[..4]), digits(&b[5..7]), digits(&b[8..10])) else {
        return false;
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

fn is_time(b: &[u8]) -> bool {
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) = (digits(&b[..2]), digits(&b[3..5]), digits(&b[6..8])) else {
        return false;
    };
    if hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut i = 8;
    if b.get(i) == Some(&b'.') {
        let fraction = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if fraction == 0 {
            return false;
        }
        i += 1 + fraction;
    }
    let (sign, offset) = match b.get(i) {
        Some(b'Z' | b'z') => return i + 1 == b.len() && (second != 60 || (hour == 23 && minute == 59)),
        Some(b'+') => (-1, &b[i + 1..]),
        Some(b'-') => (1, &b[i + 1..]),
        _ => return false,
    };
    if offset.len() != 5 || offset[2] != b':' {
        return false;
    }
    let (Some(offset_hour), Some(offset_minute)) = (digits(&offset[..2]), digits(&offset[3..])) else {
        return false;
    };
    if offset_hour > 23 || offset_minute > 59 {
        return false;
    }
    if second != 60 {
        return true;
    }
    // A leap second is 23:59:60 in UTC.
    let utc =
        (i32::from(hour) * 60 + i32::from(minute) + sign * (i32::from(offset_hour) * 60 + i32::from(offset_minute)))
            .rem_euclid(24 * 60);
    utc == 23 * 60 + 59
}

/// `$defs/token`: `^[A-Za-z0-9._:-]{1,128}$`.
fn token(s: &str) -> Option<String> {
    let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
    ok.then(|| s.to_owned())
}

/// `context.locale`: at most 35 characters, `^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$`.
fn locale(s: &str) -> Option<String> {
    let mut parts = s.split('-');
    let language = parts.next().unwrap_or_default();
    let ok = s.len() <= 35
        && (2..=8).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    ok.then(|| s.to_owned())
}

/// `context.ref`: `^[A-Za-z0-9_-]{3,64}$`.
fn referral_code(s: &str) -> Option<String> {
    let ok = (3..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| s.to_owned())
}

fn event_type(s: &str) -> Option<EventType> {
    EventType::ALL.into_iter().find(|t| t.as_str() == s)
}

fn event_source(s: &str) -> Option<EventSource> {
    EventSource::ALL.into_iter().find(|t| t.as_str() == s)
}

/// `$defs/screen`'s sizes: integers 1 to 100000. The schema also takes `1.0`, but a `u32` does
/// not, so the slow path refuses it too.
struct Pixels;

impl Take<'_> for Pixels {
    type Out = u32;
    fn unsigned(self, n: u64) -> Option<u32> {
        u32::try_from(n).ok().filter(|n| (1..=100_000).contains(n))
    }
}

struct ScreenReader;

impl<'de> Take<'de> for ScreenReader {
    type Out = Screen;
    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Option<Screen>, A::Error> {
        let (mut width, mut height) = (None, None);
        let known = read_object(map, &["width", "height"], |map, i| {
            let slot = next_slot(map, Pixels)?;
            if i == 0 {
                width = slot
            } else {
                height = slot
            }
            Ok(())
        })?;
        let screen = || Some(Screen { width: field(width)??, height: field(height)?? });
        Ok(if known { screen() } else { None })
    }
}

/// An object of optional strings (`$defs/utm`, `$defs/click_ids`): `N` names, each checked by
/// `check`.
struct Strings<const N: usize> {
    names: &'static [&'static str; N],
    check: fn(&str) -> Option<String>,
}

impl<'de, const N: usize> Take<'de> for Strings<N> {
    type Out = [Option<String>; N];
    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Option<Self::Out>, A::Error> {
        let mut slots: [Slot<String>; N] = [const { None }; N];
        let known = read_object(map, self.names, |map, i| {
            slots[i] = next_slot(map, Str(self.check))?;
            Ok(())
        })?;
        if !known {
            return Ok(None);
        }
        let mut out: [Option<String>; N] = [const { None }; N];
        for (out, slot) in out.iter_mut().zip(slots) {
            match field(slot) {
                Some(value) => *out = value,
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}

const UTM: Strings<5> = Strings { names: &["source", "medium", "campaign", "term", "content"], check: text::<1, 256> };
const CLICK_IDS: Strings<5> =
    Strings { names: &["gclid", "fbclid", "msclkid", "ttclid", "li_fat_id"], check: text::<1, 512> };

struct ContextReader;

#[derive(Default)]
struct ContextSlots {
    url: Slot<String>,
    referrer: Slot<String>,
    title: Slot<String>,
    user_agent: Slot<String>,
    locale: Slot<String>,
    screen: Slot<Screen>,
    utm: Slot<[Option<String>; 5]>,
    click_ids: Slot<[Option<String>; 5]>,
    referral_code: Slot<String>,
}

impl ContextSlots {
    fn finish(self) -> Option<Box<EventContext>> {
        let utm = field(self.utm)?.map(|[source, medium, campaign, term, content]| Utm {
            source,
            medium,
            campaign,
            term,
            content,
        });
        let click_ids = field(self.click_ids)?.map(|[gclid, fbclid, msclkid, ttclid, li_fat_id]| ClickIds {
            gclid,
            fbclid,
            msclkid,
            ttclid,
            li_fat_id,
        });
        Some(Box::new(EventContext {
            url: field(self.url)?,
            referrer: field(self.referrer)?,
            title: field(self.title)?,
            user_agent: field(self.user_agent)?,
            locale: field(self.locale)?,
            screen: field(self.screen)?,
            utm,
            click_ids,
            referral_code: field(self.referral_code)?,
        }))
    }
}

impl<'de> Take<'de> for ContextReader {
    type Out = Box<EventContext>;
    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Option<Box<EventContext>>, A::Error> {
        const NAMES: &[&str] =
            &["url", "referrer", "title", "user_agent", "locale", "screen", "utm", "click_ids", "ref"];
        let mut s = ContextSlots::default();
        let known = read_object(map, NAMES, |map, i| {
            match i {
                0 => s.url = next_slot(map, Str(text::<0, 2048>))?,
                1 => s.referrer = next_slot(map, Str(text::<0, 2048>))?,
                2 => s.title = next_slot(map, Str(text::<0, 512>))?,
                3 => s.user_agent = next_slot(map, Str(text::<0, 512>))?,
                4 => s.locale = next_slot(map, Str(locale))?,
                5 => s.screen = next_slot(map, ScreenReader)?,
                6 => s.utm = next_slot(map, UTM)?,
                7 => s.click_ids = next_slot(map, CLICK_IDS)?,
                _ => s.referral_code = next_slot(map, Str(referral_code))?,
            }
            Ok(())
        })?;
        Ok(if known { s.finish() } else { None })
    }
}

/// `properties`: an object of at most 100 keys, each 1 to 128 characters long. Read entry by
/// entry into a map, the last of duplicate keys winning, as a `Value` object is.
struct PropertiesReader;

impl<'de> Take<'de> for PropertiesReader {
    type Out = Map<String, Value>;
    fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Self::Out>, A::Error> {
        let mut properties = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if properties.is_empty() && key == RAW_VALUE_KEY {
                return Err(de::Error::custom("a raw value"));
            }
            let value = map.next_value::<Value>()?;
            properties.insert(key, value);
        }
        let ok = properties.len() <= 100 && properties.keys().all(|k| chars_within(k, 1, 128));
        Ok(ok.then_some(properties))
    }
}

struct EventReader;

#[derive(Default)]
struct EventSlots {
    id: Slot<Uuid>,
    event_type: Slot<EventType>,
    occurred_at: Slot<DateTime<Utc>>,
    source: Slot<EventSource>,
    visitor_id: Slot<String>,
    session_id: Slot<String>,
    lead_id: Slot<LeadId>,
    campaign_id: Slot<CampaignId>,
    landing_page_id: Slot<LandingPageId>,
    email_id: Slot<Uuid>,
    ad_id: Slot<String>,
    context: Slot<Box<EventContext>>,
    properties: Slot<Map<String, Value>>,
}

impl EventSlots {
    fn finish(self) -> Option<TrackingEvent> {
        let event = TrackingEvent {
            id: field(self.id)?,
            event_type: field(self.event_type)??,
            occurred_at: field(self.occurred_at)?,
            source: field(self.source)??,
            visitor_id: field(self.visitor_id)?,
            session_id: field(self.session_id)?,
            lead_id: field(self.lead_id)?,
            campaign_id: field(self.campaign_id)?,
            landing_page_id: field(self.landing_page_id)?,
            email_id: field(self.email_id)?,
            ad_id: field(self.ad_id)?,
            context: field(self.context)?,
            properties: field(self.properties)?,
        };
        type_rules(&event).then_some(event)
    }
}

impl<'de> Take<'de> for EventReader {
    type Out = TrackingEvent;
    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Option<TrackingEvent>, A::Error> {
        const NAMES: &[&str] = &[
            "id",
            "type",
            "occurred_at",
            "source",
            "visitor_id",
            "session_id",
            "lead_id",
            "campaign_id",
            "landing_page_id",
            "email_id",
            "ad_id",
            "context",
            "properties",
        ];
        let mut s = EventSlots::default();
        let known = read_object(map, NAMES, |map, i| {
            match i {
                0 => s.id = next_slot(map, Str(uuid))?,
                1 => s.event_type = next_slot(map, Str(event_type))?,
                2 => s.occurred_at = next_slot(map, Str(date_time))?,
                3 => s.source = next_slot(map, Str(event_source))?,
                4 => s.visitor_id = next_slot(map, Str(token))?,
                5 => s.session_id = next_slot(map, Str(token))?,
                6 => s.lead_id = next_slot(map, Str(|s| uuid(s).map(LeadId::from_uuid)))?,
                7 => s.campaign_id = next_slot(map, Str(|s| uuid(s).map(CampaignId::from_uuid)))?,
                8 => s.landing_page_id = next_slot(map, Str(|s| uuid(s).map(LandingPageId::from_uuid)))?,
                9 => s.email_id = next_slot(map, Str(uuid))?,
                10 => s.ad_id = next_slot(map, Str(text::<1, 256>))?,
                11 => s.context = next_slot(map, ContextReader)?,
                _ => s.properties = next_slot(map, PropertiesReader)?,
            }
            Ok(())
        })?;
        Ok(if known { s.finish() } else { None })
    }
}

/// The schema's `allOf`: what each type requires beyond the common shape.
fn type_rules(event: &TrackingEvent) -> bool {
    let properties = event.properties.as_ref();
    let property = |name: &str| properties.and_then(|p| p.get(name));
    let string_within = |name: &str, min: usize, max: usize| match property(name) {
        None => None,
        Some(Value::String(s)) => Some(chars_within(s, min, max)),
        Some(_) => Some(false),
    };
    match event.event_type {
        EventType::Purchase | EventType::Refund => {
            money(property("amount"), property("currency")) && string_within("order_id", 1, 256) == Some(true)
        }
        EventType::FormSubmit => string_within("form_id", 1, 256) == Some(true),
        EventType::EmailOpen | EventType::EmailClick => event.email_id.is_some(),
        EventType::AdImpression | EventType::AdClick => event.ad_id.is_some(),
        EventType::AffiliateClick => event.context.as_ref().is_some_and(|c| c.referral_code.is_some()),
        EventType::Feedback => {
            let score = property("score");
            let text = string_within("text", 1, 5000);
            properties.is_some()
                && (score.is_some() || text.is_some())
                && score.is_none_or(is_score)
                && text != Some(false)
        }
        EventType::Click => {
            string_within("element", 0, 512) != Some(false) && string_within("href", 0, 2048) != Some(false)
        }
        EventType::PageView
        | EventType::LeadCreated
        | EventType::MeetingBooked
        | EventType::EmailSent
        | EventType::WhatsappSent => true,
    }
}

/// A feedback `score`: `type: integer` (a whole `f64` such as `7.0` counts), 0 to 10.
fn is_score(value: &Value) -> bool {
    let Value::Number(n) = value else {
        return false;
    };
    if let Some(n) = n.as_u64() {
        n <= 10
    } else if n.is_i64() {
        // Only negative numbers are read as i64.
        false
    } else {
        n.as_f64().is_some_and(|f| f.fract() == 0.0 && (0.0..=10.0).contains(&f))
    }
}

/// The decimal places `$defs/amount_precision` allows a `$defs/currency`: its minor unit's
/// (the schema's enum and the `Currency` table are held equal by a test).
fn decimal_places(currency: &str) -> Option<usize> {
    Currency::parse(currency).ok().map(|c| usize::from(c.exponent()))
}

/// A purchase's `amount` and `currency`: `$defs/amount` (at most 21 characters,
/// `^(0|[1-9][0-9]{0,15})(\.[0-9]{1,4})?$`), `$defs/currency`, `$defs/amount_precision`.
fn money(amount: Option<&Value>, currency: Option<&Value>) -> bool {
    let (Some(Value::String(amount)), Some(Value::String(currency))) = (amount, currency) else {
        return false;
    };
    let Some(places) = decimal_places(currency) else {
        return false;
    };
    let (whole, fraction) = match amount.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (amount.as_str(), None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let whole_ok = (1..=16).contains(&whole.len()) && all_digits(whole) && (whole == "0" || !whole.starts_with('0'));
    let fraction_ok = fraction.is_none_or(|f| (1..=4).contains(&f.len()) && f.len() <= places && all_digits(f));
    amount.len() <= 21 && whole_ok && fraction_ok
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::events::parse::validate_value;
    use crate::schema;

    /// The slow path's verdict on one event: the schema, then serde.
    fn slow(text: &str) -> Option<TrackingEvent> {
        serde_json::from_str::<Value>(text).ok().and_then(|v| validate_value(v, "e").ok())
    }

    /// Asserts the fast path agrees with the slow one on `text`, and that the slow one says
    /// `accepted`.
    #[track_caller]
    fn agrees(text: &str, accepted: bool) {
        let fast = event(text);
        let slow = slow(text);
        assert_eq!(fast, slow, "fast and slow paths differ on {text}");
        assert_eq!(slow.is_some(), accepted, "the schema's verdict on {text}");
    }

    /// A click event with `extra` spliced in (`"key": value, ...`).
    fn click(extra: &str) -> String {
        format!(r#"{{"type": "click", "source": "web", {extra}}}"#)
    }

    #[test]
    fn edge_cases_agree_with_the_schema() {
        // serde takes null for an Option, the schema wants a string.
        agrees(&click(r#""visitor_id": null"#), false);
        agrees(&click(r#""context": {"url": null}"#), false);
        agrees(&click(r#""properties": null"#), false);
        // Screen sizes: the schema's integers include 1.0, a u32 does not.
        agrees(&click(r#""context": {"screen": {"width": 1.0, "height": 2}}"#), false);
        agrees(&click(r#""context": {"screen": {"width": 100000, "height": 1}}"#), true);
        agrees(&click(r#""context": {"screen": {"width": 100001, "height": 1}}"#), false);
        agrees(&click(r#""context": {"screen": {"width": -0, "height": 1}}"#), false);
        agrees(&click(r#""context": {"screen": {"width": 5}}"#), false);
        // Duplicate keys: the last wins, in a Value as here, even over a bad first one.
        agrees(&click(r#""visitor_id": 1, "visitor_id": "v1""#), true);
        agrees(&click(r#""visitor_id": "v1", "visitor_id": 1"#), false);
        agrees(&click(r#""context": {"x": 1}, "context": {}"#), true);
        agrees(&click(r#""context": {"url": 1, "url": "u"}"#), true);
        agrees(&click(r#""properties": {"a": 1, "a": 2}"#), true);
        agrees(r#"{"type": "purchase", "source": "web", "type": "click"}"#, true);
        // A lone surrogate is refused even where the value is read through.
        agrees(&click(r#""context": {"x": "\ud800"}, "context": {}"#), false);
        // Dates: the schema's date-time and chrono must both accept.
        for (date, ok) in [
            ("2026-11-25T14:30:00Z", true),
            ("2026-11-25t14:30:00z", true),
            ("2026-11-25T14:30:00.123456789123+05:30", true),
            ("2026-11-25 14:30:00Z", false),
            ("2026-11-25T14:30:00", false),
            ("2026-11-25T14:30:00+0530", false),
            ("2026-02-29T00:00:00Z", false),
            ("2024-02-29T00:00:00Z", true),
            ("2026-12-31T23:59:60Z", true),
            ("2026-12-31T22:59:60-01:00", true),
            ("2026-12-31T22:59:60Z", false),
            ("2026-11-25T14:30:00.Z", false),
            ("+2026-11-25T14:30:00Z", false),
            ("2026-11-25T24:00:00Z", false),
        ] {
            agrees(&click(&format!(r#""occurred_at": "{date}""#)), ok);
        }
        // UUIDs: the schema takes the hyphenated form only; the uuid crate takes more.
        for (id, ok) in [
            ("0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51", true),
            ("0193A5C2-7E4B-7C1D-9F3A-2B6C8D0E4F51", true),
            ("{0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51}", false),
            ("0193a5c27e4b7c1d9f3a2b6c8d0e4f51", false),
            ("urn:uuid:0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51", false),
            ("0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f5g", false),
        ] {
            agrees(&click(&format!(r#""lead_id": "{id}""#)), ok);
        }
        // Lengths count code points, not bytes.
        agrees(&click(&format!(r#""ad_id": "{}""#, "é".repeat(256))), true);
        agrees(&click(&format!(r#""ad_id": "{}""#, "😀".repeat(257))), false);
        agrees(&click(r#""ad_id": """#), false);
        agrees(&click(&format!(r#""properties": {{"{}": 1}}"#, "é".repeat(128))), true);
        agrees(&click(&format!(r#""properties": {{"{}": 1}}"#, "é".repeat(129))), false);
        agrees(&click(r#""properties": {"": 1}"#), false);
        // `$` does not match before a final newline.
        agrees(&click(r#""visitor_id": "v1\n""#), false);
        agrees(&click(r#""context": {"locale": "en-US\n"}"#), false);
        agrees(&click(r#""context": {"locale": "abcdefgh-12345678-12345678-12345678"}"#), true);
        agrees(&click(r#""context": {"locale": "abcdefgh-12345678-12345678-12345678-1"}"#), false);
        // 100 properties, not 101.
        let props = |n: usize| (0..n).map(|i| format!(r#""p{i}": {i}"#)).collect::<Vec<_>>().join(",");
        agrees(&click(&format!(r#""properties": {{{}}}"#, props(100))), true);
        agrees(&click(&format!(r#""properties": {{{}}}"#, props(101))), false);
        // Money.
        for (amount, currency, ok) in [
            ("0", "USD", true),
            ("0.5", "USD", true),
            ("01", "USD", false),
            ("1.234", "USD", false),
            ("1.234", "KWD", true),
            ("1.2345", "KWD", false),
            ("1.5", "JPY", false),
            ("1234567890123456", "JPY", true),
            ("12345678901234567", "JPY", false),
            ("1.", "USD", false),
            ("1", "usd", false),
        ] {
            let text = format!(
                r#"{{"type": "purchase", "source": "server", "properties": {{"amount": "{amount}", "currency": "{currency}", "order_id": "o1"}}}}"#
            );
            agrees(&text, ok);
        }
        // Feedback scores are JSON Schema integers: 7.0 and -0 count.
        for (score, ok) in [
            ("7", true),
            ("7.0", true),
            ("1e1", true),
            ("-0", true),
            ("11", false),
            ("-1", false),
            ("null", false),
            ("7.5", false),
        ] {
            agrees(&format!(r#"{{"type": "feedback", "source": "web", "properties": {{"score": {score}}}}}"#), ok);
        }
        agrees(r#"{"type": "feedback", "source": "web", "properties": {"text": ""}}"#, false);
        agrees(r#"{"type": "feedback", "source": "web", "properties": {}}"#, false);
        agrees(r#"{"type": "email_open", "source": "pixel"}"#, false);
        agrees(r#"{"type": "affiliate_click", "source": "web", "context": {"ref": "ab"}}"#, false);
        agrees(r#"{"type": "affiliate_click", "source": "web", "context": {"ref": "abc"}}"#, true);
        agrees(&click(&format!(r#""properties": {{"element": "{}"}}"#, "x".repeat(513))), false);
        agrees(r#"[]"#, false);
        agrees(r#"{"type": "click"}"#, false);
    }

    #[test]
    fn the_raw_value_key_goes_the_slow_way() {
        // serde_json turns an object whose first key is its raw-value marker into the JSON its
        // string holds, on the slow path; the fast path leaves such input to it.
        let text = click(r#""visitor_id": {"$serde_json::private::RawValue": "\"v1\""}"#);
        assert_eq!(event(&text), None);
        assert!(slow(&text).is_some());
        assert_eq!(crate::events::parse_one(&text, "e").ok(), slow(&text));
        let text = click(r#""properties": {"$serde_json::private::RawValue": "{\"a\": 1}"}"#);
        assert_eq!(event(&text), None);
        assert_eq!(crate::events::parse_one(&text, "e").ok(), slow(&text));
    }

    #[test]
    fn small_and_large_batches_take_their_paths_to_the_same_answer() {
        use crate::events::parse::{MAX_EVENT_BYTES, parse_batch, parse_batch_slowly, parse_one_slowly};
        let one = r#"{"type": "page_view", "source": "web", "context": {"url": "https://stride.example/"}}"#;
        let body = |n: usize| format!(r#"{{"tenant_id": "t", "events": [{}]}}"#, vec![one; n].join(", "));
        let small = body(3);
        assert_eq!(small_batch(small.as_bytes()).map(|e| e.len()), Some(3));
        let large = body(MAX_EVENT_BYTES / one.len() + 1);
        assert!(large.len() > MAX_EVENT_BYTES);
        assert_eq!(small_batch(large.as_bytes()), None, "a body over one event's limit is measured event by event");
        assert_eq!(batch_events(large.as_bytes()).map(|e| e.len()), Some(MAX_EVENT_BYTES / one.len() + 1));
        for body in [small, large] {
            let slow = parse_batch_slowly(body.as_bytes(), parse_one_slowly);
            assert!(slow.is_ok());
            assert_eq!(parse_batch(body.as_bytes()), slow);
        }
        // Not plain batches: the slow path's answer.
        for body in [
            r#"{"events": [], "events": [{"type": "click", "source": "web"}]}"#,
            r#"{"events": 1, "events": [{"type": "click", "source": "web"}]}"#,
            r#"{"events": [{"type": "click", "source": "web"}], "events": []}"#,
            r#"{"events": [{"type": "click", "source": "web", "ad_id": null}]}"#,
            r#"{"tenant_id": "\ud800", "events": [{"type": "click", "source": "web"}]}"#,
            r#"{"events": [{"type": "click", "source": "web"}], "x": 1}"#,
        ] {
            assert_eq!(parse_batch(body.as_bytes()), parse_batch_slowly(body.as_bytes(), parse_one_slowly), "{body}");
        }
        assert!(parse_batch(br#"{"events": 1, "events": [{"type": "click", "source": "web"}]}"#).is_ok());
    }

    /// The tables the hand-written rules use are the schema's.
    #[test]
    fn the_rules_tables_are_the_schemas() {
        let common = schema::document("api/common.json").expect("common.json");
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().expect("an array").iter().map(|s| s.as_str().expect("a string").to_owned()).collect()
        };
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let with_places = |places: u8| {
            sorted(Currency::all().filter(|c| c.exponent() == places).map(|c| c.code().to_owned()).collect())
        };
        let enumerated = sorted(strings(&common["$defs"]["currency"]["enum"]));
        assert_eq!(sorted(Currency::all().map(|c| c.code().to_owned()).collect()), enumerated);
        let precision = &common["$defs"]["amount_precision"]["allOf"];
        let places = |i: usize| sorted(strings(&precision[i]["if"]["properties"]["currency"]["enum"]));
        assert_eq!(places(0), with_places(0));
        assert_eq!(places(1), with_places(3));
        // Every other currency has two places (the schema's fallback).
        assert_eq!(
            with_places(2).len() + places(0).len() + places(1).len(),
            enumerated.len(),
            "only 0, 2 and 3 decimal places exist"
        );
        let events = schema::document("events/event.schema.json").expect("event schema");
        let types: Vec<&str> = EventType::ALL.iter().map(EventType::as_str).collect();
        assert_eq!(strings(&events["$defs"]["event_type"]["enum"]), types);
        let sources: Vec<&str> = EventSource::ALL.iter().map(EventSource::as_str).collect();
        assert_eq!(strings(&events["$defs"]["source"]["enum"]), sources);
    }

    /// The schemas the hand-written rules were written against, descriptions left out: a change
    /// to them must be carried into this file (then the fingerprint updated).
    #[test]
    fn the_schema_is_the_one_the_rules_were_written_for() {
        fn strip(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    m.remove("description");
                    m.values_mut().for_each(strip);
                }
                Value::Array(a) => a.iter_mut().for_each(strip),
                _ => {}
            }
        }
        let mut events = schema::document("events/event.schema.json").expect("event schema").clone();
        let common = schema::document("api/common.json").expect("common.json");
        let mut used = json!({});
        for def in ["uuid", "date_time", "currency", "amount", "amount_precision"] {
            used[def] = common["$defs"][def].clone();
        }
        strip(&mut events);
        strip(&mut used);
        // FNV-1a: stable across Rust releases, unlike the standard hasher.
        let text = format!("{events}{used}");
        let hash =
            text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        assert_eq!(
            format!("{hash:016x}"),
            "afc7b4209b70192f",
            "event.schema.json or the common.json definitions it uses changed: update fast.rs"
        );
    }
}

#[cfg(test)]
mod oracle {
    //! The schema as the oracle: events near the edge of valid, the fast path's verdict against
    //! the slow path's.

    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::events::parse::{parse_batch, parse_batch_slowly, parse_one_slowly, validate_value};

    fn currency_codes() -> Vec<String> {
        Currency::all().map(|c| c.code().to_owned()).collect()
    }

    /// What a field holds, to generate values at the edge of its rules.
    #[derive(Debug, Clone, Copy)]
    enum Near {
        Uuid,
        Date,
        Type,
        Source,
        Token,
        /// A string of this many characters at least and at most.
        Text(usize, usize),
        Locale,
        Ref,
        Pixels,
        Amount,
        Currency,
        Score,
        /// An object or a field the schema does not have.
        Other,
    }

    /// Every field of the schema, by JSON pointer, and a few it does not have.
    const FIELDS: &[(&str, Near)] = &[
        ("/id", Near::Uuid),
        ("/type", Near::Type),
        ("/occurred_at", Near::Date),
        ("/source", Near::Source),
        ("/visitor_id", Near::Token),
        ("/session_id", Near::Token),
        ("/lead_id", Near::Uuid),
        ("/campaign_id", Near::Uuid),
        ("/landing_page_id", Near::Uuid),
        ("/email_id", Near::Uuid),
        ("/ad_id", Near::Text(1, 256)),
        ("/context", Near::Other),
        ("/context/url", Near::Text(0, 2048)),
        ("/context/referrer", Near::Text(0, 2048)),
        ("/context/title", Near::Text(0, 512)),
        ("/context/user_agent", Near::Text(0, 512)),
        ("/context/locale", Near::Locale),
        ("/context/screen", Near::Other),
        ("/context/screen/width", Near::Pixels),
        ("/context/screen/height", Near::Pixels),
        ("/context/utm", Near::Other),
        ("/context/utm/source", Near::Text(1, 256)),
        ("/context/utm/medium", Near::Text(1, 256)),
        ("/context/utm/campaign", Near::Text(1, 256)),
        ("/context/utm/term", Near::Text(1, 256)),
        ("/context/utm/content", Near::Text(1, 256)),
        ("/context/click_ids", Near::Other),
        ("/context/click_ids/gclid", Near::Text(1, 512)),
        ("/context/click_ids/fbclid", Near::Text(1, 512)),
        ("/context/click_ids/msclkid", Near::Text(1, 512)),
        ("/context/click_ids/ttclid", Near::Text(1, 512)),
        ("/context/click_ids/li_fat_id", Near::Text(1, 512)),
        ("/context/ref", Near::Ref),
        ("/properties", Near::Other),
        ("/properties/amount", Near::Amount),
        ("/properties/currency", Near::Currency),
        ("/properties/order_id", Near::Text(1, 256)),
        ("/properties/form_id", Near::Text(1, 256)),
        ("/properties/score", Near::Score),
        ("/properties/text", Near::Text(1, 5000)),
        ("/properties/element", Near::Text(0, 512)),
        ("/properties/href", Near::Text(0, 2048)),
        ("/extra", Near::Other),
        ("/context/extra", Near::Other),
        ("/context/screen/depth", Near::Other),
        ("/context/utm/extra", Near::Other),
    ];

    /// `n` copies of `c`, or of `c` with one character from `odd` put in at `at` (mod `n`).
    fn repeated(c: char, n: usize, odd: Option<(char, usize)>) -> String {
        let mut s: Vec<char> = std::iter::repeat_n(c, n).collect();
        if let Some((odd, at)) = odd.filter(|_| n > 0) {
            s[at % n] = odd;
        }
        s.into_iter().collect()
    }

    /// A value for a field of this kind: mostly at the edge of its rules, sometimes anything.
    fn near(kind: Near) -> BoxedStrategy<Value> {
        let strings = |v: &[&'static str]| prop::sample::select(v.to_vec()).prop_map(Value::from).boxed();
        let specific = match kind {
            Near::Uuid => prop_oneof![
                strings(&[
                    "0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51",
                    "0193A5C2-7E4B-7C1D-9F3A-2B6C8D0E4F51",
                    "00000000-0000-0000-0000-000000000000",
                    "{0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51}",
                    "0193a5c27e4b7c1d9f3a2b6c8d0e4f51",
                    "urn:uuid:0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51",
                    "0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f5",
                    "0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f511",
                ]),
                "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}".prop_map(Value::from),
                "[0-9a-gA-G-]{36}".prop_map(Value::from),
            ]
            .boxed(),
            Near::Date => prop_oneof![
                strings(&[
                    "2026-11-25T14:30:00Z",
                    "2026-11-25t14:30:00z",
                    "2026-11-25T14:30:00+0530",
                    "2026-11-25T14:30:00",
                    "2026-11-25 14:30:00Z",
                    "2026-11-25",
                    "2026-12-31T23:59:60Z",
                    "2027-01-01T00:59:60+01:00",
                    "2026-12-31T22:59:60-01:00",
                    "0000-01-01T00:00:00Z",
                    "9999-12-31T23:59:59.999999999999Z",
                    "2026-11-25T14:30:00.Z",
                    "2026-11-25T14:30Z",
                    "+2026-11-25T14:30:00Z",
                    "2026-11-25T14:30:00Z\n",
                    "2026-11-25T14:30:00ZZ",
                    "2026-11-25T14:30:00.5+05:30x",
                ]),
                // Every field near its range, fractions, both offsets.
                (
                    prop::sample::select(vec![0u32, 1, 1900, 2000, 2024, 2026, 9999]),
                    0..14u32,
                    0..33u32,
                    prop::sample::select(vec![0u32, 1, 22, 23, 24]),
                    prop::sample::select(vec![0u32, 58, 59, 60]),
                    prop::sample::select(vec![0u32, 59, 60, 61]),
                    prop::sample::select(vec!["", ".", ".5", ".123456789", ".1234567890123"]),
                    prop::sample::select(vec![
                        "Z", "z", "+00:00", "-00:00", "+01:00", "-01:00", "+23:59", "+24:00", "-12:60", "+1:00", ""
                    ]),
                    prop::sample::select(vec!['T', 't', ' ']),
                )
                    .prop_map(|(y, mo, d, h, mi, s, frac, off, t)| {
                        Value::from(format!("{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{frac}{off}"))
                    }),
            ]
            .boxed(),
            Near::Type => prop_oneof![
                prop::sample::select(EventType::ALL.to_vec()).prop_map(|t| Value::from(t.as_str())),
                strings(&["Click", "page-view", ""]),
            ]
            .boxed(),
            Near::Source => prop_oneof![
                prop::sample::select(EventSource::ALL.to_vec()).prop_map(|t| Value::from(t.as_str())),
                strings(&["Web", "browser", ""]),
            ]
            .boxed(),
            Near::Token => (
                prop::sample::select(vec!['a', 'Z', '7', '.', '_', ':', '-']),
                prop::sample::select(vec![0usize, 1, 2, 127, 128, 129]),
                prop::option::weighted(0.3, (prop::sample::select(vec!['/', ' ', 'é', '\n', '+']), any::<usize>())),
            )
                .prop_map(|(c, n, odd)| Value::from(repeated(c, n, odd)))
                .boxed(),
            Near::Text(min, max) => (
                prop::sample::select(vec!['a', 'é', '😀', ' ']),
                prop::sample::select(vec![min.saturating_sub(1), min, min + 1, max - 1, max, max + 1]),
                prop::option::weighted(0.3, (prop::sample::select(vec!['😀', 'é', '\n']), any::<usize>())),
            )
                .prop_map(|(c, n, odd)| Value::from(repeated(c, n, odd)))
                .boxed(),
            Near::Locale => prop_oneof![
                "[A-Za-z]{1,9}(-[A-Za-z0-9]{0,9}){0,4}".prop_map(Value::from),
                strings(&[
                    "en-US",
                    "en_US",
                    "en-US\n",
                    "é-US",
                    "abcdefgh-12345678-12345678-12345678",
                    "abcdefgh-12345678-12345678-12345678-1"
                ]),
            ]
            .boxed(),
            Near::Ref => (
                prop::sample::select(vec!['a', 'Z', '7', '_', '-']),
                prop::sample::select(vec![2usize, 3, 4, 63, 64, 65]),
                prop::option::weighted(0.3, (prop::sample::select(vec!['.', ' ', 'é']), any::<usize>())),
            )
                .prop_map(|(c, n, odd)| Value::from(repeated(c, n, odd)))
                .boxed(),
            Near::Pixels => prop::sample::select(vec![
                json!(0),
                json!(1),
                json!(2),
                json!(99_999),
                json!(100_000),
                json!(100_001),
                json!(-1),
                json!(1.0),
                json!(5e0),
                json!(4_294_967_297_u64),
            ])
            .boxed(),
            Near::Amount => prop_oneof![
                "(0|00|01|[1-9][0-9]{0,16})(\\.[0-9]{0,5})?".prop_map(Value::from),
                strings(&["-1", "1e3", " 1", "1.5\n", ".5", ""]),
                Just(json!(10)),
            ]
            .boxed(),
            Near::Currency => prop_oneof![
                prop::sample::select(currency_codes()).prop_map(Value::from),
                strings(&["usd", "XXX", "US", "USDD", "USD\n"]),
            ]
            .boxed(),
            Near::Score => prop::sample::select(vec![
                json!(0),
                json!(10),
                json!(11),
                json!(-1),
                json!(7.0),
                json!(7.5),
                json!(-0.0),
                json!(10.0),
                json!(10.5),
                json!(1e1),
                json!(u64::MAX),
                json!(i64::MIN),
                json!("7"),
                json!(null),
            ])
            .boxed(),
            Near::Other => edge_value().boxed(),
        };
        prop_oneof![4 => specific, 1 => edge_value()].boxed()
    }

    /// Strings at and around every limit of the schema, in one-, two- and four-byte characters.
    fn edge_string() -> impl Strategy<Value = String> {
        let lengths = [
            0usize, 1, 2, 3, 8, 9, 34, 35, 36, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513, 2048, 2049, 5000,
            5001,
        ];
        (
            prop::sample::select(&['a', 'Z', '7', 'é', '😀', '-', '.', '_', ':', ' '][..]),
            prop::sample::select(lengths.to_vec()),
        )
            .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect())
    }

    fn special_string() -> impl Strategy<Value = String> {
        prop::sample::select(
            &[
                "0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51",
                "0193A5C2-7E4B-7C1D-9F3A-2B6C8D0E4F51",
                "{0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51}",
                "0193a5c27e4b7c1d9f3a2b6c8d0e4f51",
                "urn:uuid:0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f51",
                "0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f5",
                "0193a5c2-7e4b-7c1d-9f3a-2b6c8d0e4f5z",
                "0193a5c2_7e4b-7c1d-9f3a-2b6c8d0e4f51",
                "2026-11-25T14:30:00Z",
                "2026-11-25T14:30:00.250Z",
                "2026-11-25t14:30:00z",
                "2026-11-25T14:30:00+05:30",
                "2026-11-25T14:30:00-23:59",
                "2026-11-25T14:30:00+24:00",
                "2026-11-25T14:30:00+0530",
                "2026-11-25T14:30:00",
                "2026-11-25 14:30:00Z",
                "2026-11-25",
                "2026-02-29T10:00:00Z",
                "2000-02-29T10:00:00Z",
                "1900-02-29T10:00:00Z",
                "2026-04-31T10:00:00Z",
                "2026-12-31T23:59:60Z",
                "2026-12-31T23:58:60Z",
                "2027-01-01T00:59:60+01:00",
                "0000-01-01T00:00:00Z",
                "9999-12-31T23:59:59.999999999999Z",
                "2026-11-25T14:30:00.Z",
                "2026-11-25T14:30Z",
                "2026-13-01T00:00:00Z",
                "+2026-11-25T14:30:00Z",
                "2026-11-25T14:30:00Z\n",
                "page_view",
                "click",
                "purchase",
                "refund",
                "feedback",
                "Click",
                "web",
                "server",
                "pixel",
                "en-US",
                "pt-BR",
                "e",
                "en-",
                "en--US",
                "zh-Hant-TW",
                "en_US",
                "en-US\n",
                "abc",
                "ab",
                "a-b_c",
                "a b",
                "v.8f3a2c",
                "v:1",
                "v/1",
                "0",
                "00",
                "01",
                "1.",
                ".5",
                "1.5",
                "1.50",
                "1.505",
                "1.5055",
                "1.50555",
                "-1",
                "1e3",
                " 1",
                "1234567890123456",
                "12345678901234567",
                "1234567890123456.1234",
                "USD",
                "JPY",
                "KWD",
                "BHD",
                "VND",
                "EUR",
                "usd",
                "XXX",
                "US",
                "USDD",
            ][..],
        )
        .prop_map(str::to_owned)
    }

    /// Values of every JSON kind, valid for some field and not for others.
    fn edge_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => special_string().prop_map(Value::from),
            2 => edge_string().prop_map(Value::from),
            2 => prop::sample::select(vec![
                json!(null), json!(true), json!(0), json!(1), json!(-1), json!(1.0), json!(7.0), json!(-0.0),
                json!(10), json!(11), json!(10.5), json!(100000), json!(100001), json!(4_294_967_296_u64),
                json!(i64::MIN), json!(u64::MAX), json!(1e300), json!([]), json!(["a"]), json!({}), json!({"x": 1}),
                json!({"width": 3, "height": 4}), json!({"ref": "abc"}), json!({"source": "x"}),
            ]),
        ]
    }

    /// A valid event of any type, with a few optional fields.
    fn valid_event() -> impl Strategy<Value = Value> {
        (
            prop::sample::select(&EventType::ALL[..]),
            prop::sample::select(&EventSource::ALL[..]),
            any::<[bool; 6]>(),
            ("(0|[1-9][0-9]{0,15})(\\.[0-9]{1,3})?", prop::sample::select(currency_codes())),
            0..11u32,
            prop::collection::btree_map("[a-z_]{1,6}", any::<u16>(), 0..4),
        )
            .prop_map(|(t, source, flags, (amount, currency), score, extra)| {
                let mut e = json!({"type": t.as_str(), "source": source.as_str()});
                let mut properties: Map<String, Value> = extra.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
                if flags[0] {
                    e["id"] = json!("0193a5c4-1b2c-7d3e-8f4a-5b6c7d8e9f01");
                }
                if flags[1] {
                    e["occurred_at"] = json!("2026-11-25T14:30:00.250Z");
                }
                if flags[2] {
                    e["visitor_id"] = json!("v.8f3a2c");
                    e["session_id"] = json!("s.19c7");
                    e["lead_id"] = json!("0193a5c4-1b2c-7d3e-8f4a-5b6c7d8e9f02");
                }
                let mut context = json!({});
                if flags[3] {
                    context = json!({
                        "url": "https://stride.example/trail?utm_source=newsletter",
                        "referrer": "https://www.google.com/",
                        "title": "Trail shoes — Stride",
                        "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
                        "locale": "pt-BR",
                        "screen": {"width": 1920, "height": 1080},
                        "utm": {"source": "newsletter", "medium": "email"},
                        "click_ids": {"gclid": "EAIaIQobChMI"},
                    });
                }
                match t {
                    EventType::Purchase | EventType::Refund => {
                        properties.insert("amount".into(), json!(amount));
                        properties.insert("currency".into(), json!(currency));
                        properties.insert("order_id".into(), json!("o-1001"));
                    }
                    EventType::FormSubmit => {
                        properties.insert("form_id".into(), json!("newsletter-footer"));
                    }
                    EventType::EmailOpen | EventType::EmailClick => {
                        e["email_id"] = json!("0193a5c4-1b2c-7d3e-8f4a-5b6c7d8e9f03");
                    }
                    EventType::AdImpression | EventType::AdClick => e["ad_id"] = json!("ad-123"),
                    EventType::AffiliateClick => context["ref"] = json!("partner_42"),
                    EventType::Feedback => {
                        if flags[4] {
                            properties.insert("score".into(), json!(score));
                        } else {
                            properties.insert("text".into(), json!("Great shoes"));
                        }
                    }
                    EventType::Click => {
                        properties.insert("element".into(), json!("#hero-cta"));
                        properties.insert("href".into(), json!("/signup"));
                    }
                    _ => {}
                }
                if context.as_object().is_some_and(|c| !c.is_empty()) {
                    e["context"] = context;
                }
                if !properties.is_empty() || flags[5] {
                    e["properties"] = Value::Object(properties);
                }
                e
            })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Set(&'static str, Value),
        Remove(&'static str),
        /// Grow (or shrink) `properties` to this many keys.
        Properties(usize),
        /// A duplicate of a top-level key, before (so overwritten) or after the real one.
        Duplicate(&'static str, Value, bool),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let field = || prop::sample::select(FIELDS.to_vec());
        prop_oneof![
            5 => field().prop_flat_map(|(f, kind)| near(kind).prop_map(move |v| Mutation::Set(f, v))),
            2 => field().prop_map(|(f, _)| Mutation::Remove(f)),
            1 => (98..103usize).prop_map(Mutation::Properties),
            2 => (field(), any::<bool>()).prop_flat_map(|((f, kind), before)| {
                near(kind).prop_map(move |v| Mutation::Duplicate(f, v, before))
            }),
        ]
    }

    /// Sets the value at a JSON pointer, creating objects on the way; nothing where a parent is
    /// not an object.
    fn set(event: &mut Value, pointer: &str, value: Value) {
        let mut at = event;
        let mut parts = pointer.trim_start_matches('/').split('/').peekable();
        while let Some(part) = parts.next() {
            let Some(object) = at.as_object_mut() else { return };
            if parts.peek().is_none() {
                object.insert(part.to_owned(), value);
                return;
            }
            at = object.entry(part).or_insert_with(|| json!({}));
        }
    }

    fn remove(event: &mut Value, pointer: &str) {
        let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
        if let Some(Value::Object(object)) = event.pointer_mut(parent) {
            object.remove(last);
        }
    }

    /// The event's text after the mutations.
    fn mutate(mut event: Value, mutations: &[Mutation]) -> String {
        let mut duplicates = Vec::new();
        for m in mutations {
            match m {
                Mutation::Set(pointer, value) => set(&mut event, pointer, value.clone()),
                Mutation::Remove(pointer) => remove(&mut event, pointer),
                Mutation::Properties(n) => {
                    if let Some(Value::Object(p)) = event.get_mut("properties") {
                        let mut i = 0;
                        while p.len() < *n {
                            p.insert(format!("k{i}"), json!(i));
                            i += 1;
                        }
                        while p.len() > *n {
                            let Some(last) = p.keys().next_back().cloned() else { break };
                            p.remove(&last);
                        }
                    }
                }
                Mutation::Duplicate(pointer, value, before) => {
                    let key = pointer.trim_start_matches('/').split('/').next().unwrap_or("extra");
                    duplicates.push((key.to_owned(), value.clone(), *before));
                }
            }
        }
        let mut text = event.to_string();
        for (key, value, before) in duplicates {
            let entry = format!("{}: {value}", Value::from(key));
            if !text.starts_with('{') {
                break;
            }
            text = if before {
                let rest = &text[1..];
                if rest == "}" { format!("{{{entry}}}") } else { format!("{{{entry},{rest}") }
            } else {
                let head = &text[..text.len() - 1];
                if head == "{" { format!("{{{entry}}}") } else { format!("{head},{entry}}}") }
            };
        }
        text
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4096, .. ProptestConfig::default() })]

        /// The fast path accepts exactly what the schema and serde accept, as the same event.
        #[test]
        fn the_fast_path_agrees_with_the_schema(event in valid_event(), mutations in prop::collection::vec(mutation(), 0..4)) {
            let text = mutate(event, &mutations);
            let fast = super::event(&text);
            let slow = serde_json::from_str::<Value>(&text).ok().and_then(|v| validate_value(v, "e").ok());
            prop_assert_eq!(fast, slow, "{}", text);
        }

        /// A batch of such events: the same events, or the same error, as the slow path alone.
        #[test]
        fn a_batch_gets_the_slow_paths_answer(
            events in prop::collection::vec((valid_event(), prop::collection::vec(mutation(), 0..2)), 1..5),
            tenant in any::<bool>(),
        ) {
            let texts: Vec<String> = events.into_iter().map(|(e, m)| mutate(e, &m)).collect();
            let tenant = if tenant { r#""tenant_id": 7, "# } else { "" };
            let body = format!(r#"{{{tenant}"events": [{}]}}"#, texts.join(","));
            prop_assert_eq!(parse_batch(body.as_bytes()), parse_batch_slowly(body.as_bytes(), parse_one_slowly));
        }

        /// A time read from its digits is the instant chrono reads, over every field's range,
        /// fractions of any length and any offset.
        #[test]
        fn times_read_from_their_digits_are_chronos(
            (year, month, day) in (0..=9999u32, 1..=12u32, 1..=31u32),
            (hour, minute, second) in (0..24u32, 0..60u32, 0..=60u32),
            fraction in "(\\.[0-9]{1,14})?",
            offset in prop_oneof![Just("Z".to_owned()), Just("z".to_owned()), (any::<bool>(), 0..24u32, 0..60u32)
                .prop_map(|(east, h, m)| format!("{}{h:02}:{m:02}", if east { '+' } else { '-' }))],
            t in prop::sample::select(vec!['T', 't']),
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}{t}{hour:02}:{minute:02}:{second:02}{fraction}{offset}");
            let de: de::value::StrDeserializer<'_, de::value::Error> = text.as_str().into_deserializer();
            let chrono = DateTime::<Utc>::deserialize(de).ok();
            prop_assert_eq!(date_time(&text), if is_date_time(&text) { chrono } else { None }, "{}", text);
            if second != 60 && is_date_time(&text) {
                prop_assert_eq!(time_of_digits(text.as_bytes()), chrono, "{}", text);
            }
        }
    }
}
