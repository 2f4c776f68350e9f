//! The admin gRPC control plane (`flywheel.admin.v1.Admin`, contracts/proto): nodes, shards,
//! tenants, runs and approvals across tenants, served by every node next to the HTTP edge.
//!
//! - Every call, server reflection included, passes the admin token check ([`auth`]): a
//!   missing or wrong `authorization: Bearer <token>` is `UNAUTHENTICATED`.
//! - Server reflection (v1 and v1alpha) describes the service, so `grpcurl` needs no .proto.
//! - TLS is optional ([`AdminTls`]): a server identity, and with a client CA mutual TLS, where
//!   a client without a certificate signed by that CA cannot even connect. The token is
//!   checked on top of either.
//! - Arguments are parsed and answers built in [`wire`]; every error becomes a status in one
//!   place, [`status`]: the caller's mistakes name the field, storage and runtime trouble is
//!   logged here and answered without its internals.
//! - Runs and approvals are changed through the node's runtime exactly as the HTTP edge does
//!   (same transitions, same audit), acting as the tenant's owner under the audit name
//!   `operator:admin-grpc`.

mod auth;
mod wire;

use std::future::Future;
use std::time::Duration;

use flywheel_contracts::admin::v1 as pb;
use flywheel_contracts::admin::v1::admin_server::{Admin, AdminServer};
use flywheel_contracts::api::approval::DecisionRequest;
use flywheel_contracts::ids::{ApprovalId, RunId};
use flywheel_contracts::{Role, Slug, TenantId};
use flywheel_storage::audit::Actor as AuditActor;
use flywheel_storage::runs::RunFilter;
use flywheel_storage::{Database, StorageError};
use flywheel_supervisor::RuntimeError;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::tls::{self, TlsError, TlsInput};
use crate::{Cluster, ClusterError};

/// Who the audit log says acted, for decisions and tenants made through this plane.
const OPERATOR: &str = "admin-grpc";

/// What the admin service works with.
#[derive(Clone)]
pub struct AdminState {
    pub cluster: Cluster,
    pub db: Database,
    /// The bearer token every call must carry (`FLYWHEEL_ADMIN_TOKEN`); empty refuses all.
    pub token: String,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").field("cluster", &self.cluster).field("token", &"<redacted>").finish()
    }
}

/// The admin plane's TLS: the server's identity and, for mutual TLS, the CA that client
/// certificates must chain to. Built (and checked) at start. Cheap to clone.
#[derive(Clone)]
pub struct AdminTls {
    config: ServerTlsConfig,
    mutual: bool,
}

impl std::fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTls").field("mutual", &self.mutual).finish_non_exhaustive()
    }
}

/// How long a client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl AdminTls {
    /// From the server's certificate chain and key and, for mutual TLS, the client CA bundle,
    /// all PEM.
    pub fn from_pem(cert_chain: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> Result<Self, TlsError> {
        tls::install_crypto_provider();
        // tonic parses these only when the server is built; parse them here for errors that
        // name the input.
        tls::certificates(cert_chain, TlsInput::CertificateChain)?;
        tls::private_key(key)?;
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(cert_chain, key)).timeout(TLS_HANDSHAKE_TIMEOUT);
        if let Some(ca) = client_ca {
            tls::roots(ca)?;
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        // Building a server's TLS acceptor checks that the key goes with the certificate.
        tonic::transport::Server::builder().tls_config(config.clone()).map_err(|e| TlsError {
            input: TlsInput::PrivateKey,
            message: format!("does not go with the certificate chain: {e}"),
        })?;
        Ok(Self { config, mutual: client_ca.is_some() })
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.mutual
    }
}

