//! `flywheel admin …`: the command line of the admin gRPC control plane
//! (`flywheel.admin.v1.Admin`), pointed at any node by `FLYWHEEL_ADMIN_ADDR` and authenticated
//! by `FLYWHEEL_ADMIN_TOKEN`; an `https://` address is reached over TLS, checked against
//! `--ca`, presenting `--cert`/`--key` when the plane asks for a client certificate. Answers
//! print as aligned tables, or with `--json` as the response messages themselves; a refused
//! call prints the status and its message and exits non-zero.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use flywheel_contracts::admin::v1 as pb;
use flywheel_contracts::admin::v1::admin_client::AdminClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The admin gRPC address of any node (`https://…` when the plane speaks TLS).
    #[arg(long, env = "FLYWHEEL_ADMIN_ADDR", default_value = "http://127.0.0.1:7443", global = true)]
    pub addr: String,
    /// The cluster's admin token.
    #[arg(long, env = "FLYWHEEL_ADMIN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA bundle (PEM) that signed the admin plane's certificate; needed for https://.
    #[arg(long, env = "FLYWHEEL_ADMIN_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for a plane that requires one (mutual TLS); with --key.
    #[arg(long, env = "FLYWHEEL_ADMIN_CLIENT_CERT", global = true)]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, env = "FLYWHEEL_ADMIN_CLIENT_KEY", global = true)]
    pub key: Option<PathBuf>,
    /// Print the answer as JSON (the response message) instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// The answering node and whether its database answers.
    Health,
    /// Every registered node: live or not, draining or not, shards held.
    Nodes,
    /// Ask a node to hand its shards over and take no more until it restarts.
    Drain { node_id: String },
    /// Every shard's lease.
    Shards {
        /// Only the shards this node holds.
        #[arg(long)]
        node: Option<String>,
    },
    /// Tenants: list (the default), create, suspend, resume.
    Tenants {
        #[command(subcommand)]
        command: Option<TenantsCommand>,
    },
    /// A tenant's live actor tree on the node that owns it.
    Tree { tenant_id: String },
    /// A tenant's agent runs.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// A tenant's approvals.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
}

