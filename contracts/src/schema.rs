//! The JSON Schemas (draft 2020-12) of the API and of tracking events, compiled once, and the
//! one function the edge validates input with.
//!
//! Layout: one file per resource under `contracts/api/` (`campaign.json`, …) holding
//! `$defs/resource` (what the API returns), `$defs/create` (POST body) and `$defs/update`
//! (PATCH body), and any other body or view the resource has (`approval.json#/$defs/decision`,
//! `approval.json#/$defs/policy_put`, `run.json#/$defs/detail`, `memory.json#/$defs/search`);
//! shared definitions (money, ids, dates) in `common.json`. Files reference each other by their
//! `$id`, resolved from this registry alone: nothing is fetched.

use std::collections::HashMap;
use std::sync::LazyLock;

use jsonschema::{Registry, Resource, Validator};
use serde_json::Value;

const BASE: &str = "https://flywheel.dev/schemas/";

/// Every schema document shipped with Flywheel: (path under `contracts/`, contents).
pub const DOCUMENTS: &[(&str, &str)] = &[
    ("api/common.json", include_str!("../api/common.json")),
    ("api/error.json", include_str!("../api/error.json")),
    ("api/tenant.json", include_str!("../api/tenant.json")),
    ("api/brand_core.json", include_str!("../api/brand_core.json")),
    ("api/persona.json", include_str!("../api/persona.json")),
    ("api/campaign.json", include_str!("../api/campaign.json")),
    ("api/lead.json", include_str!("../api/lead.json")),
    ("api/run.json", include_str!("../api/run.json")),
    ("api/approval.json", include_str!("../api/approval.json")),
    ("api/memory.json", include_str!("../api/memory.json")),
    ("api/model_budget.json", include_str!("../api/model_budget.json")),
    ("api/tracking.json", include_str!("../api/tracking.json")),
    ("events/event.schema.json", include_str!("../events/event.schema.json")),
];

/// A schema the edge validates against: a document and a definition inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemaRef {
    pub document: &'static str,
    /// `None` for the document's root, else the name under `$defs`.
    pub definition: Option<&'static str>,
}

impl SchemaRef {
    pub const fn api(document: &'static str, definition: &'static str) -> Self {
        Self { document, definition: Some(definition) }
    }
    pub fn uri(&self) -> String {
        match self.definition {
            Some(def) => format!("{BASE}{}#/$defs/{def}", self.document),
            None => format!("{BASE}{}", self.document),
        }
    }
}

pub const TENANT: SchemaRef = SchemaRef::api("api/tenant.json", "resource");
pub const TENANT_CREATED: SchemaRef = SchemaRef::api("api/tenant.json", "created");
pub const ERROR: SchemaRef = SchemaRef::api("api/error.json", "resource");
pub const BRAND_CORE: SchemaRef = SchemaRef::api("api/brand_core.json", "resource");
pub const BRAND_CORE_CREATE: SchemaRef = SchemaRef::api("api/brand_core.json", "create");
pub const BRAND_CORE_UPDATE: SchemaRef = SchemaRef::api("api/brand_core.json", "update");
pub const PERSONA: SchemaRef = SchemaRef::api("api/persona.json", "resource");
pub const PERSONA_CREATE: SchemaRef = SchemaRef::api("api/persona.json", "create");
pub const PERSONA_UPDATE: SchemaRef = SchemaRef::api("api/persona.json", "update");
pub const CAMPAIGN: SchemaRef = SchemaRef::api("api/campaign.json", "resource");
pub const CAMPAIGN_CREATE: SchemaRef = SchemaRef::api("api/campaign.json", "create");
pub const CAMPAIGN_UPDATE: SchemaRef = SchemaRef::api("api/campaign.json", "update");
pub const LEAD: SchemaRef = SchemaRef::api("api/lead.json", "resource");
pub const LEAD_CREATE: SchemaRef = SchemaRef::api("api/lead.json", "create");
pub const LEAD_UPDATE: SchemaRef = SchemaRef::api("api/lead.json", "update");
pub const RUN: SchemaRef = SchemaRef::api("api/run.json", "resource");
pub const RUN_DETAIL: SchemaRef = SchemaRef::api("api/run.json", "detail");
pub const RUN_CREATE: SchemaRef = SchemaRef::api("api/run.json", "create");
/// The `input` of a branding run: checked on its own once the URL has named the agent.
pub const BRANDING_INPUT: SchemaRef = SchemaRef::api("api/run.json", "branding_input");
pub const APPROVAL: SchemaRef = SchemaRef::api("api/approval.json", "resource");
pub const DECISION_REQUEST: SchemaRef = SchemaRef::api("api/approval.json", "decision");
pub const APPROVAL_POLICY: SchemaRef = SchemaRef::api("api/approval.json", "policy");
pub const APPROVAL_POLICY_PUT: SchemaRef = SchemaRef::api("api/approval.json", "policy_put");
/// The answer of `GET /v1/memory/search`.
pub const MEMORY_SEARCH: SchemaRef = SchemaRef::api("api/memory.json", "search");
/// The answer of `GET /v1/model_budgets` and of `PUT /v1/model_budgets/{period}`.
pub const MODEL_BUDGETS: SchemaRef = SchemaRef::api("api/model_budget.json", "budgets");
pub const MODEL_BUDGET_PUT: SchemaRef = SchemaRef::api("api/model_budget.json", "budget_put");
pub const EVENT: SchemaRef = SchemaRef { document: "events/event.schema.json", definition: None };
/// The body of `POST /v1/collect` and its answer.
pub const COLLECT: SchemaRef = SchemaRef::api("api/tracking.json", "collect");
pub const COLLECTED: SchemaRef = SchemaRef::api("api/tracking.json", "collected");
pub const TRACKING: SchemaRef = SchemaRef::api("api/tracking.json", "resource");
pub const TRACKING_UPDATE: SchemaRef = SchemaRef::api("api/tracking.json", "update");
/// The answer of `GET /v1/events` and `GET /v1/leads/{id}/timeline`.
pub const STORED_EVENTS: SchemaRef = SchemaRef::api("api/tracking.json", "events");