/// Serves the admin service and reflection on `listener` in plaintext until `shutdown`
/// completes, then finishes the calls in flight.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_tls(listener, state, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is set.
pub async fn serve_tls(
    listener: TcpListener,
    state: AdminState,
    tls: Option<AdminTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    if state.token.is_empty() {
        tracing::warn!("No admin token is configured (FLYWHEEL_ADMIN_TOKEN): every admin call will be refused.");
    }
    let auth = auth::AdminAuth::new(&state.token);
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(flywheel_contracts::admin::FILE_DESCRIPTOR_SET)
    };
    // The descriptor set is compiled into the binary (and a unit test builds both services
    // from it), so these fail only on a broken build; the admin service runs without them then.
    let v1 = reflection()
        .build_v1()
        .inspect_err(|e| tracing::error!(error = %e, "Server reflection (v1) is unavailable."))
        .ok()
        .map(|s| InterceptedService::new(s, auth.clone()));
    let v1alpha = reflection()
        .build_v1alpha()
        .inspect_err(|e| tracing::error!(error = %e, "Server reflection (v1alpha) is unavailable."))
        .ok()
        .map(|s| InterceptedService::new(s, auth.clone()));
    let service = AdminServer::with_interceptor(AdminService { state }, auth);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        tracing::info!(mutual = tls.mutual, "The admin plane speaks TLS.");
        builder = builder.tls_config(tls.config)?;
    }
    builder
        .add_service(service)
        .add_optional_service(v1)
        .add_optional_service(v1alpha)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// Why a call failed, before it becomes a [`Status`] in [`status`].
#[derive(Debug)]
enum Failure {
    /// The caller's argument `field` is wrong.
    Invalid {
        field: String,
        message: String,
    },
    /// The thing named does not exist (another tenant's run, a random id, an unknown tenant).
    NotFound(&'static str),
    Cluster(ClusterError),
}

impl From<ClusterError> for Failure {
    fn from(e: ClusterError) -> Self {
        Failure::Cluster(e)
    }
}

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        Failure::Cluster(ClusterError::Storage(e))
    }
}

impl From<RuntimeError> for Failure {
    fn from(e: RuntimeError) -> Self {
        Failure::Cluster(ClusterError::Runtime(e))
    }
}

impl Failure {
    fn is_not_found(&self) -> bool {
        matches!(
            self,
            Failure::NotFound(_)
                | Failure::Cluster(
                    ClusterError::NotFound(_)
                        | ClusterError::Storage(StorageError::NotFound)
                        | ClusterError::Runtime(RuntimeError::NotFound | RuntimeError::Storage(StorageError::NotFound))
                )
        )
    }
}

/// Says what was not found: `.map_err(about("run"))`.
fn about<E: Into<Failure>>(what: &'static str) -> impl FnOnce(E) -> Failure {
    move |e| {
        let failure = e.into();
        if failure.is_not_found() { Failure::NotFound(what) } else { failure }
    }
}

fn storage_status(e: StorageError) -> Status {
    match e {
        StorageError::NotFound => Status::not_found("not found"),
        StorageError::Conflict { field } => Status::already_exists(format!("{field}: already taken")),
        StorageError::Invalid { field, message } => Status::invalid_argument(format!("{field}: {message}")),
        StorageError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "Admin call failed: storage unavailable.");
            Status::unavailable("storage unavailable; retry later")
        }
        StorageError::Internal(detail) => {
            tracing::error!(error = %detail, "Admin call failed: storage error.");
            Status::internal("internal error")
        }
    }
}

/// The one place where errors become gRPC statuses.
fn status(e: Failure) -> Status {
    match e {
        Failure::Invalid { field, message } => Status::invalid_argument(format!("{field}: {message}")),
        Failure::NotFound(what) => Status::not_found(format!("{what} not found")),
        Failure::Cluster(e) => match e {
            ClusterError::NotFound(what) => Status::not_found(format!("{what} not found")),
            ClusterError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "Admin call failed: cluster unavailable.");
                Status::unavailable("cluster unavailable; retry later (details in this node's log)")
            }
            ClusterError::Storage(e) => storage_status(e),
            ClusterError::Runtime(e) => match e {
                RuntimeError::NotFound => Status::not_found("not found"),
                RuntimeError::Forbidden(message) => Status::permission_denied(message),
                RuntimeError::Invalid { field, message } => Status::invalid_argument(format!("{field}: {message}")),
                RuntimeError::Conflict { field, message } => Status::failed_precondition(format!("{field}: {message}")),
                RuntimeError::Unavailable(detail) => {
                    tracing::warn!(error = %detail, "Admin call failed: runtime unavailable.");
                    Status::unavailable("the node's runtime is unavailable; retry later")
                }
                RuntimeError::Storage(e) => storage_status(e),
            },
        },
    }
}

