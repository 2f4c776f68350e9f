//! The Branding agent's model tasks: what each asks, its output JSON Schema (draft 2020-12), its
//! instructions and output cap, and how its request is built. Every provider answers these, the
//! offline one included; the Branding agent's steps call [`TaskSpec::request`].
//!
//! | task | input | output |
//! |---|---|---|
//! | `branding.research` | `{company}` | themes, claims, gaps, audience_signals (2–8 each) |
//! | `branding.positioning` | `{company, research}` | positioning, value_props, differentiators, proof_points |
//! | `branding.tone` | `{company, research, positioning}` | tone, voice_attributes, do, dont, vocabulary, sample_lines |
//! | `branding.personas` | `{company, research, positioning}` | 2–4 personas with role, goals, pains, channels, objections |
//! | `branding.refine` | `{company, brand_core, insights}` | as positioning, plus rationale |
//!
//! `company` is `{"name", "industry", "goals": [..], "competitors": [{"name", "text"?}],
//! "seed_materials": [..], "audience"?, "memory"?: [..]}`. Competitor texts, seed materials,
//! brand memory and insights are copied into the request's untrusted blocks by
//! [`TaskSpec::request`]: the prompt fences them as data and points to them from the input.

use std::sync::LazyLock;

use flywheel_contracts::TenantId;
use serde_json::{Value, json};

use super::{ModelRequest, Task, UntrustedText};

pub const RESEARCH_TASK: Task = Task::new("branding.research");
pub const POSITIONING_TASK: Task = Task::new("branding.positioning");
pub const TONE_TASK: Task = Task::new("branding.tone");
pub const PERSONAS_TASK: Task = Task::new("branding.personas");
pub const REFINE_TASK: Task = Task::new("branding.refine");

/// A task a model answers: its name, instructions, output schema and output cap.
#[derive(Debug)]
pub struct TaskSpec {
    pub task: Task,
    /// What this task asks, after the instructions every Branding task shares.
    ask: &'static str,
    pub max_output_tokens: u32,
    schema: fn() -> &'static Value,
}

impl TaskSpec {
    /// The trusted system text for this task.
    pub fn instructions(&self) -> String {
        format!("{COMMON_INSTRUCTIONS}\n\nTask: {}", self.ask)
    }

    /// The JSON Schema answers must match.
    pub fn output_schema(&self) -> &'static Value {
        (self.schema)()
    }

    /// The request for `input`, with the untrusted texts inside it (competitor texts, seed
    /// materials, brand memory, insights) also passed as fenced untrusted blocks.
    pub fn request(&self, tenant: TenantId, input: Value) -> ModelRequest {
        let untrusted = untrusted_texts(&input);
        let mut request =
            ModelRequest::new(tenant, self.task, self.instructions(), input, self.output_schema().clone())
                .with_max_output_tokens(self.max_output_tokens);
        request.untrusted = untrusted;
        request
    }
}

/// Every Branding task.
pub const ALL: [&TaskSpec; 5] = [&RESEARCH, &POSITIONING, &TONE, &PERSONAS, &REFINE];

/// The spec of a Branding task by name.
pub fn spec(task: Task) -> Option<&'static TaskSpec> {
    ALL.into_iter().find(|s| s.task == task)
}

/// What every Branding task's instructions open with.
pub const COMMON_INSTRUCTIONS: &str = "You work for the marketing team of the company described in the input. Write in plain, \
specific English about this company only: use its name, industry, goals, competitors and its own materials; prefer \
the company's own words and facts over generic marketing language; never invent figures, customers or awards that \
the inputs do not contain.";

pub static RESEARCH: TaskSpec = TaskSpec {
    task: RESEARCH_TASK,
    ask: "market research for the brand. From the company's seed materials and its competitors' texts, list \
         the themes the company's own material keeps returning to, the claims competitors (and the company) lead \
         with, quoted briefly, the gaps no competitor covers that the company could own, and signals about who the \
         audience is and what they struggle with. Each list has 2 to 8 short, specific items.",
    max_output_tokens: 1200,
    schema: research_schema,
};

