//! The schemas and the Rust wire types cannot drift: every example under `contracts/examples/`
//! must pass its JSON Schema, deserialize into its Rust type and serialize back to the very same
//! JSON; every example under `contracts/examples/invalid/` must be refused at the expected field.
//! Also checks the schema documents themselves (meta-schema, `$id`, descriptions) and that the
//! validator never panics on arbitrary input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use flywheel_contracts::api::approval::{
    Approval, ApprovalKind, ApprovalPolicy, ApprovalPolicyPut, ApprovalStatus, Decision, DecisionRequest, PolicyRule,
};
use flywheel_contracts::api::brand_core::{BrandCore, BrandCoreCreate, BrandCoreUpdate, BrandStatus};
use flywheel_contracts::api::campaign::{Campaign, CampaignCreate, CampaignStatus, CampaignUpdate, Channel};
use flywheel_contracts::api::error::ErrorBody;
use flywheel_contracts::api::lead::{Lead, LeadCreate, LeadStatus, LeadUpdate};
use flywheel_contracts::api::memory::{MemoryHit, MemorySearch};
use flywheel_contracts::api::model_budget::{BudgetPeriod, ModelBudget, ModelBudgetPut, ModelBudgets};
use flywheel_contracts::api::persona::{Persona, PersonaCreate, PersonaUpdate};
use flywheel_contracts::api::run::{
    AgentName, BrandingInput, Competitor, Run, RunCreate, RunDetail, RunStatus, RunStep, StepStatus,
};
use flywheel_contracts::api::tenant::{Tenant, TenantCreated, TenantStatus};
use flywheel_contracts::api::tracking::{
    CollectBatch, Collected, StoredEvent, StoredEvents, TrackingSettings, TrackingSettingsUpdate,
};
use flywheel_contracts::events::{EventSource, EventType, TrackingEvent};
use flywheel_contracts::schema::{self, SchemaRef};
use flywheel_contracts::{Currency, Money, Role};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const BASE: &str = "https://flywheel.dev/schemas/";

/// Deserializes a JSON value into a Rust type and serializes it back.
type RoundTrip = fn(&Value) -> Result<Value, String>;

fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| format!("does not deserialize: {e}"))?;
    serde_json::to_value(&typed).map_err(|e| format!("does not serialize: {e}"))
}

/// The wire names of a Rust struct's fields, as serde's derive lists them.
type FieldNames = fn() -> Vec<&'static str>;

/// The wire names of a struct's fields or of an enum's variants, as serde's derive lists them.
fn serde_names<T: DeserializeOwned>() -> Vec<&'static str> {
    let mut names = Vec::new();
    // Fails by design once the type has told its names.
    let _ = T::deserialize(DeclaredNames(&mut names));
    names
}

/// A deserializer that only records the names serde's derive passes to `deserialize_struct`
/// (fields) or `deserialize_enum` (variants).
struct DeclaredNames<'a>(&'a mut Vec<&'static str>);