fn reply<T>(result: Result<T, Failure>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(status)
}

struct AdminService {
    state: AdminState,
}

#[derive(Debug, Clone, Copy)]
enum RunAction {
    Pause,
    Resume,
    Cancel,
}

impl AdminService {
    fn tenant(raw: &str) -> Result<TenantId, Failure> {
        wire::uuid("tenant_id", raw).map(TenantId::from_uuid)
    }

    /// Checks that the tenant exists (`NOT_FOUND` otherwise): an unknown tenant has no runs
    /// rather than an empty list of them.
    async fn existing_tenant(&self, raw: &str) -> Result<TenantId, Failure> {
        let tenant = Self::tenant(raw)?;
        let mut tx = self.state.db.begin(tenant).await?;
        flywheel_storage::tenants::current(&mut tx).await.map_err(about("tenant"))?;
        tx.commit().await?;
        Ok(tenant)
    }

    async fn health_report(&self) -> pb::HealthResponse {
        let up = matches!(tokio::time::timeout(Duration::from_secs(2), self.state.db.ping()).await, Ok(Ok(())));
        pb::HealthResponse {
            status: if up { "serving" } else { "not_serving" }.to_owned(),
            node_id: self.state.cluster.node_id().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            database: if up { "ok" } else { "unavailable" }.to_owned(),
        }
    }

    async fn nodes(&self) -> Result<pb::ListNodesResponse, Failure> {
        let nodes = self.state.cluster.nodes().await?;
        Ok(pb::ListNodesResponse { nodes: nodes.into_iter().map(wire::node).collect() })
    }

    async fn drain(&self, r: pb::DrainNodeRequest) -> Result<pb::DrainNodeResponse, Failure> {
        let node_id = wire::required("node_id", &r.node_id)?;
        self.state.cluster.drain(node_id).await?;
        tracing::info!(node_id, "Node asked to drain through the admin plane.");
        let nodes = self.state.cluster.nodes().await?;
        Ok(pb::DrainNodeResponse { node: nodes.into_iter().find(|n| n.record.node_id == node_id).map(wire::node) })
    }

    async fn shards(&self, r: pb::ListShardsRequest) -> Result<pb::ListShardsResponse, Failure> {
        let owner = r.owner_node.trim();
        let shards = self.state.cluster.shards().await?;
        Ok(pb::ListShardsResponse {
            shards: shards
                .into_iter()
                .filter(|l| owner.is_empty() || l.owner_node.as_deref() == Some(owner))
                .map(wire::shard)
                .collect(),
        })
    }

    async fn create(&self, r: pb::CreateTenantRequest) -> Result<pb::CreateTenantResponse, Failure> {
        let slug =
            Slug::parse(r.slug.trim()).map_err(|e| Failure::Invalid { field: "slug".into(), message: e.message })?;
        let created = self.state.db.create_tenant(&r.name, &slug, OPERATOR).await?;
        tracing::info!(tenant_id = %created.tenant_id, slug = %created.slug, "Tenant created through the admin plane.");
        Ok(pb::CreateTenantResponse {
            tenant_id: created.tenant_id.to_string(),
            name: created.name,
            slug: created.slug.to_string(),
            api_key: created.api_key,
            api_key_prefix: created.api_key_prefix,
            write_key: created.write_key,
        })
    }

    async fn tenants(&self, r: pb::ListTenantsRequest) -> Result<pb::ListTenantsResponse, Failure> {
        let (limit, after) = wire::tenant_page(r.page_size, &r.page_token)?;
        // One more than asked tells whether another page follows.
        let mut rows = self.state.db.admin_tenants(after.map(TenantId::from_uuid), limit + 1).await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_page_token =
            if more { rows.last().map(|t| t.id.to_string()).unwrap_or_default() } else { String::new() };
        Ok(pb::ListTenantsResponse { tenants: rows.into_iter().map(wire::tenant).collect(), next_page_token })
    }