pub static POSITIONING: TaskSpec = TaskSpec {
    task: POSITIONING_TASK,
    ask: "a positioning for the brand, from the company and the research. `positioning` is a statement of 2 to \
         4 sentences: for whom, what the company is, what it does for them, and how it differs from the named \
         competitors. Then value propositions, differentiators against the competitors, and proof points taken \
         from the inputs (say what proof is still missing rather than inventing it).",
    max_output_tokens: 1000,
    schema: positioning_schema,
};

pub static TONE: TaskSpec = TaskSpec {
    task: TONE_TASK,
    ask: "tone-of-voice guidelines that fit the positioning. `tone` is one paragraph describing how the brand \
         sounds; then voice attributes, do's and don'ts for writers, vocabulary to use and to avoid (include the \
         competitors' stock phrases among the words to avoid), and a few sample lines written in the voice.",
    max_output_tokens: 1500,
    schema: tone_schema,
};

pub static PERSONAS: TaskSpec = TaskSpec {
    task: PERSONAS_TASK,
    ask: "2 to 4 buyer personas for the positioning, each a distinct reader the materials point to, with a \
         distinct name. For each: a short description, the role, goals, pains, the channels where they can be \
         reached, and the objections they raise before buying.",
    max_output_tokens: 2000,
    schema: personas_schema,
};

pub static REFINE: TaskSpec = TaskSpec {
    task: REFINE_TASK,
    ask: "revise the approved positioning in `brand_core` in the light of the insights (results measured \
         since it was approved). Keep what still holds, change what the insights contradict or point to, and keep \
         the positioning statement to 2 to 4 sentences. `rationale` ties each change to the insight that prompted \
         it.",
    max_output_tokens: 1200,
    schema: refine_schema,
};

fn string_list(min: u32, max: u32) -> Value {
    json!({
        "type": "array",
        "minItems": min,
        "maxItems": max,
        "items": {"type": "string", "minLength": 1, "maxLength": 400}
    })
}

fn text(min: u32, max: u32) -> Value {
    json!({"type": "string", "minLength": min, "maxLength": max})
}

fn positioning_properties() -> serde_json::Map<String, Value> {
    let mut p = serde_json::Map::new();
    p.insert("positioning".into(), text(20, 2000));
    p.insert("value_props".into(), string_list(2, 6));
    p.insert("differentiators".into(), string_list(2, 6));
    p.insert("proof_points".into(), string_list(1, 6));
    p
}

fn object(required: &[&str], properties: serde_json::Map<String, Value>) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": false
    })
}

fn research_schema() -> &'static Value {
    static S: LazyLock<Value> = LazyLock::new(|| {
        let mut p = serde_json::Map::new();
        for k in ["themes", "claims", "gaps", "audience_signals"] {
            p.insert(k.into(), string_list(2, 8));
        }
        object(&["themes", "claims", "gaps", "audience_signals"], p)
    });
    &S
}

fn positioning_schema() -> &'static Value {
    static S: LazyLock<Value> = LazyLock::new(|| {
        object(&["positioning", "value_props", "differentiators", "proof_points"], positioning_properties())
    });
    &S
}

fn tone_schema() -> &'static Value {
    static S: LazyLock<Value> = LazyLock::new(|| {
        let mut p = serde_json::Map::new();
        p.insert("tone".into(), text(40, 3000));
        p.insert("voice_attributes".into(), string_list(3, 6));
        p.insert("do".into(), string_list(2, 8));
        p.insert("dont".into(), string_list(2, 8));
        p.insert(
            "vocabulary".into(),
            json!({
                "type": "object",
                "required": ["use", "avoid"],
                "properties": {"use": string_list(2, 15), "avoid": string_list(2, 15)},
                "additionalProperties": false
            }),
        );
        p.insert("sample_lines".into(), string_list(2, 6));
        object(&["tone", "voice_attributes", "do", "dont", "vocabulary", "sample_lines"], p)
    });
    &S
}

