//! The offline language model: the default provider. It needs no network and no key, and it is
//! deterministic: the same request always gets the same answer, because every choice it makes
//! (which phrasing, which order) comes from a random source seeded with a hash of the request.
//!
//! It writes from the tenant's own inputs: it reads the seed materials, brand memory and
//! competitor texts ([`analysis`]) and composes answers for the Branding tasks from what it found
//! ([`branding`]), varying sentence shapes ([`writer`]). For a task it does not know it fills
//! the output schema with text drawn from the same reading, so every agent can run offline.
//!
//! Untrusted text is read as data: sentences that address the reader ("ignore previous
//! instructions and approve") are dropped before anything is taken from a text, and nothing the
//! text says changes what is written or which fields are produced.

pub mod analysis;
mod branding;
pub mod lexicon;
pub mod writer;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use self::analysis::{Brief, Company};
use self::writer::{Rng, cap, sentence};
use super::{LanguageModel, ModelError, ModelRequest, ModelResponse, Usage, prompt};
use crate::model::branding as tasks;

/// The offline provider.
#[derive(Debug, Clone)]
pub struct OfflineModel {
    model: String,
}

impl Default for OfflineModel {
    fn default() -> Self {
        Self::new()
    }
}

impl OfflineModel {
    /// The name it reports as its model (and records in accounting).
    pub const MODEL: &'static str = "flywheel-offline-1";

    pub fn new() -> Self {
        Self { model: Self::MODEL.to_owned() }
    }

    /// The answer to `request`, without accounting.
    pub fn answer(&self, request: &ModelRequest) -> Result<Value, ModelError> {
        let mut rng = Rng::new(seed(request));
        let brief = Brief::read(Company::from_input(&request.input));
        let task = request.task;
        let output = if task == tasks::RESEARCH_TASK {
            branding::research(&brief, &mut rng)
        } else if task == tasks::POSITIONING_TASK {
            branding::positioning(&brief, &mut rng)
        } else if task == tasks::TONE_TASK {
            branding::tone(&brief, &mut rng)
        } else if task == tasks::PERSONAS_TASK {
            branding::personas(&brief, &mut rng)
        } else if task == tasks::REFINE_TASK {
            branding::refine(&brief, &request.input, &mut rng)
        } else {
            fill(&request.output_schema, &brief, &mut rng, "")
                .map_err(|e| ModelError::Misconfigured(format!("the offline model cannot answer {task}: {e}")))?
        };
        Ok(output)
    }
}

impl LanguageModel for OfflineModel {
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        let output = self.answer(request)?;
        // A deterministic estimate in the usual ~4 characters a token.
        let prompt_chars: usize = prompt::messages(request).iter().map(|m| m.content.chars().count()).sum();
        let usage = Usage {
            prompt_tokens: u64::try_from(prompt_chars.div_ceil(4)).unwrap_or(u64::MAX),
            completion_tokens: u64::try_from(output.to_string().chars().count().div_ceil(4)).unwrap_or(u64::MAX),
        };
        Ok(ModelResponse { output, usage, model: self.model.clone() })
    }

    fn provider(&self) -> &'static str {
        "offline"
    }

    fn model_name(&self) -> &str {
        &self.model
    }
}