#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Rows per page (the server caps it).
    #[arg(long, default_value_t = 50)]
    pub page_size: u32,
    /// The `next page` token a previous listing printed.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Tenants by id.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Create a tenant; prints its owner API key, shown only this once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: String,
    },
    /// Refuse the tenant's API keys and tracking until it is resumed.
    Suspend {
        tenant_id: String,
    },
    Resume {
        tenant_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first.
    List {
        tenant_id: String,
        /// queued, running, paused, awaiting_approval, succeeded, failed or cancelled.
        #[arg(long, default_value = "")]
        status: String,
        /// Only runs of this agent (branding, …).
        #[arg(long, default_value = "")]
        agent: String,
        #[command(flatten)]
        page: PageArgs,
    },
    Pause {
        tenant_id: String,
        run_id: String,
    },
    Resume {
        tenant_id: String,
        run_id: String,
    },
    Cancel {
        tenant_id: String,
        run_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecisionArg {
    Approve,
    Reject,
    /// Approve an edited artifact (`--artifact FILE`).
    Edit,
    /// Override a rule (an expired approval, for instance) and approve.
    Force,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Approvals, newest first.
    List {
        tenant_id: String,
        /// pending, approved, rejected, edited, forced or expired; all when unset.
        #[arg(long, default_value = "")]
        status: String,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Decide as the tenant's owner would (audited as operator admin-grpc).
    Decide {
        tenant_id: String,
        approval_id: String,
        decision: DecisionArg,
        #[arg(long)]
        reason: Option<String>,
        /// For `edit`: the artifact as JSON, read from FILE (`-` for standard input).
        #[arg(long)]
        artifact: Option<String>,
    },
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = AdminClient<InterceptedService<Channel, Bearer>>;

async fn connect(args: &AdminArgs) -> Result<Client> {
    let token = args.token.as_deref().filter(|t| !t.is_empty()).context("set FLYWHEEL_ADMIN_TOKEN (or --token)")?;
    let bearer: MetadataValue<Ascii> =
        format!("Bearer {token}").parse().context("the admin token must be printable ASCII")?;
    let addr = if args.addr.contains("://") { args.addr.clone() } else { format!("http://{}", args.addr) };
    let mut endpoint = Endpoint::from_shared(addr.clone())
        .with_context(|| format!("{addr} is not an address like http://127.0.0.1:7443"))?;
    if addr.starts_with("https://") {
        endpoint = endpoint.tls_config(client_tls(args)?).context("set up TLS to the admin plane")?;
    } else if args.ca.is_some() || args.cert.is_some() || args.key.is_some() {
        bail!("--ca, --cert and --key are for an https:// address; {addr} is plaintext");
    }
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .with_context(|| format!("reach the admin plane at {addr}"))?;
    Ok(AdminClient::with_interceptor(channel, Bearer(bearer)))
}

/// TLS to the admin plane: its certificate checked against --ca, and --cert/--key presented
/// when given.
fn client_tls(args: &AdminArgs) -> Result<ClientTlsConfig> {
    let read =
        |flag: &str, path: &PathBuf| std::fs::read(path).with_context(|| format!("{flag}: read {}", path.display()));
    let ca = args.ca.as_ref().context(
        "an https:// address needs --ca (FLYWHEEL_ADMIN_CA), the CA that signed the admin plane's certificate",
    )?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca", ca)?));
    match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(read("--cert", cert)?, read("--key", key)?));
        }
        (None, None) => {}
        (Some(_), None) => bail!("--cert (FLYWHEEL_ADMIN_CLIENT_CERT) needs --key (FLYWHEEL_ADMIN_CLIENT_KEY)"),
        (None, Some(_)) => bail!("--key (FLYWHEEL_ADMIN_CLIENT_KEY) needs --cert (FLYWHEEL_ADMIN_CLIENT_CERT)"),
    }
    Ok(tls)
}

/// A refused call: its code and message, as the server wrote them.
fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

pub async fn run(args: &AdminArgs, command: AdminCommand) -> Result<()> {
    let mut client = connect(args).await?;
    let out = Output { json: args.json };
    match command {
        AdminCommand::Health => {
            let h = client.health(pb::HealthRequest {}).await.map_err(refused)?.into_inner();
            out.print(&h, || {
                fields(&[
                    ("status", &h.status),
                    ("node", &h.node_id),
                    ("version", &h.version),
                    ("database", &h.database),
                ])
            })
        }
        AdminCommand::Nodes => {
            let r = client.list_nodes(pb::ListNodesRequest {}).await.map_err(refused)?.into_inner();
            out.print(&r, || nodes(&r.nodes))
        }
        AdminCommand::Drain { node_id } => {
            let r = client.drain_node(pb::DrainNodeRequest { node_id: node_id.clone() }).await.map_err(refused)?;
            let r = r.into_inner();
            out.print(&r, || format!("node {node_id} is draining\n{}", nodes(r.node.as_slice())))
        }
        AdminCommand::Shards { node } => {
            let request = pb::ListShardsRequest { owner_node: node.unwrap_or_default() };
            let r = client.list_shards(request).await.map_err(refused)?.into_inner();
            out.print(&r, || shards(&r.shards))
        }
        AdminCommand::Tenants { command } => tenants(&mut client, out, command).await,
        AdminCommand::Tree { tenant_id } => {
            let t = client.get_tenant_tree(pb::GetTenantTreeRequest { tenant_id }).await.map_err(refused)?;
            let t = t.into_inner();
            out.print(&t, || tree(&t))
        }
        AdminCommand::Runs { command } => runs(&mut client, out, command).await,
        AdminCommand::Approvals { command } => approvals(&mut client, out, command).await,
    }
}

async fn tenants(client: &mut Client, out: Output, command: Option<TenantsCommand>) -> Result<()> {
    let command =
        command.unwrap_or(TenantsCommand::List { page: PageArgs { page_size: 50, page_token: String::new() } });
    match command {
        TenantsCommand::List { page } => {
            let request = pb::ListTenantsRequest { page_size: page.page_size, page_token: page.page_token };
            let r = client.list_tenants(request).await.map_err(refused)?.into_inner();
            out.print(&r, || with_next(tenant_table(&r.tenants), &r.next_page_token))
        }
        TenantsCommand::Create { name, slug } => {
            let r = client.create_tenant(pb::CreateTenantRequest { name, slug }).await.map_err(refused)?;
            let r = r.into_inner();
            out.print(&r, || {
                let table = fields(&[
                    ("tenant", &r.tenant_id),
                    ("name", &r.name),
                    ("slug", &r.slug),
                    ("api key", &r.api_key),
                    ("write key", &r.write_key),
                ]);
                format!("{table}the owner API key is shown only this once")
            })
        }
        TenantsCommand::Suspend { tenant_id } => {
            let t = client.suspend_tenant(pb::SuspendTenantRequest { tenant_id }).await.map_err(refused)?;
            let t = t.into_inner();
            out.print(&t, || tenant_table(std::slice::from_ref(&t)))
        }
        TenantsCommand::Resume { tenant_id } => {
            let t = client.resume_tenant(pb::ResumeTenantRequest { tenant_id }).await.map_err(refused)?;
            let t = t.into_inner();
            out.print(&t, || tenant_table(std::slice::from_ref(&t)))
        }
    }
}

async fn runs(client: &mut Client, out: Output, command: RunsCommand) -> Result<()> {
    let run = match command {
        RunsCommand::List { tenant_id, status, agent, page } => {
            let request = pb::ListRunsRequest {
                tenant_id,
                status,
                agent,
                page_size: page.page_size,
                page_token: page.page_token,
            };
            let r = client.list_runs(request).await.map_err(refused)?.into_inner();
            return out.print(&r, || with_next(run_table(&r.runs), &r.next_page_token));
        }
        RunsCommand::Pause { tenant_id, run_id } => client.pause_run(pb::PauseRunRequest { tenant_id, run_id }).await,
        RunsCommand::Resume { tenant_id, run_id } => {
            client.resume_run(pb::ResumeRunRequest { tenant_id, run_id }).await
        }
        RunsCommand::Cancel { tenant_id, run_id } => {
            client.cancel_run(pb::CancelRunRequest { tenant_id, run_id }).await
        }
    };
    let run = run.map_err(refused)?.into_inner();
    out.print(&run, || run_table(std::slice::from_ref(&run)))
}

async fn approvals(client: &mut Client, out: Output, command: ApprovalsCommand) -> Result<()> {
    match command {
        ApprovalsCommand::List { tenant_id, status, page } => {
            let request =
                pb::ListApprovalsRequest { tenant_id, status, page_size: page.page_size, page_token: page.page_token };
            let r = client.list_approvals(request).await.map_err(refused)?.into_inner();
            out.print(&r, || with_next(approval_table(&r.approvals), &r.next_page_token))
        }
        ApprovalsCommand::Decide { tenant_id, approval_id, decision, reason, artifact } => {
            let decision = match decision {
                DecisionArg::Approve => "approve",
                DecisionArg::Reject => "reject",
                DecisionArg::Edit => "edit",
                DecisionArg::Force => "force",
            };
            let artifact_json = artifact.as_deref().map(read_text).transpose()?;
            let request = pb::DecideApprovalRequest {
                tenant_id,
                approval_id,
                decision: decision.to_owned(),
                reason,
                artifact_json,
            };
            let a = client.decide_approval(request).await.map_err(refused)?.into_inner();
            out.print(&a, || approval_table(std::slice::from_ref(&a)))
        }
    }
}

fn read_text(source: &str) -> Result<String> {
    if source == "-" {
        std::io::read_to_string(std::io::stdin()).context("read standard input")
    } else {
        std::fs::read_to_string(source).with_context(|| format!("read {source}"))
    }
}

/// Tables for people, the message itself for scripts.
#[derive(Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn print<T: serde::Serialize>(self, message: &T, table: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(message).context("encode the answer as JSON")?);
        } else {
            let text = table();
            println!("{}", text.trim_end());
        }
        Ok(())
    }
}