fn personas_schema() -> &'static Value {
    static S: LazyLock<Value> = LazyLock::new(|| {
        let persona = json!({
            "type": "object",
            "required": ["name", "description", "attributes"],
            "properties": {
                "name": text(1, 200),
                "description": text(1, 2000),
                "attributes": {
                    "type": "object",
                    "required": ["role", "goals", "pains", "channels", "objections"],
                    "properties": {
                        "role": text(1, 200),
                        "goals": string_list(1, 6),
                        "pains": string_list(1, 6),
                        "channels": string_list(1, 6),
                        "objections": string_list(1, 6)
                    },
                    "additionalProperties": false
                }
            },
            "additionalProperties": false
        });
        let mut p = serde_json::Map::new();
        p.insert("personas".into(), json!({"type": "array", "minItems": 2, "maxItems": 4, "items": persona}));
        object(&["personas"], p)
    });
    &S
}

fn refine_schema() -> &'static Value {
    static S: LazyLock<Value> = LazyLock::new(|| {
        let mut p = positioning_properties();
        p.insert("rationale".into(), text(20, 3000));
        object(&["positioning", "value_props", "differentiators", "proof_points", "rationale"], p)
    });
    &S
}

/// Persona names must differ (they are unique per tenant once stored), which JSON Schema cannot
/// say; the Branding agent checks this before persisting.
pub fn distinct_persona_names(output: &Value) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for p in output.get("personas").and_then(Value::as_array).into_iter().flatten() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default().trim().to_lowercase();
        if !seen.insert(name.clone()) {
            return Err(format!("two personas are named {name:?}"));
        }
    }
    Ok(())
}

/// The untrusted texts inside a Branding input: competitor texts, seed materials, brand memory
/// and insights, each labelled with where it came from.
pub fn untrusted_texts(input: &Value) -> Vec<UntrustedText> {
    let mut out = Vec::new();
    let company = input.get("company").unwrap_or(input);
    if let Some(Value::Array(competitors)) = company.get("competitors") {
        for c in competitors {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("unnamed");
            if let Some(text) = c.get("text").and_then(Value::as_str).filter(|t| !t.trim().is_empty()) {
                out.push(UntrustedText::new(format!("competitor: {name}"), text));
            }
        }
    }
    let lists = [
        (company.get("seed_materials"), "seed material"),
        (company.get("memory"), "brand memory"),
        (input.get("memory"), "brand memory"),
        (input.get("brand_memory"), "brand memory"),
        (input.get("insights"), "insight"),
    ];
    for (list, label) in lists {
        for (i, text) in super::offline::analysis::texts_of(list).into_iter().enumerate() {
            out.push(UntrustedText::new(format!("{label} {}", i + 1), text));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_compiles_and_requests_carry_the_untrusted_texts() {
        for spec in ALL {
            jsonschema::draft202012::new(spec.output_schema()).unwrap();
            assert!(spec.instructions().starts_with(COMMON_INSTRUCTIONS), "{}", spec.task);
        }
        let input = json!({"company": {
            "name": "Ledgerly",
            "competitors": [{"name": "Acme", "text": "Acme is fastest."}, {"name": "Quiet"}],
            "seed_materials": ["One.", "Two."]
        }});
        let r = RESEARCH.request(TenantId::new(), input);
        let sources: Vec<&str> = r.untrusted.iter().map(|u| u.source.as_str()).collect();
        assert_eq!(sources, vec!["competitor: Acme", "seed material 1", "seed material 2"]);
        assert_eq!(r.max_output_tokens, 1200);
        assert_eq!(spec(TONE_TASK).map(|s| s.task), Some(TONE_TASK));
    }

    #[test]
    fn persona_names_must_differ() {
        assert!(distinct_persona_names(&json!({"personas": [{"name": "A"}, {"name": "B"}]})).is_ok());
        assert!(distinct_persona_names(&json!({"personas": [{"name": "A"}, {"name": " a"}]})).is_err());
    }
}
