//! `GET /openapi.json`: the OpenAPI 3.1 document of the tenant API. Its schemas are the
//! contract JSON Schemas themselves (OpenAPI 3.1 speaks JSON Schema 2020-12), bundled into
//! `components.schemas`, so the document cannot disagree with what the edge validates.

use std::sync::LazyLock;

use axum::routing::get;
use axum::{Json, Router};
use flywheel_contracts::schema::{self, SchemaRef};
use serde_json::{Map, Value, json};

use crate::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(DOCUMENT.clone()) }))
}

/// What an operation answers on success.
enum Success {
    One(u16, SchemaRef),
    Page(SchemaRef),
    /// 204, no body.
    None,
}

/// One documented operation. Tests check that each is routed.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    id: &'static str,
    summary: &'static str,
    request: Option<SchemaRef>,
    success: Success,
    writes: bool,
    filters: &'static [(&'static str, &'static str)],
    /// Also accepts the tenant's public write key (`?key=`).
    write_key: bool,
}

const fn op(
    method: &'static str,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    request: Option<SchemaRef>,
    success: Success,
) -> Operation {
    let writes = request.is_some();
    Operation { method, path, id, summary, request, success, writes, filters: &[], write_key: false }
}

/// Every operation of the tenant API.
pub static OPERATIONS: &[Operation] = &[
    op("get", "/v1/tenant", "getTenant", "The caller's own tenant", None, Success::One(200, schema::TENANT)),
    op(
        "get",
        "/v1/brand_core",
        "listBrandCore",
        "List brand cores, newest first",
        None,
        Success::Page(schema::BRAND_CORE),
    ),
    op(
        "post",
        "/v1/brand_core",
        "createBrandCore",
        "Create a brand core",
        Some(schema::BRAND_CORE_CREATE),
        Success::One(201, schema::BRAND_CORE),
    ),
    op("get", "/v1/brand_core/{id}", "getBrandCore", "Get a brand core", None, Success::One(200, schema::BRAND_CORE)),
    op(
        "patch",
        "/v1/brand_core/{id}",
        "updateBrandCore",
        "Update a brand core (fields present are changed; version is bumped)",
        Some(schema::BRAND_CORE_UPDATE),
        Success::One(200, schema::BRAND_CORE),
    ),
    op("get", "/v1/personas", "listPersonas", "List personas, newest first", None, Success::Page(schema::PERSONA)),
    op(
        "post",
        "/v1/personas",
        "createPersona",
        "Create a persona",
        Some(schema::PERSONA_CREATE),
        Success::One(201, schema::PERSONA),
    ),
    op("get", "/v1/personas/{id}", "getPersona", "Get a persona", None, Success::One(200, schema::PERSONA)),
    op(
        "patch",
        "/v1/personas/{id}",
        "updatePersona",
        "Update a persona",
        Some(schema::PERSONA_UPDATE),
        Success::One(200, schema::PERSONA),
    ),
    Operation {
        filters: &[("status", "Only campaigns in this status")],
        ..op(
            "get",
            "/v1/campaigns",
            "listCampaigns",
            "List campaigns, newest first",
            None,
            Success::Page(schema::CAMPAIGN),
        )
    },
    op(
        "post",
        "/v1/campaigns",
        "createCampaign",
        "Create a campaign",
        Some(schema::CAMPAIGN_CREATE),
        Success::One(201, schema::CAMPAIGN),
    ),
    op("get", "/v1/campaigns/{id}", "getCampaign", "Get a campaign", None, Success::One(200, schema::CAMPAIGN)),
    op(
        "patch",
        "/v1/campaigns/{id}",
        "updateCampaign",
        "Update a campaign (null clears a nullable field)",
        Some(schema::CAMPAIGN_UPDATE),
        Success::One(200, schema::CAMPAIGN),
    ),
    Operation {
        filters: &[
            ("status", "Only leads in this status"),
            ("email", "Only the lead with this email (case-insensitive)"),
        ],
        ..op("get", "/v1/leads", "listLeads", "List leads, newest first", None, Success::Page(schema::LEAD))
    },
    op(
        "post",
        "/v1/leads",
        "createLead",
        "Create a lead (an email or a phone is required; the email is unique per tenant)",
        Some(schema::LEAD_CREATE),
        Success::One(201, schema::LEAD),
    ),
    op("get", "/v1/leads/{id}", "getLead", "Get a lead", None, Success::One(200, schema::LEAD)),
    op(
        "patch",
        "/v1/leads/{id}",
        "updateLead",
        "Update a lead (null clears a nullable field)",
        Some(schema::LEAD_UPDATE),
        Success::One(200, schema::LEAD),
    ),
    op(
        "post",
        "/v1/agents/{agent}/runs",
        "createRun",
        "Start a run of an agent (e.g. branding) with its input",
        Some(schema::RUN_CREATE),
        Success::One(201, schema::RUN),
    ),
    Operation {
        filters: &[("agent", "Only runs of this agent"), ("status", "Only runs in this status")],
        ..op("get", "/v1/runs", "listRuns", "List runs, newest first", None, Success::Page(schema::RUN))
    },
    op(
        "get",
        "/v1/runs/{id}",
        "getRun",
        "A run with its committed steps and their outputs",
        None,
        Success::One(200, schema::RUN_DETAIL),
    ),
    Operation {
        writes: true,
        ..op(
            "post",
            "/v1/runs/{id}/pause",
            "pauseRun",
            "Pause a queued or running run after its current step",
            None,
            Success::One(200, schema::RUN),
        )
    },
    Operation {
        writes: true,
        ..op("post", "/v1/runs/{id}/resume", "resumeRun", "Resume a paused run", None, Success::One(200, schema::RUN))
    },
    Operation {
        writes: true,
        ..op(
            "post",
            "/v1/runs/{id}/cancel",
            "cancelRun",
            "Cancel a run that has not finished; a step in flight is discarded",
            None,
            Success::One(200, schema::RUN),
        )
    },
    Operation {
        filters: &[("status", "Only approvals in this status, e.g. pending")],
        ..op(
            "get",
            "/v1/approvals",
            "listApprovals",
            "List approvals, newest first",
            None,
            Success::Page(schema::APPROVAL),
        )
    },
    op(
        "get",
        "/v1/approvals/{id}",
        "getApproval",
        "Get an approval and the artifact it proposes",
        None,
        Success::One(200, schema::APPROVAL),
    ),
    op(
        "post",
        "/v1/approvals/{id}/decision",
        "decideApproval",
        "Approve, reject, edit-and-approve or (owners) force an approval",
        Some(schema::DECISION_REQUEST),
        Success::One(200, schema::APPROVAL),
    ),
    op(
        "get",
        "/v1/approval_policies/{kind}",
        "getApprovalPolicy",
        "The tenant's auto-approval rule for a kind",
        None,
        Success::One(200, schema::APPROVAL_POLICY),
    ),
    op(
        "put",
        "/v1/approval_policies/{kind}",
        "putApprovalPolicy",
        "Set the auto-approval rule for a kind (owners; audited)",
        Some(schema::APPROVAL_POLICY_PUT),
        Success::One(200, schema::APPROVAL_POLICY),
    ),
    Operation {
        writes: true,
        ..op(
            "delete",
            "/v1/approval_policies/{kind}",
            "deleteApprovalPolicy",
            "Remove the rule: approvals of the kind wait for a person again (owners; audited)",
            None,
            Success::None,
        )
    },
    Operation {
        filters: &[
            ("q", "The text to search for (required)"),
            ("collection", "The memory collection, default brand"),
            ("limit", "1 to 50, default 5"),
        ],
        ..op(
            "get",
            "/v1/memory/search",
            "searchMemory",
            "The tenant's brand memory closest in meaning to q",
            None,
            Success::One(200, schema::MEMORY_SEARCH),
        )
    },
    op(
        "get",
        "/v1/model_budgets",
        "listModelBudgets",
        "The tenant's token budgets per day and month and what it has spent",
        None,
        Success::One(200, schema::MODEL_BUDGETS),
    ),
    op(
        "put",
        "/v1/model_budgets/{period}",
        "putModelBudget",
        "Set the tenant's token budget for a period (owners; audited)",
        Some(schema::MODEL_BUDGET_PUT),
        Success::One(200, schema::MODEL_BUDGETS),
    ),
    Operation {
        writes: true,
        ..op(
            "delete",
            "/v1/model_budgets/{period}",
            "deleteModelBudget",
            "Return to the node's default budget for a period (owners; audited)",
            None,
            Success::None,
        )
    },
    Operation {
        write_key: true,
        ..op(
            "post",
            "/v1/collect",
            "collectEvents",
            "Send a batch of tracking events (write key in ?key=, or a secret key); 202 once queued durably",
            Some(schema::COLLECT),
            Success::One(202, schema::COLLECTED),
        )
    },
    op(
        "get",
        "/v1/tracking",
        "getTracking",
        "The tenant's tracking settings and snippet",
        None,
        Success::One(200, schema::TRACKING),
    ),
    op(
        "patch",
        "/v1/tracking",
        "updateTracking",
        "Change allowed origins, cookieless mode or the rate limit (owners)",
        Some(schema::TRACKING_UPDATE),
        Success::One(200, schema::TRACKING),
    ),
    Operation {
        writes: true,
        ..op(
            "post",
            "/v1/tracking/rotate_key",
            "rotateWriteKey",
            "Replace the public write key; the old one stops working (owners)",
            None,
            Success::One(200, schema::TRACKING),
        )
    },
    Operation {
        filters: &[
            ("type", "Only events of this type"),
            ("from", "Only events at or after this time (RFC 3339)"),
            ("to", "Only events before this time (RFC 3339)"),
            ("visitor_id", "Only this visitor's events"),
            ("session_id", "Only this session's events"),
            ("lead_id", "Only events carrying this lead"),
            ("limit", "At most this many events (1 to 1000, default 100)"),
            ("cursor", "next_cursor of the previous page"),
        ],
        ..op(
            "get",
            "/v1/events",
            "listEvents",
            "Stored events, newest first",
            None,
            Success::One(200, schema::STORED_EVENTS),
        )
    },
    Operation {
        filters: &[
            ("limit", "At most this many events (1 to 1000, default 100)"),
            ("cursor", "next_cursor of the previous page"),
        ],
        ..op(
            "get",
            "/v1/leads/{id}/timeline",
            "leadTimeline",
            "A lead's events, with the anonymous history of the visitors linked to it",
            None,
            Success::One(200, schema::STORED_EVENTS),
        )
    },
];