    async fn set_tenant_active(&self, raw: &str, active: bool) -> Result<pb::Tenant, Failure> {
        let tenant = Self::tenant(raw)?;
        let summary = self.state.db.admin_set_tenant_active(tenant, active).await.map_err(about("tenant"))?;
        tracing::info!(tenant_id = %tenant, active, "Tenant status set through the admin plane.");
        Ok(wire::tenant(summary))
    }

    async fn tenant_tree(&self, r: pb::GetTenantTreeRequest) -> Result<pb::TenantTree, Failure> {
        let tenant = self.existing_tenant(&r.tenant_id).await?;
        let live = self.state.cluster.tenant_tree(tenant).await?;
        Ok(wire::tree(tenant.as_uuid(), live))
    }

    async fn runs(&self, r: pb::ListRunsRequest) -> Result<pb::ListRunsResponse, Failure> {
        let filter =
            RunFilter { agent: wire::agent(&r.agent)?, status: wire::word("status", &r.status, wire::RUN_STATUSES)? };
        let query = wire::list_query(r.page_size, &r.page_token)?;
        let tenant = self.existing_tenant(&r.tenant_id).await?;
        let mut tx = self.state.db.begin(tenant).await?;
        let (runs, next) = flywheel_storage::runs::list(&mut tx, &filter, query).await?;
        tx.commit().await?;
        Ok(pb::ListRunsResponse {
            runs: runs.into_iter().map(wire::run).collect(),
            next_page_token: next.unwrap_or_default(),
        })
    }

    /// Pauses, resumes or cancels a run through the runtime, with the HTTP API's transitions.
    async fn act_on_run(&self, tenant: &str, run: &str, action: RunAction) -> Result<pb::Run, Failure> {
        let tenant = Self::tenant(tenant)?;
        let run = RunId::from_uuid(wire::uuid("run_id", run)?);
        let runtime = self.state.cluster.runtime();
        let after = match action {
            RunAction::Pause => runtime.pause(tenant, run).await,
            RunAction::Resume => runtime.resume(tenant, run).await,
            RunAction::Cancel => runtime.cancel(tenant, run).await,
        }
        .map_err(about("run"))?;
        tracing::info!(tenant_id = %tenant, run_id = %run, ?action, "Run changed through the admin plane.");
        Ok(wire::run(after))
    }

    async fn approvals(&self, r: pb::ListApprovalsRequest) -> Result<pb::ListApprovalsResponse, Failure> {
        let status = wire::word("status", &r.status, wire::APPROVAL_STATUSES)?;
        let query = wire::list_query(r.page_size, &r.page_token)?;
        let tenant = self.existing_tenant(&r.tenant_id).await?;
        let mut tx = self.state.db.begin(tenant).await?;
        let (approvals, next) = flywheel_storage::approvals::list(&mut tx, status, query).await?;
        tx.commit().await?;
        Ok(pb::ListApprovalsResponse {
            approvals: approvals.into_iter().map(wire::approval).collect(),
            next_page_token: next.unwrap_or_default(),
        })
    }

    async fn decide(&self, r: pb::DecideApprovalRequest) -> Result<pb::Approval, Failure> {
        let tenant = Self::tenant(&r.tenant_id)?;
        let id = ApprovalId::from_uuid(wire::uuid("approval_id", &r.approval_id)?);
        let request = DecisionRequest {
            decision: wire::decision(&r.decision)?,
            artifact: wire::json_object("artifact_json", r.artifact_json.as_deref())?,
            reason: r.reason.filter(|s| !s.trim().is_empty()),
        };
        let actor = AuditActor::Operator(OPERATOR.to_owned());
        let decided = self.state.cluster.runtime().decide(tenant, Role::Owner, &actor, id, &request).await.map_err(
            |e| match e {
                // The runtime names the HTTP body's field; here it is `artifact_json`.
                RuntimeError::Invalid { field, message } if field == "artifact" => {
                    Failure::Invalid { field: "artifact_json".into(), message }
                }
                other => about("approval")(other),
            },
        )?;
        Ok(wire::approval(decided))
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn health(&self, _: Request<pb::HealthRequest>) -> Result<Response<pb::HealthResponse>, Status> {
        Ok(Response::new(self.health_report().await))
    }

    async fn list_nodes(&self, _: Request<pb::ListNodesRequest>) -> Result<Response<pb::ListNodesResponse>, Status> {
        reply(self.nodes().await)
    }

    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        reply(self.drain(request.into_inner()).await)
    }

