//! `events.meta` written by hand: the same bytes as `serde_json` writes for [`Meta`] (a
//! property test holds the two together), but a string that needs no escape — nearly every URL,
//! title and user agent — is checked 32 bytes at a time and copied whole, where `serde_json`
//! looks each byte up in a table (about 4 % of the node's time in the accept path, at 20 events
//! a request).

use flywheel_contracts::api::JsonObject;
use flywheel_contracts::events::{ClickIds, EventContext, Screen, Utm};

/// `events.meta`: keys absent when empty. The derived `Serialize` is the reference [`write`]
/// is tested against.
#[derive(serde::Serialize)]
pub(super) struct Meta<'a> {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clamped_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<&'a EventContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<&'a JsonObject>,
}

/// The JSON text of `meta`.
pub(super) fn write(meta: &Meta<'_>) -> String {
    let mut text = String::with_capacity(512);
    let mut out = Object::within(&mut text);
    if meta.bot {
        out.key("bot").push_str("true");
    }
    if let Some(from) = &meta.clamped_from {
        string(out.key("clamped_from"), from);
    }
    if let Some(context) = meta.context {
        write_context(out.key("context"), context);
    }
    if let Some(ip) = meta.ip {
        string(out.key("ip"), ip);
    }
    if let Some(properties) = meta.properties {
        // Serializing JSON values into a String cannot fail.
        out.key("properties").push_str(&serde_json::to_string(properties).unwrap_or_else(|_| "{}".to_owned()));
    }
    out.end();
    text
}

fn write_context(out: &mut String, c: &EventContext) {
    let mut o = Object::within(out);
    optional(&mut o, "url", c.url.as_deref());
    optional(&mut o, "referrer", c.referrer.as_deref());
    optional(&mut o, "title", c.title.as_deref());
    optional(&mut o, "user_agent", c.user_agent.as_deref());
    optional(&mut o, "locale", c.locale.as_deref());
    if let Some(Screen { width, height }) = c.screen {
        let mut digits = itoa::Buffer::new();
        let out = o.key("screen");
        out.push_str(r#"{"width":"#);
        out.push_str(digits.format(width));
        out.push_str(r#","height":"#);
        out.push_str(digits.format(height));
        out.push('}');
    }
    if let Some(Utm { source, medium, campaign, term, content }) = &c.utm {
        strings(
            o.key("utm"),
            [("source", source), ("medium", medium), ("campaign", campaign), ("term", term), ("content", content)],
        );
    }
    if let Some(ClickIds { gclid, fbclid, msclkid, ttclid, li_fat_id }) = &c.click_ids {
        strings(
            o.key("click_ids"),
            [("gclid", gclid), ("fbclid", fbclid), ("msclkid", msclkid), ("ttclid", ttclid), ("li_fat_id", li_fat_id)],
        );
    }
    optional(&mut o, "ref", c.referral_code.as_deref());
    o.end();
}

/// An object being written: `{` at the start, a comma before every key but the first.
struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    fn within(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, empty: true }
    }

    fn end(self) {
        self.out.push('}');
    }

    /// Writes `"name":` (after a comma unless first); the value is written into the answer.
    /// Names are written as they are: they are this file's, none needs an escape.
    fn key(&mut self, name: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
        self.out
    }
}

/// An object of optional strings, in the order given.
fn strings(out: &mut String, fields: [(&str, &Option<String>); 5]) {
    let mut o = Object::within(out);
    for (name, value) in fields {
        optional(&mut o, name, value.as_deref());
    }
    o.end();
}

fn optional(o: &mut Object<'_>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        string(o.key(name), value);
    }
}

/// A JSON string: copied whole when nothing in it needs an escape, else as `serde_json` writes it.
fn string(out: &mut String, s: &str) {
    if needs_escape(s.as_bytes()) {
        // Writing a string into a String cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Whether a byte of `bytes` is one JSON escapes (a control character, `"` or `\`). Without an
/// early exit per byte, so the compiler checks a chunk at a time in vector registers.
fn needs_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut chunks = bytes.chunks_exact(32);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |any, &b| any | special(b)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| special(b))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Strings with what JSON escapes, multi-byte characters and long plain runs.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z/:.?=&-]{0,80}", "[\\x00-\\x7f]{0,70}", "[ -~\"\\\\\u{e9}\u{2028}\u{1f600}\\t\\n\u{7f}]{0,50}",]
    }

    fn some_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text())
    }

    fn five() -> impl Strategy<Value = [Option<String>; 5]> {
        [some_text(), some_text(), some_text(), some_text(), some_text()]
    }

    fn context() -> impl Strategy<Value = EventContext> {
        (
            (some_text(), some_text(), some_text(), some_text(), some_text()),
            proptest::option::of((any::<u32>(), any::<u32>())),
            proptest::option::of(five()),
            proptest::option::of(five()),
            some_text(),
        )
            .prop_map(|((url, referrer, title, user_agent, locale), screen, utm, clicks, referral_code)| {
                EventContext {
                    url,
                    referrer,
                    title,
                    user_agent,
                    locale,
                    screen: screen.map(|(width, height)| Screen { width, height }),
                    utm: utm.map(|[source, medium, campaign, term, content]| Utm {
                        source,
                        medium,
                        campaign,
                        term,
                        content,
                    }),
                    click_ids: clicks.map(|[gclid, fbclid, msclkid, ttclid, li_fat_id]| ClickIds {
                        gclid,
                        fbclid,
                        msclkid,
                        ttclid,
                        li_fat_id,
                    }),
                    referral_code,
                }
            })
    }

    proptest! {
        #[test]
        fn writes_what_serde_json_writes(
            bot in any::<bool>(),
            clamped_from in some_text(),
            context in proptest::option::of(context()),
            ip in some_text(),
            property in proptest::option::of((text(), text())),
        ) {
            let properties = property.map(|(k, v)| {
                let mut o = JsonObject::new();
                o.insert(k, json!({"v": v, "n": 1.5, "list": [true, null]}));
                o
            });
            let meta = Meta {
                bot,
                clamped_from,
                context: context.as_ref(),
                ip: ip.as_deref(),
                properties: properties.as_ref(),
            };
            prop_assert_eq!(write(&meta), serde_json::to_string(&meta).expect("serializable"));
        }
    }

    #[test]
    fn finds_an_escape_anywhere_in_a_long_string() {
        let plain = "a".repeat(100);
        assert!(!needs_escape(plain.as_bytes()));
        for at in [0, 31, 32, 63, 64, 95, 99] {
            for special in [b'"', b'\\', b'\n', 0u8, 0x1f] {
                let mut bytes = plain.clone().into_bytes();
                bytes[at] = special;
                assert!(needs_escape(&bytes), "{special:#x} at {at}");
            }
        }
        assert!(!needs_escape("é — \u{7f} ~".as_bytes()));
    }
}