static DOCUMENT: LazyLock<Value> = LazyLock::new(build);

/// `api/campaign.json` → `campaign`; `events/event.schema.json` → `event`.
fn stem(document: &str) -> &str {
    let file = document.rsplit('/').next().unwrap_or(document);
    file.split('.').next().unwrap_or(file)
}

fn component_name(r: &SchemaRef) -> String {
    match r.definition {
        Some(def) => format!("{}.{def}", stem(r.document)),
        None => stem(r.document).to_owned(),
    }
}

fn component_ref(r: &SchemaRef) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", component_name(r)) })
}

/// Rewrites `$ref`s of a contract document into references between components.
fn rewrite_refs(value: &mut Value, current_stem: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref") {
                let (doc, pointer) = target.split_once('#').unwrap_or((target.as_str(), ""));
                let doc_stem = if doc.is_empty() { current_stem.to_owned() } else { stem(doc).to_owned() };
                *target = match pointer.strip_prefix("/$defs/") {
                    Some(def) => format!("#/components/schemas/{doc_stem}.{def}"),
                    None => format!("#/components/schemas/{doc_stem}"),
                };
            }
            for v in map.values_mut() {
                rewrite_refs(v, current_stem);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, current_stem)),
        _ => {}
    }
}

fn components() -> Map<String, Value> {
    let mut out = Map::new();
    for (path, _) in schema::DOCUMENTS {
        let Some(doc) = schema::document(path) else { continue };
        let mut doc = doc.clone();
        let doc_stem = stem(path).to_owned();
        rewrite_refs(&mut doc, &doc_stem);
        let Value::Object(mut root) = doc else { continue };
        root.remove("$schema");
        root.remove("$id");
        if let Some(Value::Object(defs)) = root.remove("$defs") {
            for (name, def) in defs {
                out.insert(format!("{doc_stem}.{name}"), def);
            }
        }
        // A document with a schema at its root (the tracking event) is a component too.
        if root.keys().any(|k| k != "title" && k != "description") {
            out.insert(doc_stem, Value::Object(root));
        }
    }
    out
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": component_ref(&schema::ERROR)}},
    })
}