/// Columns padded to their widest cell (counted in characters), two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            s.push_str(cell);
            if i < last {
                s.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `key  value` lines, aligned.
fn fields(pairs: &[(&str, &str)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k:<width$}  {v}\n")).collect()
}

fn with_next(table: String, next: &str) -> String {
    if next.is_empty() { table } else { format!("{table}next page: --page-token {next}\n") }
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_owned()
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

fn nodes(nodes: &[pb::Node]) -> String {
    table(
        &["NODE", "LIVE", "DRAINING", "SHARDS", "GRPC", "HTTP", "HEARTBEAT"],
        nodes
            .iter()
            .map(|n| {
                vec![
                    n.node_id.clone(),
                    yes(n.live),
                    yes(n.draining),
                    n.shards.to_string(),
                    or_dash(n.grpc_addr.as_deref()),
                    or_dash(n.http_addr.as_deref()),
                    n.heartbeat_at.clone(),
                ]
            })
            .collect(),
    )
}

fn shards(shards: &[pb::Shard]) -> String {
    table(
        &["SHARD", "OWNER", "EPOCH", "EXPIRES", "EXPIRED"],
        shards
            .iter()
            .map(|s| {
                vec![
                    s.shard.to_string(),
                    or_dash(s.owner_node.as_deref()),
                    s.epoch.to_string(),
                    s.expires_at.clone(),
                    yes(s.expired),
                ]
            })
            .collect(),
    )
}

fn tenant_table(tenants: &[pb::Tenant]) -> String {
    table(
        &["ID", "SLUG", "STATUS", "CREATED", "NAME"],
        tenants
            .iter()
            .map(|t| vec![t.id.clone(), t.slug.clone(), t.status.clone(), t.created_at.clone(), t.name.clone()])
            .collect(),
    )
}

fn tree(t: &pb::TenantTree) -> String {
    if !t.active {
        return format!("tenant {} is not active on any node (no work in progress)\n", t.tenant_id);
    }
    let head = fields(&[
        ("tenant", &t.tenant_id),
        ("node", t.owner_node.as_deref().unwrap_or("-")),
        ("rejected", &t.rejected_messages.to_string()),
    ]);
    let agents = table(
        &["AGENT", "RUNS"],
        t.agents
            .iter()
            .map(|a| vec![a.agent.clone(), if a.run_ids.is_empty() { "-".into() } else { a.run_ids.join(", ") }])
            .collect(),
    );
    format!("{head}\n{agents}")
}

fn run_table(runs: &[pb::Run]) -> String {
    table(
        &["ID", "AGENT", "STATUS", "STEP", "CREATED", "ERROR"],
        runs.iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    r.agent.clone(),
                    r.status.clone(),
                    r.cursor.to_string(),
                    r.created_at.clone(),
                    or_dash(r.error.as_deref()),
                ]
            })
            .collect(),
    )
}

fn approval_table(approvals: &[pb::Approval]) -> String {
    table(
        &["ID", "KIND", "STATUS", "RUN", "CREATED", "DECIDED BY"],
        approvals
            .iter()
            .map(|a| {
                vec![
                    a.id.clone(),
                    a.kind.clone(),
                    a.status.clone(),
                    or_dash(a.run_id.as_deref()),
                    a.created_at.clone(),
                    or_dash(a.decided_by.as_deref()),
                ]
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let t = table(&["A", "LONG HEADER", "Z"], vec![vec!["wide cell".into(), "x".into(), "é".into()]]);
        assert_eq!(t, "A          LONG HEADER  Z\nwide cell  x            é\n");
    }

    #[test]
    fn fields_align_their_keys() {
        assert_eq!(fields(&[("node", "n-1"), ("database", "ok")]), "node      n-1\ndatabase  ok\n");
    }
}