/// Every schema the API uses, for the OpenAPI document and for tests.
pub const ALL: &[SchemaRef] = &[
    TENANT,
    TENANT_CREATED,
    ERROR,
    BRAND_CORE,
    BRAND_CORE_CREATE,
    BRAND_CORE_UPDATE,
    PERSONA,
    PERSONA_CREATE,
    PERSONA_UPDATE,
    CAMPAIGN,
    CAMPAIGN_CREATE,
    CAMPAIGN_UPDATE,
    LEAD,
    LEAD_CREATE,
    LEAD_UPDATE,
    RUN,
    RUN_DETAIL,
    RUN_CREATE,
    BRANDING_INPUT,
    APPROVAL,
    DECISION_REQUEST,
    APPROVAL_POLICY,
    APPROVAL_POLICY_PUT,
    MEMORY_SEARCH,
    MODEL_BUDGETS,
    MODEL_BUDGET_PUT,
    EVENT,
    COLLECT,
    COLLECTED,
    TRACKING,
    TRACKING_UPDATE,
    STORED_EVENTS,
];

/// The first reason an instance does not match its schema, in terms a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SchemaViolation {
    /// Dotted path of the offending field (`budget.amount`, `channels.2`); `None` for the root.
    pub field: Option<String>,
    pub message: String,
}

struct Compiled {
    documents: HashMap<&'static str, Value>,
    validators: HashMap<SchemaRef, Validator>,
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    // The documents are compiled into the binary and checked by this crate's tests, so a
    // failure here is a broken build, not bad input.
    #[allow(clippy::expect_used)] // see above: an invariant of the build
    let documents: HashMap<&'static str, Value> = DOCUMENTS
        .iter()
        .map(|(path, text)| (*path, serde_json::from_str(text).expect("shipped schema is JSON")))
        .collect();
    let registry: &'static Registry<'static> = Box::leak(Box::new(
        #[allow(clippy::expect_used)] // an invariant of the build, checked by tests
        Registry::new()
            .extend(documents.iter().map(|(path, doc)| (format!("{BASE}{path}"), Resource::from_contents(doc.clone()))))
            .and_then(|b| b.prepare())
            .expect("shipped schemas form a registry"),
    ));
    let validators = ALL
        .iter()
        .map(|r| {
            let root = serde_json::json!({ "$ref": r.uri() });
            #[allow(clippy::expect_used)] // an invariant of the build, checked by tests
            let v = jsonschema::draft202012::options()
                .with_registry(registry)
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("schema {} compiles: {e}", r.uri()));
            (*r, v)
        })
        .collect();
    Compiled { documents, validators }
});

/// The parsed schema document at `path` (e.g. `api/campaign.json`).
pub fn document(path: &str) -> Option<&'static Value> {
    COMPILED.documents.get(path)
}

/// Validates `instance` against `schema`, reporting the first violation.
pub fn validate(schema: SchemaRef, instance: &Value) -> Result<(), SchemaViolation> {
    let Some(validator) = COMPILED.validators.get(&schema) else {
        // Every SchemaRef constant is in ALL; a new one without it is a programming error.
        return Err(SchemaViolation { field: None, message: format!("unknown schema {}", schema.uri()) });
    };
    // The common case, valid input, without building an error iterator.
    if validator.is_valid(instance) {
        return Ok(());
    }
    let Some(error) = validator.iter_errors(instance).next() else {
        return Ok(());
    };
    let (path, mut message) = most_specific(&error);
    if message.len() > 300 {
        let cut = (0..=300).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
        message.truncate(cut);
        message.push('…');
    }
    Err(SchemaViolation { field: (!path.is_empty()).then(|| path.join(".")), message })
}

/// The offending field of an error and its message. An `anyOf`/`oneOf` failure ("not valid
/// under any of the schemas") says nothing useful by itself, so the deepest error among its
/// alternatives is reported instead: for a nullable `budget` with a bad currency, that is
/// `budget.currency`, not `budget`.
fn most_specific(error: &jsonschema::ValidationError<'_>) -> (Vec<String>, String) {
    use jsonschema::error::ValidationErrorKind as Kind;
    match error.kind() {
        Kind::AnyOf { context } | Kind::OneOfNotValid { context } => {
            let mut best: Option<(Vec<String>, String)> = None;
            for branch in context {
                for e in branch {
                    let candidate = most_specific(e);
                    if best.as_ref().is_none_or(|(p, _)| candidate.0.len() > p.len()) {
                        best = Some(candidate);
                    }
                }
            }
            best.unwrap_or_else(|| (instance_path(error), error.to_string()))
        }
        Kind::Required { property } => {
            let mut path = instance_path(error);
            path.push(property.as_str().map_or_else(|| property.to_string(), str::to_owned));
            (path, error.to_string())
        }
        Kind::AdditionalProperties { unexpected } => {
            let mut path = instance_path(error);
            if let Some(first) = unexpected.first() {
                path.push(first.clone());
            }
            (path, format!("unknown field(s): {}", unexpected.join(", ")))
        }
        _ => (instance_path(error), error.to_string()),
    }
}

fn instance_path(error: &jsonschema::ValidationError<'_>) -> Vec<String> {
    error.instance_path().iter().map(|s| s.to_string()).collect()
}
