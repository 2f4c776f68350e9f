//! Between the admin wire types (`flywheel_contracts::admin::v1`) and the domain: arguments
//! parsed into typed values (a bad one is an [`Failure::Invalid`] naming its field), answers
//! built from records. Timestamps are RFC 3339 in UTC with milliseconds; JSON payloads travel as
//! JSON text.

use chrono::{DateTime, SecondsFormat, Utc};
use flywheel_contracts::admin::v1 as pb;
use flywheel_contracts::api::JsonObject;
use flywheel_contracts::api::approval::{Approval, Decision};
use flywheel_contracts::api::run::{AgentName, Run};
use flywheel_contracts::api::tenant::TenantStatus;
use flywheel_storage::ListQuery;
use flywheel_storage::cluster::{LeaseRecord, NodeRecord};
use flywheel_storage::tenants::TenantSummary;
use flywheel_supervisor::TenantTree;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::Failure;
use crate::NodeStatus;

/// Tenants per page when the caller does not say, and at most.
pub(super) const TENANT_PAGE_DEFAULT: u32 = 50;
pub(super) const TENANT_PAGE_MAX: u32 = 500;

fn invalid(field: &str, message: impl Into<String>) -> Failure {
    Failure::Invalid { field: field.to_owned(), message: message.into() }
}

/// A required UUID argument.
pub(super) fn uuid(field: &str, raw: &str) -> Result<Uuid, Failure> {
    if raw.trim().is_empty() {
        return Err(invalid(field, "required"));
    }
    Uuid::parse_str(raw.trim()).map_err(|_| invalid(field, "not a UUID"))
}

/// A required, non-blank text argument.
pub(super) fn required<'a>(field: &str, raw: &'a str) -> Result<&'a str, Failure> {
    let value = raw.trim();
    if value.is_empty() { Err(invalid(field, "required")) } else { Ok(value) }
}

/// An optional snake_case word of one of the API's enums (`status`, `decision`); empty is none.
pub(super) fn word<T: DeserializeOwned>(field: &str, raw: &str, allowed: &str) -> Result<Option<T>, Failure> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map(Some)
        .map_err(|_| invalid(field, format!("{value:?} is not one of {allowed}")))
}

pub(super) const RUN_STATUSES: &str = "queued, running, paused, awaiting_approval, succeeded, failed, cancelled";
pub(super) const APPROVAL_STATUSES: &str = "pending, approved, rejected, edited, forced, expired";
pub(super) const DECISIONS: &str = "approve, reject, edit, force";

pub(super) fn agent(raw: &str) -> Result<Option<AgentName>, Failure> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    AgentName::parse(value).map(Some).ok_or_else(|| {
        let names: Vec<&str> = AgentName::ALL.iter().map(|a| a.as_str()).collect();
        invalid("agent", format!("{value:?} is not one of {}", names.join(", ")))
    })
}

pub(super) fn decision(raw: &str) -> Result<Decision, Failure> {
    word("decision", raw, DECISIONS)?.ok_or_else(|| invalid("decision", format!("required: one of {DECISIONS}")))
}

/// An optional JSON object given as text.
pub(super) fn json_object(field: &str, raw: Option<&str>) -> Result<Option<JsonObject>, Failure> {
    raw.map(|text| serde_json::from_str::<JsonObject>(text).map_err(|_| invalid(field, "not a JSON object")))
        .transpose()
}

/// `page_token`: empty for the first page, else the UUID a previous answer gave.
fn page_token(raw: &str) -> Result<Option<Uuid>, Failure> {
    if raw.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(raw).map(Some).map_err(|_| invalid("page_token", "not a token from a previous page"))
}

/// A page of runs or approvals (newest first; the storage layer caps the size).
pub(super) fn list_query(page_size: u32, token: &str) -> Result<ListQuery, Failure> {
    let limit = if page_size == 0 { ListQuery::DEFAULT_LIMIT } else { page_size.min(ListQuery::MAX_LIMIT) };
    Ok(ListQuery { limit, after: page_token(token)? })
}

/// A page of tenants (by id): its size and the id to start after.
pub(super) fn tenant_page(page_size: u32, token: &str) -> Result<(u32, Option<Uuid>), Failure> {
    let limit = if page_size == 0 { TENANT_PAGE_DEFAULT } else { page_size.min(TENANT_PAGE_MAX) };
    Ok((limit, page_token(token)?))
}

pub(super) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn json(object: JsonObject) -> String {
    serde_json::Value::Object(object).to_string()
}