fn operation(o: &Operation) -> Value {
    let mut parameters = Vec::new();
    if o.path.contains("{id}") {
        parameters.push(
            json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}),
        );
    }
    if matches!(o.success, Success::Page(_)) {
        parameters.push(json!({"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}}));
        parameters.push(json!({"name": "cursor", "in": "query", "description": "next_cursor of the previous page", "schema": {"type": "string"}}));
    }
    for (name, description) in o.filters {
        parameters.push(json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}}));
    }
    let (status, body) = match &o.success {
        Success::None => (204, Value::Null),
        Success::One(status, r) => (*status, component_ref(r)),
        Success::Page(r) => (
            200,
            json!({
                "type": "object",
                "required": ["data", "next_cursor"],
                "properties": {
                    "data": {"type": "array", "items": component_ref(r)},
                    "next_cursor": {"type": ["string", "null"]},
                },
            }),
        ),
    };
    let mut responses = Map::new();
    let success = if body.is_null() {
        json!({"description": "Success"})
    } else {
        json!({"description": "Success", "content": {"application/json": {"schema": body}}})
    };
    responses.insert(status.to_string(), success);
    responses.insert("401".into(), error_response("Missing or invalid API key"));
    if ["{id}", "{agent}", "{kind}", "{period}"].iter().any(|p| o.path.contains(p)) {
        responses.insert("404".into(), error_response("No such record (or agent) for this tenant"));
    }
    if o.writes {
        responses.insert("400".into(), error_response("The body is not valid JSON"));
        responses.insert("403".into(), error_response("The key's role cannot write"));
        responses.insert("409".into(), error_response("A unique value is already taken; `field` names it"));
        responses.insert("413".into(), error_response("The body is too large"));
        responses.insert("415".into(), error_response("The body is not application/json"));
        responses.insert("422".into(), error_response("The body breaks the schema; `field` names the offending field"));
    }
    if matches!(o.success, Success::Page(_)) {
        responses.insert("422".into(), error_response("A query parameter is invalid; `field` names it"));
    }
    let mut out = json!({
        "operationId": o.id,
        "summary": o.summary,
        "parameters": parameters,
        "responses": responses,
        "security": if o.write_key { json!([{"apiKey": []}, {"writeKey": []}]) } else { json!([{"apiKey": []}]) },
    });
    if o.write_key {
        responses_extra(&mut out);
    }
    if let Some(r) = &o.request {
        out["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": component_ref(r)}}});
    }
    out
}

/// What the tracking edge answers beyond the usual: limits and back-pressure.
fn responses_extra(out: &mut Value) {
    out["responses"]["429"] = error_response("A rate limit (tenant events/s or client IP requests/s); see Retry-After");
    out["responses"]["503"] = error_response("The event backlog is full; retry after Retry-After seconds");
    out["responses"]["413"] =
        error_response("Over 1 MiB, over 500 events, or one event over 32 KB; `field` names the event");
}

fn build() -> Value {
    let mut paths = Map::new();
    for o in OPERATIONS {
        let entry = paths.entry(o.path.to_owned()).or_insert_with(|| json!({}));
        entry[o.method] = operation(o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Flywheel tenant API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every request is authenticated by an API key (`Authorization: Bearer fwk_…`) and scoped to \
                            that key's tenant; a tenant id in a body, query or header is ignored. Errors are \
                            `{\"error\": {\"code\", \"message\", \"field\"?}}`.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "A Flywheel API key"},
                "writeKey": {"type": "apiKey", "in": "query", "name": "key",
                             "description": "The tenant's public write key (fwp_…), for tracking only"},
            },
        },
    })
}

/// The document, for tests and tooling.
pub fn document() -> &'static Value {
    &DOCUMENT
}