    async fn list_shards(
        &self,
        request: Request<pb::ListShardsRequest>,
    ) -> Result<Response<pb::ListShardsResponse>, Status> {
        reply(self.shards(request.into_inner()).await)
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::CreateTenantResponse>, Status> {
        reply(self.create(request.into_inner()).await)
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        reply(self.tenants(request.into_inner()).await)
    }

    async fn suspend_tenant(&self, request: Request<pb::SuspendTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        reply(self.set_tenant_active(&request.into_inner().tenant_id, false).await)
    }

    async fn resume_tenant(&self, request: Request<pb::ResumeTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        reply(self.set_tenant_active(&request.into_inner().tenant_id, true).await)
    }

    async fn get_tenant_tree(
        &self,
        request: Request<pb::GetTenantTreeRequest>,
    ) -> Result<Response<pb::TenantTree>, Status> {
        reply(self.tenant_tree(request.into_inner()).await)
    }

    async fn list_runs(&self, request: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        reply(self.runs(request.into_inner()).await)
    }

    async fn pause_run(&self, request: Request<pb::PauseRunRequest>) -> Result<Response<pb::Run>, Status> {
        let r = request.into_inner();
        reply(self.act_on_run(&r.tenant_id, &r.run_id, RunAction::Pause).await)
    }

    async fn resume_run(&self, request: Request<pb::ResumeRunRequest>) -> Result<Response<pb::Run>, Status> {
        let r = request.into_inner();
        reply(self.act_on_run(&r.tenant_id, &r.run_id, RunAction::Resume).await)
    }

    async fn cancel_run(&self, request: Request<pb::CancelRunRequest>) -> Result<Response<pb::Run>, Status> {
        let r = request.into_inner();
        reply(self.act_on_run(&r.tenant_id, &r.run_id, RunAction::Cancel).await)
    }

    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        reply(self.approvals(request.into_inner()).await)
    }

    async fn decide_approval(
        &self,
        request: Request<pb::DecideApprovalRequest>,
    ) -> Result<Response<pb::Approval>, Status> {
        reply(self.decide(request.into_inner()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_builds_from_the_embedded_descriptors() {
        let builder = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(flywheel_contracts::admin::FILE_DESCRIPTOR_SET)
        };
        assert!(builder().build_v1().is_ok());
        assert!(builder().build_v1alpha().is_ok());
    }

    #[test]
    fn errors_map_to_codes_without_internals() {
        use tonic::Code;
        let invalid = status(Failure::Invalid { field: "tenant_id".into(), message: "not a UUID".into() });
        assert_eq!((invalid.code(), invalid.message()), (Code::InvalidArgument, "tenant_id: not a UUID"));
        let taken = status(StorageError::Conflict { field: "slug".into() }.into());
        assert_eq!((taken.code(), taken.message()), (Code::AlreadyExists, "slug: already taken"));
        let gone = status(about("run")(RuntimeError::Storage(StorageError::NotFound)));
        assert_eq!((gone.code(), gone.message()), (Code::NotFound, "run not found"));
        let finished = status(
            RuntimeError::Conflict { field: "status".into(), message: "a succeeded run cannot become paused".into() }
                .into(),
        );
        assert_eq!(finished.code(), Code::FailedPrecondition);
        let down = status(StorageError::Unavailable("connection refused to 10.0.0.7".into()).into());
        assert_eq!(down.code(), Code::Unavailable);
        assert!(!down.message().contains("10.0.0.7"));
        let broken = status(StorageError::Internal("relation \"x\" does not exist".into()).into());
        assert_eq!((broken.code(), broken.message()), (Code::Internal, "internal error"));
        let far = status(ClusterError::Unavailable("node n-2 did not answer: timeout at 10.0.0.8".into()).into());
        assert_eq!(far.code(), Code::Unavailable);
        assert!(!far.message().contains("10.0.0.8"));
        let node = status(ClusterError::NotFound("node n-1".into()).into());
        assert_eq!((node.code(), node.message()), (Code::NotFound, "node n-1 not found"));
    }
}