pub(super) fn node(status: NodeStatus) -> pb::Node {
    let NodeStatus { record, shards } = status;
    let NodeRecord { node_id, cluster_addr, grpc_addr, http_addr, draining, started_at, heartbeat_at, left_at, live } =
        record;
    pb::Node {
        node_id,
        cluster_addr,
        grpc_addr,
        http_addr,
        live,
        draining,
        shards: u32::try_from(shards).unwrap_or(u32::MAX),
        started_at: time(started_at),
        heartbeat_at: time(heartbeat_at),
        left_at: left_at.map(time),
    }
}

pub(super) fn shard(lease: LeaseRecord) -> pb::Shard {
    pb::Shard {
        shard: lease.shard,
        owner_node: lease.owner_node,
        epoch: lease.epoch,
        expires_at: time(lease.expires_at),
        acquired_at: lease.acquired_at.map(time),
        expired: lease.expired,
    }
}

pub(super) fn tenant(t: TenantSummary) -> pb::Tenant {
    let status = match t.status {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
        TenantStatus::Deleted => "deleted",
    };
    pb::Tenant {
        id: t.id.to_string(),
        name: t.name,
        slug: t.slug,
        status: status.to_owned(),
        created_at: time(t.created_at),
    }
}

pub(super) fn tree(tenant: Uuid, live: Option<(String, TenantTree)>) -> pb::TenantTree {
    match live {
        None => pb::TenantTree { tenant_id: tenant.to_string(), active: false, ..Default::default() },
        Some((owner, tree)) => pb::TenantTree {
            tenant_id: tenant.to_string(),
            active: true,
            owner_node: Some(owner),
            agents: tree
                .agents
                .into_iter()
                .map(|(agent, runs)| pb::AgentTree {
                    agent: agent.as_str().to_owned(),
                    run_ids: runs.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            rejected_messages: tree.rejected_messages,
        },
    }
}

pub(super) fn run(r: Run) -> pb::Run {
    pb::Run {
        id: r.id.to_string(),
        tenant_id: r.tenant_id.to_string(),
        agent: r.agent.as_str().to_owned(),
        status: r.status.as_str().to_owned(),
        input_json: json(r.input),
        cursor: r.cursor,
        error: r.error,
        requested_by: r.requested_by,
        started_at: r.started_at.map(time),
        finished_at: r.finished_at.map(time),
        created_at: time(r.created_at),
        updated_at: time(r.updated_at),
    }
}

pub(super) fn approval(a: Approval) -> pb::Approval {
    pb::Approval {
        id: a.id.to_string(),
        tenant_id: a.tenant_id.to_string(),
        run_id: a.run_id.map(|r| r.to_string()),
        step_name: a.step_name,
        kind: a.kind.as_str().to_owned(),
        status: a.status.as_str().to_owned(),
        artifact_json: json(a.artifact),
        decided_artifact_json: a.decided_artifact.map(json),
        allowed_roles: a.allowed_roles.iter().map(|r| r.as_str().to_owned()).collect(),
        expires_at: a.expires_at.map(time),
        decided_by: a.decided_by,
        decided_at: a.decided_at.map(time),
        reason: a.reason,
        created_at: time(a.created_at),
        updated_at: time(a.updated_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flywheel_contracts::api::run::RunStatus;

    fn message(f: Failure) -> String {
        match f {
            Failure::Invalid { field, message } => format!("{field}: {message}"),
            other => panic!("not an argument error: {other:?}"),
        }
    }

    #[test]
    fn arguments_name_their_field() {
        assert_eq!(message(uuid("tenant_id", "nope").expect_err("bad")), "tenant_id: not a UUID");
        assert_eq!(message(uuid("run_id", " ").expect_err("bad")), "run_id: required");
        assert_eq!(
            message(word::<RunStatus>("status", "done", RUN_STATUSES).expect_err("bad")),
            format!("status: \"done\" is not one of {RUN_STATUSES}")
        );
        assert_eq!(
            word::<RunStatus>("status", "awaiting_approval", RUN_STATUSES).ok(),
            Some(Some(RunStatus::AwaitingApproval))
        );
        assert_eq!(message(list_query(10, "x").expect_err("bad")), "page_token: not a token from a previous page");
        assert!(message(decision("").expect_err("bad")).starts_with("decision: required"));
        assert_eq!(
            message(json_object("artifact_json", Some("[1]")).expect_err("bad")),
            "artifact_json: not a JSON object"
        );
        assert!(message(agent("robot").expect_err("bad")).starts_with("agent: \"robot\" is not one of branding"));
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(list_query(0, "").map(|q| q.limit).ok(), Some(ListQuery::DEFAULT_LIMIT));
        assert_eq!(list_query(10_000, "").map(|q| q.limit).ok(), Some(ListQuery::MAX_LIMIT));
        assert_eq!(tenant_page(0, "").map(|p| p.0).ok(), Some(TENANT_PAGE_DEFAULT));
        assert_eq!(tenant_page(10_000, "").map(|p| p.0).ok(), Some(TENANT_PAGE_MAX));
    }
}