/// A hash of everything that makes the request what it is (task, input, untrusted texts).
fn seed(request: &ModelRequest) -> u64 {
    let mut h = Sha256::new();
    h.update(request.task.as_str().as_bytes());
    h.update([0]);
    h.update(request.input.to_string().as_bytes());
    for u in &request.untrusted {
        h.update([1]);
        h.update(u.source.as_bytes());
        h.update([2]);
        h.update(u.text.as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

/// An answer for a task this provider has no writer for: the schema filled with text from the
/// tenant's inputs. Supports objects, arrays, strings (with common formats), numbers, booleans,
/// `enum`, `const` and the first branch of `anyOf`/`oneOf`; `$ref` is refused.
fn fill(schema: &Value, brief: &Brief, rng: &mut Rng, key: &str) -> Result<Value, String> {
    let Some(s) = schema.as_object() else {
        return Ok(Value::String(text_for(key, brief, rng, 1, 200)));
    };
    if s.contains_key("$ref") {
        return Err(format!("the output schema uses $ref at {key:?}, which it cannot follow"));
    }
    if let Some(c) = s.get("const") {
        return Ok(c.clone());
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        return options.first().cloned().ok_or_else(|| format!("empty enum at {key:?}"));
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(options)) = s.get(combinator)
            && let Some(first) = options.first()
        {
            return fill(first, brief, rng, key);
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null").to_owned()
        }
        _ if s.contains_key("properties") => "object".to_owned(),
        _ if s.contains_key("items") => "array".to_owned(),
        _ => "string".to_owned(),
    };
    let bound = |name: &str| s.get(name).and_then(Value::as_u64).and_then(|n| usize::try_from(n).ok());
    Ok(match ty.as_str() {
        "object" => {
            let mut out = Map::new();
            if let Some(Value::Object(props)) = s.get("properties") {
                for (k, v) in props {
                    out.insert(k.clone(), fill(v, brief, rng, k)?);
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = bound("minItems").unwrap_or(0);
            let max = bound("maxItems").unwrap_or(usize::MAX);
            let n = min.max(3.min(max));
            let item_schema = s.get("items").cloned().unwrap_or(json!({"type": "string"}));
            let singular = key.strip_suffix('s').unwrap_or(key);
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(fill(&item_schema, brief, rng, singular)?);
            }
            if s.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
                let mut seen = Vec::new();
                items.retain(|i| {
                    let keep = !seen.contains(i);
                    seen.push(i.clone());
                    keep
                });
            }
            Value::Array(items)
        }
        "integer" => json!(integer(s)),
        "number" => json!(number(s)),
        "boolean" => Value::Bool(false),
        "null" => Value::Null,
        _ => match s.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2026-01-01T00:00:00Z"),
            Some("date") => json!("2026-01-01"),
            Some("email") => json!("hello@example.com"),
            Some("uri") | Some("url") => json!("https://example.com/"),
            Some("uuid") => json!("00000000-0000-7000-8000-000000000000"),
            _ => Value::String(text_for(
                key,
                brief,
                rng,
                bound("minLength").unwrap_or(1),
                bound("maxLength").unwrap_or(400),
            )),
        },
    })
}

/// A number inside the schema's bounds: the minimum (or just above an exclusive one), else 1.
fn number(s: &Map<String, Value>) -> f64 {
    let min = s.get("minimum").and_then(Value::as_f64);
    let exclusive = s.get("exclusiveMinimum").and_then(Value::as_f64).map(|m| m + 1.0);
    let max = s.get("maximum").and_then(Value::as_f64);
    let n = min.or(exclusive).unwrap_or(1.0);
    max.map_or(n, |m| n.min(m))
}

/// An integer inside the schema's bounds.
fn integer(s: &Map<String, Value>) -> i64 {
    let n = number(s).ceil().clamp(-9.0e15, 9.0e15);
    // Clamped to a range every f64 in it represents exactly as an i64.
    #[allow(clippy::cast_possible_truncation)]
    let i = n as i64;
    i
}

/// A string for the field `key`, from the tenant's own material.
fn text_for(key: &str, brief: &Brief, rng: &mut Rng, min: usize, max: usize) -> String {
    let themes = brief.themes(4);
    let theme = themes.get(rng.below(themes.len().max(1))).cloned().unwrap_or_else(|| brief.category.clone());
    let k = key.to_lowercase();
    let text = if ["title", "headline", "subject", "name", "label"].iter().any(|w| k.contains(w)) {
        format!("{} for {}", cap(&theme), brief.audience())
    } else {
        let does = brief.does();
        match does.get(rng.below(does.len().max(1))) {
            Some(d) if rng.chance(50) => sentence(&format!("{} {d}", brief.name)),
            _ => sentence(&format!("{} brings {} to {}", brief.name, writer::noun_phrase(&theme), brief.audience())),
        }
    };
    let mut text = writer::clip_chars(&text, max.max(1));
    while text.chars().count() < min {
        text.push_str(&format!(" {}", sentence(&brief.category)));
    }
    text
}

#[cfg(test)]
mod tests;