impl<'de> serde::Deserializer<'de> for DeclaredNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(serde::de::Error::custom("fields recorded"))
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(variants);
        Err(serde::de::Error::custom("variants recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// A schema and the Rust type it describes. Example file names are
/// `<document>.<definition>[.<variant>].json`, events `event.<variant>.json`.
struct Contract {
    document: &'static str,
    definition: &'static str,
    schema: SchemaRef,
    round_trip: RoundTrip,
    fields: FieldNames,
}

const fn contract<T: DeserializeOwned + Serialize>(
    document: &'static str,
    definition: &'static str,
    schema: SchemaRef,
) -> Contract {
    Contract { document, definition, schema, round_trip: round_trip::<T>, fields: serde_names::<T> }
}

const TABLE: &[Contract] = &[
    contract::<Tenant>("tenant", "resource", schema::TENANT),
    contract::<TenantCreated>("tenant", "created", schema::TENANT_CREATED),
    contract::<ErrorBody>("error", "resource", schema::ERROR),
    contract::<BrandCore>("brand_core", "resource", schema::BRAND_CORE),
    contract::<BrandCoreCreate>("brand_core", "create", schema::BRAND_CORE_CREATE),
    contract::<BrandCoreUpdate>("brand_core", "update", schema::BRAND_CORE_UPDATE),
    contract::<Persona>("persona", "resource", schema::PERSONA),
    contract::<PersonaCreate>("persona", "create", schema::PERSONA_CREATE),
    contract::<PersonaUpdate>("persona", "update", schema::PERSONA_UPDATE),
    contract::<Campaign>("campaign", "resource", schema::CAMPAIGN),
    contract::<CampaignCreate>("campaign", "create", schema::CAMPAIGN_CREATE),
    contract::<CampaignUpdate>("campaign", "update", schema::CAMPAIGN_UPDATE),
    contract::<Lead>("lead", "resource", schema::LEAD),
    contract::<LeadCreate>("lead", "create", schema::LEAD_CREATE),
    contract::<LeadUpdate>("lead", "update", schema::LEAD_UPDATE),
    contract::<Run>("run", "resource", schema::RUN),
    contract::<RunDetail>("run", "detail", schema::RUN_DETAIL),
    contract::<RunCreate>("run", "create", schema::RUN_CREATE),
    contract::<BrandingInput>("run", "branding_input", schema::BRANDING_INPUT),
    contract::<Approval>("approval", "resource", schema::APPROVAL),
    contract::<DecisionRequest>("approval", "decision", schema::DECISION_REQUEST),
    contract::<ApprovalPolicy>("approval", "policy", schema::APPROVAL_POLICY),
    contract::<ApprovalPolicyPut>("approval", "policy_put", schema::APPROVAL_POLICY_PUT),
    contract::<MemorySearch>("memory", "search", schema::MEMORY_SEARCH),
    contract::<ModelBudgets>("model_budget", "budgets", schema::MODEL_BUDGETS),
    contract::<ModelBudgetPut>("model_budget", "budget_put", schema::MODEL_BUDGET_PUT),
    contract::<TrackingEvent>("event", "", schema::EVENT),
    contract::<CollectBatch>("tracking", "collect", schema::COLLECT),
    contract::<Collected>("tracking", "collected", schema::COLLECTED),
    contract::<TrackingSettings>("tracking", "resource", schema::TRACKING),
    contract::<TrackingSettingsUpdate>("tracking", "update", schema::TRACKING_UPDATE),
    contract::<StoredEvents>("tracking", "events", schema::STORED_EVENTS),
];

/// Every file under `examples/invalid/` and the field its first violation must name (`None`
/// for the root, e.g. a rule about several fields).
const INVALID: &[(&str, Option<&str>)] = &[
    ("lead.create.no_contact.json", Some("email")),
    ("lead.create.bad_phone.json", Some("phone")),
    ("lead.update.bad_email.json", Some("email")),
    ("campaign.create.bad_currency.json", Some("budget.currency")),
    ("campaign.create.too_many_decimals.json", Some("budget.amount")),
    ("campaign.create.negative_budget.json", Some("budget.amount")),
    ("campaign.create.duplicate_channel.json", Some("channels")),
    ("campaign.create.unknown_channel.json", Some("channels.1")),
    ("campaign.create.unknown_field.json", Some("priority")),
    ("campaign.update.null_name.json", Some("name")),
    ("brand_core.create.empty_tone.json", Some("tone")),
    ("persona.create.no_name.json", Some("name")),
    ("run.create.no_input.json", Some("input")),
    ("run.create.input_not_wrapped.json", Some("company_name")),
    ("run.branding_input.no_goals.json", Some("goals")),
    ("run.branding_input.empty_goal.json", Some("goals.1")),
    ("run.branding_input.competitor_without_name.json", Some("competitors.0.name")),
    ("approval.decision.edit_without_artifact.json", Some("artifact")),
    ("approval.decision.unknown_decision.json", Some("decision")),
    ("approval.policy_put.empty_rule.json", Some("rule")),
    ("approval.policy_put.unknown_rule_key.json", Some("rule.max_amount")),
    ("approval.policy_put.ratio_too_high.json", Some("rule.max_change_ratio")),
    ("model_budget.budget_put.negative.json", Some("token_limit")),
    ("model_budget.budget_put.unknown_field.json", Some("period")),
    ("event.purchase.no_amount.json", Some("properties.amount")),
    ("event.purchase.no_properties.json", Some("properties")),
    ("event.form_submit.no_form_id.json", Some("properties.form_id")),
    ("event.email_open.no_email_id.json", Some("email_id")),
    ("event.ad_click.no_ad_id.json", Some("ad_id")),
    ("event.affiliate_click.no_ref.json", Some("context.ref")),
    ("event.affiliate_click.bad_ref.json", Some("context.ref")),
    ("event.feedback.score_out_of_range.json", Some("properties.score")),
    ("event.unknown_type.json", Some("type")),
    ("event.unknown_field.json", Some("userId")),
    ("event.bad_visitor_id.json", Some("visitor_id")),
    ("tracking.collect.bad_event.json", Some("events.1.type")),
    ("tracking.collect.empty.json", Some("events")),
    ("tracking.update.bad_origin.json", Some("allowed_origins.0")),
];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// The `.json` files directly in `dir`, sorted, as (file name, parsed contents). Anything else
/// in the directory (but the `invalid` folder) is a mistake and fails the test.
fn json_files(dir: &Path) -> Vec<(String, Value)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("UTF-8 file name").to_owned();
        if path.is_dir() {
            assert_eq!(name, "invalid", "unexpected folder {}", path.display());
            continue;
        }
        assert!(name.ends_with(".json"), "unexpected file {}", path.display());
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        files.push((name, value));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// The contract an example file name maps to.
fn contract_for(file: &str) -> &'static Contract {
    let stem = file.strip_suffix(".json").unwrap_or(file);
    let mut parts = stem.split('.');
    let document = parts.next().unwrap_or_default();
    let definition = if document == "event" { "" } else { parts.next().unwrap_or_default() };
    TABLE
        .iter()
        .find(|c| c.document == document && c.definition == definition)
        .unwrap_or_else(|| panic!("{file}: no schema is named <{document}>.<{definition}>"))
}

fn validate(schema: SchemaRef, value: &Value) -> Result<(), String> {
    schema::validate(schema, value).map_err(|v| format!("{:?}: {}", v.field, v.message))
}

#[test]
fn every_example_matches_its_schema_and_round_trips_through_its_rust_type() {
    let files = json_files(&examples_dir());
    assert!(!files.is_empty(), "no examples found");
    let mut failures = Vec::new();
    for (file, value) in &files {
        let Contract { schema, round_trip, .. } = contract_for(file);
        if let Err(e) = validate(*schema, value) {
            failures.push(format!("{file}: schema {} refuses it: {e}", schema.uri()));
            continue;
        }
        let back = match round_trip(value) {
            Ok(back) => back,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        if &back != value {
            failures.push(format!(
                "{file}: the Rust type does not give back the same JSON:\n  in:  {value}\n  out: {back}"
            ));
            continue;
        }
        if let Err(e) = validate(*schema, &back) {
            failures.push(format!("{file}: the re-serialized value fails the schema: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_schema_has_an_example() {
    let files = json_files(&examples_dir());
    let covered: BTreeSet<String> = files.iter().map(|(file, _)| contract_for(file).schema.uri()).collect();
    for schema in schema::ALL {
        assert!(TABLE.iter().any(|c| c.schema == *schema), "{} has no Rust type in the examples table", schema.uri());
    }
    for Contract { document, definition, schema, .. } in TABLE {
        assert!(
            covered.contains(&schema.uri()),
            "no example for {} (add examples/{document}.{definition}.json)",
            schema.uri()
        );
    }
}

#[test]
fn every_event_type_has_an_example() {
    let files = json_files(&examples_dir());
    for t in EventType::ALL {
        let name = format!("event.{}.json", t.as_str());
        assert!(files.iter().any(|(file, _)| *file == name), "no example {name}");
    }
}

#[test]
fn invalid_examples_are_refused_at_the_expected_field() {
    let files = json_files(&examples_dir().join("invalid"));
    let on_disk: BTreeSet<&str> = files.iter().map(|(file, _)| file.as_str()).collect();
    let listed: BTreeSet<&str> = INVALID.iter().map(|(file, _)| *file).collect();
    assert_eq!(on_disk, listed, "examples/invalid/ and the INVALID table list different files");
    let mut failures = Vec::new();
    for (file, value) in &files {
        let expected = INVALID.iter().find(|(f, _)| f == file).map(|(_, field)| *field).unwrap_or_default();
        let schema = contract_for(file).schema;
        match schema::validate(schema, value) {
            Ok(()) => failures.push(format!("{file}: accepted by {}", schema.uri())),
            Err(v) if v.field.as_deref() != expected => {
                failures.push(format!("{file}: expected field {expected:?}, got {:?} ({})", v.field, v.message))
            }
            Err(v) => assert!(!v.message.is_empty(), "{file}: empty message"),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn documents_are_valid_2020_12_schemas_with_the_id_convention() {
    let paths: BTreeSet<&str> = schema::DOCUMENTS.iter().map(|(path, _)| *path).collect();
    assert_eq!(paths.len(), schema::DOCUMENTS.len(), "a document is listed twice");
    for (path, text) in schema::DOCUMENTS {
        let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
        if let Err(e) = jsonschema::draft202012::meta::validate(&doc) {
            panic!("{path} is not a valid 2020-12 schema: {e} at {}", e.instance_path());
        }
        assert_eq!(doc["$schema"], "https://json-schema.org/draft/2020-12/schema", "{path}: $schema");
        assert_eq!(doc["$id"], format!("{BASE}{path}"), "{path}: $id");
        assert!(schema::document(path).is_some(), "{path} is not in the registry");
    }
    for schema in schema::ALL {
        assert!(paths.contains(schema.document), "{} is not a shipped document", schema.uri());
        if let Some(def) = schema.definition {
            let doc = schema::document(schema.document).expect("shipped");
            assert!(doc["$defs"][def].is_object(), "{} does not exist", schema.uri());
        }
    }
}

/// The schema object a contract names (a `$defs` entry, or the document's root).
fn definition(schema: SchemaRef) -> &'static Value {
    let doc = schema::document(schema.document).expect("shipped");
    match schema.definition {
        Some(def) => &doc["$defs"][def],
        None => doc,
    }
}

/// Request bodies that are neither a `create` (POST) nor an `update` (PATCH): the bodies of
/// actions and of PUTs.
const ACTION_BODIES: &[SchemaRef] =
    &[schema::DECISION_REQUEST, schema::APPROVAL_POLICY_PUT, schema::MODEL_BUDGET_PUT, schema::COLLECT];

/// Whether a schema is a whole request body, whose top-level `tenant_id` the gateway strips.
/// A schema of a part of a body (`branding_input`, a run's `input`) is not one.
fn is_body(schema: SchemaRef) -> bool {
    matches!(schema.definition, Some("create" | "update")) || ACTION_BODIES.contains(&schema)
}

/// The top-level properties a schema declares for the Rust type: all but the `tenant_id` that
/// bodies tolerate and the gateway strips.
fn schema_properties(contract: &Contract) -> BTreeSet<&'static str> {
    let properties = definition(contract.schema)["properties"].as_object().expect("an object schema");
    let is_body = is_body(contract.schema);
    properties.keys().map(String::as_str).filter(|p| !(is_body && *p == "tenant_id")).collect()
}

#[test]
fn schema_properties_are_the_rust_fields() {
    for contract in TABLE {
        let in_rust: BTreeSet<&str> = (contract.fields)().into_iter().collect();
        assert!(!in_rust.is_empty(), "{}: no fields recorded", contract.schema.uri());
        assert_eq!(schema_properties(contract), in_rust, "{}", contract.schema.uri());
    }
}

/// Object definitions that are a part of a contract (an item of a list, a nested field) and
/// the Rust types they describe: (document, name under `$defs`, the type's wire names).
const PARTS: &[(&str, &str, FieldNames)] = &[
    ("api/run.json", "step", serde_names::<RunStep>),
    ("api/run.json", "competitor", serde_names::<Competitor>),
    ("api/approval.json", "policy_rule", serde_names::<PolicyRule>),
    ("api/memory.json", "hit", serde_names::<MemoryHit>),
    ("api/model_budget.json", "budget", serde_names::<ModelBudget>),
    ("api/tracking.json", "stored_event", serde_names::<StoredEvent>),
];

#[test]
fn properties_of_parts_are_the_rust_fields() {
    for (document, def, fields) in PARTS {
        let doc = schema::document(document).expect("shipped");
        let properties =
            doc["$defs"][def]["properties"].as_object().unwrap_or_else(|| panic!("{document}#/$defs/{def}"));
        let in_schema: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        let in_rust: BTreeSet<&str> = fields().into_iter().collect();
        assert!(!in_rust.is_empty(), "{document}#/$defs/{def}: no fields recorded");
        assert_eq!(in_schema, in_rust, "{document}#/$defs/{def}");
        assert_eq!(doc["$defs"][def]["additionalProperties"], false, "{document}#/$defs/{def} is open");
    }
}

/// Whether the Rust type takes `value` and gives back exactly the same JSON.
fn rust_keeps(contract: &Contract, value: &Value) -> bool {
    (contract.round_trip)(value).is_ok_and(|back| back == *value)
}

/// Schemas that require a field only when another has a given value; their Rust types leave it
/// optional and the code that handles them checks the rule again.
const CONDITIONAL: &[SchemaRef] = &[schema::EVENT, schema::DECISION_REQUEST];

#[test]
fn optionality_and_nullability_are_those_of_the_rust_types() {
    // A schema that accepts a field's absence or a null must mean a Rust type that keeps it
    // (an `Option` skipped when `None`, a `Patch`, or a nullable `Option` in a resource), and
    // the reverse. Starts from the union of a contract's examples.
    for contract in TABLE {
        let uri = contract.schema.uri();
        let mut full = serde_json::Map::new();
        for (file, value) in json_files(&examples_dir()) {
            if std::ptr::eq(contract_for(&file), contract) {
                for (key, field) in value.as_object().expect("examples are objects") {
                    full.entry(key.clone()).or_insert_with(|| field.clone());
                }
            }
        }
        let full = Value::Object(full);
        assert!(validate(contract.schema, &full).is_ok() && rust_keeps(contract, &full), "{uri}: {full}");
        for property in schema_properties(contract) {
            let mut without = full.clone();
            if without.as_object_mut().expect("object").remove(property).is_some() {
                let (in_schema, in_rust) =
                    (validate(contract.schema, &without).is_ok(), rust_keeps(contract, &without));
                // An event's type-specific rules, and a decision's artifact required for `edit`,
                // need fields the Rust type leaves optional.
                let conditional = CONDITIONAL.contains(&contract.schema) && !in_schema;
                assert!(
                    in_schema == in_rust || conditional,
                    "{uri} without {property}: schema {in_schema}, Rust {in_rust}"
                );
            }
            let mut null = full.clone();
            null[property] = Value::Null;
            let (in_schema, in_rust) = (validate(contract.schema, &null).is_ok(), rust_keeps(contract, &null));
            assert_eq!(in_schema, in_rust, "{uri} with {property}: null: schema {in_schema}, Rust {in_rust}");
        }
    }
}

/// Visits every schema object in `value`, with its JSON pointer.
fn walk<'a>(value: &'a Value, pointer: String, visit: &mut dyn FnMut(&str, &'a serde_json::Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            visit(&pointer, map);
            for (key, child) in map {
                // `enum`, `const` and `required` hold data, not schemas.
                if !matches!(key.as_str(), "enum" | "const" | "required") {
                    walk(child, format!("{pointer}/{key}"), visit);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, format!("{pointer}/{i}"), visit);
            }
        }
        _ => {}
    }
}

#[test]
fn every_property_of_an_object_schema_is_described() {
    // The schemas are the API reference published in the OpenAPI document.
    let mut missing = Vec::new();
    for (path, _) in schema::DOCUMENTS {
        let doc = schema::document(path).expect("shipped");
        walk(doc, String::new(), &mut |pointer, map| {
            let is_object = match map.get("type") {
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
                _ => false,
            };
            if !is_object {
                return;
            }
            let undescribed =
                |description: Option<&Value>| description.and_then(Value::as_str).is_none_or(str::is_empty);
            if undescribed(map.get("description")) {
                missing.push(format!("{path}#{pointer}"));
            }
            for (name, property) in map.get("properties").and_then(Value::as_object).into_iter().flatten() {
                if undescribed(property.get("description")) {
                    missing.push(format!("{path}#{pointer}/properties/{name}"));
                }
            }
        });
    }
    assert!(missing.is_empty(), "no description:\n{}", missing.join("\n"));
}

#[test]
fn bodies_and_resources_are_closed_and_bodies_tolerate_tenant_id() {
    let tenant_id = json!({
        "description": "Ignored: the tenant is always the one of the API key.",
        "readOnly": true
    });
    for schema in schema::ALL.iter() {
        let def = definition(*schema);
        assert_eq!(def["additionalProperties"], false, "{} is open", schema.uri());
        if is_body(*schema) {
            assert_eq!(def["properties"]["tenant_id"], tenant_id, "{}: tenant_id", schema.uri());
            assert!(
                def.get("required").and_then(Value::as_array).is_none_or(|r| !r.contains(&json!("tenant_id"))),
                "{}: tenant_id is required",
                schema.uri()
            );
        }
        if schema.definition == Some("update") {
            assert_eq!(schema::validate(*schema, &json!({})), Ok(()), "{}: {{}} is refused", schema.uri());
        }
    }
}

/// The values of the `enum` at `pointer` in `document`.
fn schema_enum(document: &str, pointer: &str) -> Vec<String> {
    let doc = schema::document(document).expect("shipped");
    doc.pointer(pointer)
        .and_then(|e| e.get("enum"))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{document}#{pointer} has no enum"))
        .iter()
        .map(|v| v.as_str().expect("string enum").to_owned())
        .collect()
}

/// A schema enum lists exactly the Rust enum's variants, in the same order, and each value
/// deserializes into the Rust enum and serializes back.
fn assert_enum_matches<T: DeserializeOwned + Serialize>(document: &str, pointer: &str) {
    let values = schema_enum(document, pointer);
    assert_eq!(values, serde_names::<T>(), "{document}#{pointer} and {}", std::any::type_name::<T>());
    for value in values {
        let back = round_trip::<T>(&json!(value));
        assert_eq!(back, Ok(json!(value)), "{document}#{pointer}: {value}");
    }
}

#[test]
fn schema_enums_are_the_rust_enums() {
    assert_enum_matches::<TenantStatus>("api/tenant.json", "/$defs/status");
    assert_enum_matches::<Role>("api/tenant.json", "/$defs/role");
    assert_eq!(schema_enum("api/tenant.json", "/$defs/role"), Role::ALL.map(|r| r.as_str().to_owned()).to_vec());
    assert_enum_matches::<BrandStatus>("api/brand_core.json", "/$defs/status");
    assert_enum_matches::<CampaignStatus>("api/campaign.json", "/$defs/status");
    assert_enum_matches::<Channel>("api/campaign.json", "/$defs/channel");
    assert_enum_matches::<LeadStatus>("api/lead.json", "/$defs/status");
    assert_enum_matches::<AgentName>("api/run.json", "/$defs/agent");
    assert_eq!(schema_enum("api/run.json", "/$defs/agent"), AgentName::ALL.map(|a| a.as_str().to_owned()).to_vec());
    assert_enum_matches::<RunStatus>("api/run.json", "/$defs/status");
    assert_enum_matches::<StepStatus>("api/run.json", "/$defs/step_status");
    assert_enum_matches::<ApprovalKind>("api/approval.json", "/$defs/kind");
    assert_enum_matches::<ApprovalStatus>("api/approval.json", "/$defs/status");
    assert_enum_matches::<Decision>("api/approval.json", "/$defs/decision_value");
    let roles = schema::document("api/approval.json").expect("shipped")["$defs"]["resource"]["properties"]
        ["allowed_roles"]["maxItems"]
        .clone();
    assert_eq!(roles, json!(Role::ALL.len()), "allowed_roles.maxItems is the number of roles");
    assert_enum_matches::<BudgetPeriod>("api/model_budget.json", "/$defs/period");
    let budgets =
        schema::document("api/model_budget.json").expect("shipped")["$defs"]["budgets"]["properties"]["data"].clone();
    let periods = json!(serde_names::<BudgetPeriod>().len());
    assert_eq!(budgets["minItems"], periods, "budgets.data.minItems is the number of periods");
    assert_eq!(budgets["maxItems"], periods, "budgets.data.maxItems is the number of periods");
    let channels = schema_enum("api/campaign.json", "/$defs/channel");
    let max_items = schema::document("api/campaign.json").expect("shipped")["$defs"]["channels"]["maxItems"].clone();
    assert_eq!(max_items, json!(channels.len()), "channels.maxItems is the number of channels");

    assert_eq!(
        schema_enum("events/event.schema.json", "/$defs/event_type"),
        EventType::ALL.map(|t| t.as_str().to_owned()).to_vec()
    );
    assert_enum_matches::<EventType>("events/event.schema.json", "/$defs/event_type");
    assert_eq!(
        schema_enum("events/event.schema.json", "/$defs/source"),
        EventSource::ALL.map(|s| s.as_str().to_owned()).to_vec()
    );
    assert_enum_matches::<EventSource>("events/event.schema.json", "/$defs/source");
}

#[test]
fn event_types_are_those_the_database_accepts() {
    let migration = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/20261125000001_foundation.sql");
    let sql = std::fs::read_to_string(&migration).unwrap_or_else(|e| panic!("read {}: {e}", migration.display()));
    let opening = "event_type text not null check (event_type in (";
    let start = sql.find(opening).expect("the events.event_type check") + opening.len();
    let list = &sql[start..];
    let list = &list[..list.find("))").expect("the end of the check")];
    let in_sql: Vec<&str> = list.split(',').map(|s| s.trim().trim_matches('\'')).collect();
    let in_rust: Vec<&str> = EventType::ALL.iter().map(EventType::as_str).collect();
    assert_eq!(in_rust, in_sql);
}

/// The values of the `check ({column} in (...))` constraint of `table` in a migration.
fn sql_check(migration: &str, table: &str, column: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations").join(migration);
    let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let create = format!("create table {table} (");
    let alter = format!("alter table {table} add column {column} ");
    let start = sql.find(&create).or_else(|| sql.find(&alter)).unwrap_or_else(|| panic!("{migration}: no {table}"));
    let statement = &sql[start..];
    let statement = &statement[..statement.find(";\n").unwrap_or(statement.len())];
    let opening = format!("check ({column} in (");
    let at = statement.find(&opening).unwrap_or_else(|| panic!("{migration}: no {table}.{column} check"));
    let list = &statement[at + opening.len()..];
    let list = &list[..list.find("))").expect("the end of the check")];
    list.split(',').map(|s| s.trim().trim_matches('\'').to_owned()).collect()
}

#[test]
fn run_approval_and_budget_enums_are_those_the_database_accepts() {
    const FOUNDATION: &str = "20261125000001_foundation.sql";
    let cases: [(&str, &str, Vec<&str>); 5] = [
        ("agent_runs", "agent", serde_names::<AgentName>()),
        ("agent_runs", "status", serde_names::<RunStatus>()),
        ("run_steps", "status", serde_names::<StepStatus>()),
        ("approvals", "kind", serde_names::<ApprovalKind>()),
        ("approvals", "status", serde_names::<ApprovalStatus>()),
    ];
    for (table, column, in_rust) in cases {
        assert_eq!(sql_check(FOUNDATION, table, column), in_rust, "{table}.{column}");
    }
    // The database also records `auto`, a decision an approval policy takes; nobody sends it.
    let decisions = sql_check("20261125000003_runtime.sql", "approvals", "decision");
    for decision in serde_names::<Decision>() {
        assert!(decisions.iter().any(|d| d == decision), "approvals.decision does not accept {decision}");
    }
    let periods = sql_check("20261125000002_model_usage.sql", "model_budgets", "period");
    assert_eq!(periods, serde_names::<BudgetPeriod>(), "model_budgets.period");
}

#[test]
fn schema_currencies_are_exactly_the_rust_currencies() {
    let letters = b'A'..=b'Z';
    for a in letters.clone() {
        for b in letters.clone() {
            for c in letters.clone() {
                let code = String::from_utf8(vec![a, b, c]).expect("ASCII");
                let body = json!({ "name": "x", "budget": { "amount": "1", "currency": code } });
                let in_schema = schema::validate(schema::CAMPAIGN_CREATE, &body).is_ok();
                let in_rust = Currency::parse(&code).is_ok();
                assert_eq!(in_schema, in_rust, "{code}: schema {in_schema}, Rust {in_rust}");
            }
        }
    }
}

#[test]
fn schema_amounts_are_the_amounts_money_parses() {
    // Non-negative amounts without leading zeros, up to 15 integer digits: beyond that Money's
    // i64 of minor units overflows for three-decimal currencies before numeric(20, 4) does.
    let amounts = [
        "0",
        "1",
        "10",
        "1.5",
        "1.50",
        "1.500",
        "1.5000",
        "0.07",
        "123456789012345",
        "123456789012345.99",
        "123456789012345.999",
    ];
    let codes = schema_enum("api/common.json", "/$defs/currency");
    for code in &codes {
        for amount in amounts {
            let money = json!({ "amount": amount, "currency": code });
            let body = json!({ "name": "x", "budget": money });
            let in_schema = schema::validate(schema::CAMPAIGN_CREATE, &body).is_ok();
            let in_rust = serde_json::from_value::<Money>(money).is_ok();
            assert_eq!(in_schema, in_rust, "{amount} {code}: schema {in_schema}, Rust {in_rust}");
        }
    }
}

/// Any JSON value, nested a few levels; keys and strings are often ones the schemas know.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        prop::sample::select(interesting_strings()).prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn interesting_strings() -> Vec<&'static str> {
    let mut strings: Vec<&'static str> = EventType::ALL.iter().map(EventType::as_str).collect();
    strings.extend(EventSource::ALL.iter().map(EventSource::as_str));
    strings.extend([
        "0193a5c6-4d5e-7061-9c73-8d9e0f1a2b34",
        "2026-12-02T19:44:11Z",
        "2026-12-02",
        "189.90",
        "USD",
        "JPY",
        "ann@example.com",
        "+14155550123",
        "trailmarta",
        "",
    ]);
    strings
}

/// Field names of events and leads, so that generated objects reach the deeper rules.
const KEYS: &[&str] = &[
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
    "amount",
    "currency",
    "order_id",
    "form_id",
    "score",
    "text",
    "ref",
    "utm",
    "click_ids",
    "screen",
    "width",
    "email",
    "phone",
    "name",
    "status",
    "attributes",
    "affiliate_id",
    "tenant_id",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(KEYS).prop_map(str::to_owned), any::<String>(),]
}

/// An object shaped like an event: a type and a source (usually valid) and arbitrary fields.
fn event_like() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(interesting_strings()),
        prop::sample::select(interesting_strings()),
        prop::collection::btree_map(key(), arbitrary_json(), 0..6),
    )
        .prop_map(|(event_type, source, rest)| {
            let mut object: serde_json::Map<String, Value> = rest.into_iter().collect();
            object.insert("type".into(), json!(event_type));
            object.insert("source".into(), json!(source));
            Value::Object(object)
        })
}

proptest! {
    // No regression files written into the source tree; a failure prints its minimal input.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn validating_an_event_never_panics(value in prop_oneof![arbitrary_json(), event_like()]) {
        let result = schema::validate(schema::EVENT, &value);
        if let Err(violation) = result {
            prop_assert!(!violation.message.is_empty());
        }
    }

    #[test]
    fn validating_a_lead_never_panics(fields in prop::collection::btree_map(key(), arbitrary_json(), 0..10)) {
        let value = Value::Object(fields.into_iter().collect());
        let result = schema::validate(schema::LEAD_CREATE, &value);
        if let Err(violation) = result {
            prop_assert!(!violation.message.is_empty());
        }
    }
}
