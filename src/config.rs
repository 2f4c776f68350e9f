//! The node's configuration: one typed struct read from the environment (or flags), with
//! defaults that run against the local PostgreSQL and Redis that `scripts/setup` prepares.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use flywheel_contracts::Secret;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL of the application role (not a superuser, not an owner, no BYPASSRLS).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://flywheel_app:flywheel@127.0.0.1:5432/flywheel"
    )]
    pub database_url: String,

    /// PostgreSQL URL of the owner role, used only by `migrate` (and `demo`) to apply migrations.
    #[arg(
        long,
        env = "FLYWHEEL_OWNER_DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://flywheel_owner:flywheel@127.0.0.1:5432/flywheel"
    )]
    pub owner_database_url: String,

    /// Connections in the application pool.
    #[arg(long, env = "FLYWHEEL_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Redis URL.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,

    /// Prefix of every Redis key this deployment writes.
    #[arg(long, env = "FLYWHEEL_REDIS_NAMESPACE", default_value = "fw")]
    pub redis_namespace: String,

    /// Vector memory backend: `pgvector` (in PostgreSQL, under the same row-level security) or
    /// `qdrant` (needs QDRANT_URL).
    #[arg(long, env = "FLYWHEEL_VECTOR_BACKEND", default_value = "pgvector")]
    pub vector_backend: VectorBackend,

    /// Qdrant's gRPC endpoint, e.g. http://127.0.0.1:6334.
    #[arg(long, env = "QDRANT_URL")]
    pub qdrant_url: Option<String>,

    /// Qdrant API key, if the server requires one.
    #[arg(long, env = "QDRANT_API_KEY", hide_env_values = true)]
    pub qdrant_api_key: Option<String>,

    /// Address the HTTP edge listens on.
    #[arg(long, env = "FLYWHEEL_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Largest accepted request body in bytes (413 beyond).
    #[arg(long, env = "FLYWHEEL_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Months of event partitions the node keeps created ahead of time.
    #[arg(long, env = "FLYWHEEL_PARTITION_MONTHS_AHEAD", default_value_t = 3)]
    pub partition_months_ahead: u32,

    /// Language model: `offline` (built in, deterministic, no network) or `openai` (any
    /// OpenAI-compatible chat-completions server: OpenAI, Ollama, vLLM, llama.cpp server).
    #[arg(long, env = "FLYWHEEL_LLM_PROVIDER", default_value = "offline")]
    pub llm_provider: LlmProvider,

    /// Base URL of the OpenAI-compatible API, up to the version segment.
    #[arg(long, env = "FLYWHEEL_LLM_BASE_URL", default_value = "http://127.0.0.1:11434/v1")]
    pub llm_base_url: String,

    #[arg(long, env = "FLYWHEEL_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,

    #[arg(long, env = "FLYWHEEL_LLM_MODEL", default_value = "llama3.1")]
    pub llm_model: String,

    #[arg(long, env = "FLYWHEEL_LLM_TIMEOUT_SECS", default_value_t = 120)]
    pub llm_timeout_secs: u64,

    #[arg(long, env = "FLYWHEEL_LLM_MAX_RETRIES", default_value_t = 3)]
    pub llm_max_retries: u32,

    /// Ask OpenAI-compatible servers for a JSON object (`response_format`); turn off for
    /// servers that reject the field.
    #[arg(long, env = "FLYWHEEL_LLM_JSON_MODE", default_value_t = true, action = clap::ArgAction::Set)]
    pub llm_json_mode: bool,

    /// Extra attempts when an answer does not match the task's schema (the error is sent back).
    #[arg(long, env = "FLYWHEEL_LLM_SCHEMA_RETRIES", default_value_t = 2)]
    pub llm_schema_retries: u32,

    /// Tokens a tenant may spend per day unless it has its own budget (0: unlimited).
    #[arg(long, env = "FLYWHEEL_LLM_DAILY_TOKENS", default_value_t = 0)]
    pub llm_daily_tokens: u64,

    /// Tokens a tenant may spend per month unless it has its own budget (0: unlimited).
    #[arg(long, env = "FLYWHEEL_LLM_MONTHLY_TOKENS", default_value_t = 2_000_000)]
    pub llm_monthly_tokens: u64,

    /// Embeddings: `minilm` (all-MiniLM-L6-v2 run locally; `scripts/setup` installs it) or
    /// `openai` (an OpenAI-compatible /v1/embeddings service).
    #[arg(long, env = "FLYWHEEL_EMBEDDING_PROVIDER", default_value = "minilm")]
    pub embedding_provider: EmbeddingProvider,

    /// Directory of the local embedding model.
    #[arg(long, env = "FLYWHEEL_MODEL_DIR", default_value = flywheel_actors::embedding::DEFAULT_MODEL_DIR)]
    pub model_dir: PathBuf,

    #[arg(long, env = "FLYWHEEL_EMBEDDING_BASE_URL", default_value = "https://api.openai.com/v1")]
    pub embedding_base_url: String,

    #[arg(long, env = "FLYWHEEL_EMBEDDING_API_KEY", hide_env_values = true)]
    pub embedding_api_key: Option<String>,

    /// A 384-dimension model for `openai` embeddings (vector memory stores 384 dimensions).
    #[arg(long, env = "FLYWHEEL_EMBEDDING_MODEL", default_value = "text-embedding-3-small")]
    pub embedding_model: String,

    /// Seconds without work after which a tenant's supervisor is passivated.
    #[arg(long, env = "FLYWHEEL_TENANT_IDLE_SECS", default_value_t = 300)]
    pub tenant_idle_secs: u64,

    /// Seconds between sweeps that resume queued and running runs.
    #[arg(long, env = "FLYWHEEL_RUN_SWEEP_SECS", default_value_t = 15)]
    pub run_sweep_secs: u64,

    /// Restart intensity: a run fails when its step fails more than this many times within
    /// FLYWHEEL_RESTART_WINDOW_SECS.
    #[arg(long, env = "FLYWHEEL_MAX_RESTARTS", default_value_t = 3)]
    pub max_restarts: u32,

    #[arg(long, env = "FLYWHEEL_RESTART_WINDOW_SECS", default_value_t = 10)]
    pub restart_window_secs: u64,

    /// Hours an approval waits before it expires (0: never); an expired one can only be forced
    /// by an owner.
    #[arg(long, env = "FLYWHEEL_APPROVAL_TTL_HOURS", default_value_t = 0)]
    pub approval_ttl_hours: u64,

    /// The node's public base URL, used in the tracking snippet (`<script src=".../t.js">`).
    /// Without it, the snippet uses the host of the request that asked for it.
    #[arg(long, env = "FLYWHEEL_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Redis stream shards of the event pipeline (fixed for a deployment).
    #[arg(long, env = "FLYWHEEL_INGEST_SHARDS", default_value_t = 8)]
    pub ingest_shards: u16,

    /// Events one shard may hold before the tracking endpoints answer 503 (back-pressure).
    #[arg(long, env = "FLYWHEEL_INGEST_MAX_BACKLOG", default_value_t = 100_000)]
    pub ingest_max_backlog: u64,

    /// Event ingestors (consumers of the stream) on this node; 0 makes an edge-only node that
    /// accepts events for other nodes to store.
    #[arg(long, env = "FLYWHEEL_INGESTORS", default_value_t = 2)]
    pub ingestors: u16,

    /// The nice value (0 to 19) of the threads the ingestors run on, apart from the HTTP edge's:
    /// at a higher nice value the kernel gives a request waiting for a core a larger share than a
    /// batch being decoded and encoded. 0 treats both alike.
    #[arg(long, env = "FLYWHEEL_INGEST_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    pub ingest_nice: i32,

    /// Batches this node stores at once while its ingestors keep up, each keeping a PostgreSQL
    /// backend busy; batches that are behind (`--ingest-behind-ms`) are stored side by side
    /// regardless.
    #[arg(long, env = "FLYWHEEL_INGEST_STORES", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub ingest_stores: u16,

    /// A batch whose oldest event has waited this long in the stream is behind: stored at once,
    /// without waiting for one of the `--ingest-stores` permits.
    #[arg(long, env = "FLYWHEEL_INGEST_BEHIND_MS", default_value_t = 500)]
    pub ingest_behind_ms: u64,

    /// Largest batch an ingestor writes in one transaction, and the longest it waits to fill one.
    #[arg(long, env = "FLYWHEEL_INGEST_BATCH", default_value_t = 5_000)]
    pub ingest_batch: usize,
    #[arg(long, env = "FLYWHEEL_INGEST_LINGER_MS", default_value_t = 200)]
    pub ingest_linger_ms: u64,

    /// Seconds an entry may stay unacknowledged with another consumer before this node takes it
    /// over (that consumer died).
    #[arg(long, env = "FLYWHEEL_INGEST_CLAIM_IDLE_SECS", default_value_t = 30)]
    pub ingest_claim_idle_secs: u64,

    /// This node's stream consumer name prefix; keep it stable across restarts (default: the host name).
    #[arg(long, env = "FLYWHEEL_INGEST_CONSUMER")]
    pub ingest_consumer: Option<String>,

    /// Default events per second per tenant, and requests per second per client IP, on the tracking endpoints.
    #[arg(long, env = "FLYWHEEL_TENANT_EVENTS_PER_SEC", default_value_t = 2_000)]
    pub tenant_events_per_sec: u32,
    #[arg(long, env = "FLYWHEEL_IP_REQUESTS_PER_SEC", default_value_t = 100)]
    pub ip_requests_per_sec: u32,

    /// Tracking requests handled at once; more get 503 at once (bounds the node's memory).
    #[arg(long, env = "FLYWHEEL_TRACKING_MAX_IN_FLIGHT", default_value_t = 256)]
    pub tracking_max_in_flight: usize,

    /// Take the client IP from X-Forwarded-For (only behind a proxy that sets it).
    #[arg(long, env = "FLYWHEEL_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Log format: `text` for people, `json` for log pipelines. Levels come from RUST_LOG.
    #[arg(long, env = "FLYWHEEL_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// This node's id in the cluster: 1-64 letters, digits, `.`, `_` or `-` (generated when
    /// unset; give each node its own).
    #[arg(long, env = "FLYWHEEL_NODE_ID")]
    pub node_id: Option<String>,

    /// Where this node's cluster transport listens (e.g. 127.0.0.1:7400). Unset: no transport;
    /// the node still holds shard leases, and runs reach their owners through PostgreSQL.
    #[arg(long, env = "FLYWHEEL_CLUSTER_ADDR")]
    pub cluster_addr: Option<SocketAddr>,

    /// Cluster addresses of nodes to join at start, comma-separated. None: the node starts
    /// alone and owns every shard until others join.
    #[arg(long, env = "FLYWHEEL_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,

    /// The cluster transport's shared secret; required with FLYWHEEL_CLUSTER_ADDR.
    #[arg(long, env = "FLYWHEEL_CLUSTER_COOKIE", hide_env_values = true)]
    pub cluster_cookie: Option<String>,

    /// This node's certificate chain (PEM, leaf first) for the cluster transport. With
    /// FLYWHEEL_CLUSTER_TLS_KEY and FLYWHEEL_CLUSTER_TLS_CA the transport speaks mutual TLS;
    /// none of the three: plaintext, the cookie only.
    #[arg(long, env = "FLYWHEEL_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of FLYWHEEL_CLUSTER_TLS_CERT.
    #[arg(long, env = "FLYWHEEL_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,

    /// The CA bundle (PEM) every peer's certificate must chain to.
    #[arg(long, env = "FLYWHEEL_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,

    /// How long a shard lease lives unless renewed (renewed every third): `10s`, `2500ms`, or
    /// seconds. A dead node's tenants move within about this long.
    #[arg(long, env = "FLYWHEEL_LEASE_TTL", default_value = "10s", value_parser = parse_duration)]
    pub lease_ttl: Duration,

    /// Address of the admin gRPC control plane.
    #[arg(long, env = "FLYWHEEL_GRPC_ADDR", default_value = "127.0.0.1:7443")]
    pub grpc_addr: SocketAddr,

    /// The admin control plane's token; without it the plane is not served.
    #[arg(long, env = "FLYWHEEL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// The admin plane's certificate chain (PEM, leaf first); with FLYWHEEL_ADMIN_TLS_KEY the
    /// plane speaks TLS (the token is still required).
    #[arg(long, env = "FLYWHEEL_ADMIN_TLS_CERT")]
    pub admin_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of FLYWHEEL_ADMIN_TLS_CERT.
    #[arg(long, env = "FLYWHEEL_ADMIN_TLS_KEY")]
    pub admin_tls_key: Option<PathBuf>,

    /// A CA bundle (PEM): clients must present a certificate that chains to it (mutual TLS).
    #[arg(long, env = "FLYWHEEL_ADMIN_TLS_CLIENT_CA")]
    pub admin_tls_client_ca: Option<PathBuf>,
}

/// Names the variables of a TLS setting that must come together: `None` when none is set, an
/// error naming the missing ones when only some are.
fn all_or_none<'a, const N: usize>(
    setting: &str,
    vars: [(&'static str, Option<&'a PathBuf>); N],
) -> anyhow::Result<Option<[&'a Path; N]>> {
    let missing: Vec<&str> = vars.iter().filter(|(_, v)| v.is_none()).map(|(name, _)| *name).collect();
    if missing.len() == N {
        return Ok(None);
    }
    if !missing.is_empty() {
        let all: Vec<&str> = vars.iter().map(|(name, _)| *name).collect();
        anyhow::bail!("{setting} needs {} together; {} is missing", all.join(", "), missing.join(" and "));
    }
    let present: Vec<&Path> = vars.iter().filter_map(|(_, v)| v.map(PathBuf::as_path)).collect();
    Ok(present.try_into().ok())
}

fn read_pem(var: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{var}: read {}", path.display()))
}

/// Names the variable a [`TlsError`](flywheel_cluster::tls::TlsError) is about.
fn tls_error(e: flywheel_cluster::tls::TlsError, vars: [&str; 3]) -> anyhow::Error {
    use flywheel_cluster::tls::TlsInput;
    let var = match e.input {
        TlsInput::CertificateChain => vars[0],
        TlsInput::PrivateKey => vars[1],
        TlsInput::CaBundle => vars[2],
    };
    anyhow::anyhow!("{var}: {e}")
}

/// `10s`, `2500ms`, `1.5` (seconds).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| format!("{s:?} is not a duration like 10s or 500ms"))?;
    if !value.is_finite() || value <= 0.0 || value * unit > 86_400.0 {
        return Err(format!("{s:?} must be between 1ms and 24h"));
    }
    Ok(Duration::from_secs_f64(value * unit))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VectorBackend {
    Pgvector,
    Qdrant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LlmProvider {
    Offline,
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbeddingProvider {
    Minilm,
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// The cluster membership of this node.
    pub fn cluster(&self) -> anyhow::Result<flywheel_cluster::ClusterConfig> {
        let node_id = self.node_id.clone().unwrap_or_else(flywheel_cluster::generate_node_id);
        let valid = (1..=64).contains(&node_id.len())
            && node_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            anyhow::bail!("FLYWHEEL_NODE_ID must be 1-64 letters, digits, '.', '_' or '-'");
        }
        let cookie = match (&self.cluster_addr, &self.cluster_cookie) {
            (Some(_), None) => {
                anyhow::bail!("FLYWHEEL_CLUSTER_ADDR needs FLYWHEEL_CLUSTER_COOKIE, the cluster's secret")
            }
            (_, cookie) => cookie.clone().unwrap_or_default(),
        };
        Ok(flywheel_cluster::ClusterConfig {
            node_id,
            cluster_addr: self.cluster_addr,
            seeds: self.seeds.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect(),
            cookie,
            tls: self.transport_tls()?,
            grpc_addr: self.admin_token.as_ref().map(|_| self.grpc_addr.to_string()),
            http_addr: Some(self.http_addr.to_string()),
            lease_ttl: self.lease_ttl,
            max_moves_per_tick: 16,
        })
    }

    /// Mutual TLS of the cluster transport, when its three variables are set.
    fn transport_tls(&self) -> anyhow::Result<Option<flywheel_cluster::tls::TransportTls>> {
        const VARS: [&str; 3] = ["FLYWHEEL_CLUSTER_TLS_CERT", "FLYWHEEL_CLUSTER_TLS_KEY", "FLYWHEEL_CLUSTER_TLS_CA"];
        let Some([cert, key, ca]) = all_or_none(
            "Cluster transport TLS",
            [
                (VARS[0], self.cluster_tls_cert.as_ref()),
                (VARS[1], self.cluster_tls_key.as_ref()),
                (VARS[2], self.cluster_tls_ca.as_ref()),
            ],
        )?
        else {
            return Ok(None);
        };
        if self.cluster_addr.is_none() {
            tracing::warn!("FLYWHEEL_CLUSTER_TLS_* is set without FLYWHEEL_CLUSTER_ADDR: this node has no transport.");
        }
        let (cert, key, ca) = (read_pem(VARS[0], cert)?, read_pem(VARS[1], key)?, read_pem(VARS[2], ca)?);
        flywheel_cluster::tls::TransportTls::from_pem(&cert, &key, &ca).map(Some).map_err(|e| tls_error(e, VARS))
    }

    /// TLS of the admin plane, when its certificate and key are set (mutual with a client CA).
    pub fn admin_tls(&self) -> anyhow::Result<Option<flywheel_cluster::admin::AdminTls>> {
        const VARS: [&str; 3] = ["FLYWHEEL_ADMIN_TLS_CERT", "FLYWHEEL_ADMIN_TLS_KEY", "FLYWHEEL_ADMIN_TLS_CLIENT_CA"];
        let identity = all_or_none(
            "Admin plane TLS",
            [(VARS[0], self.admin_tls_cert.as_ref()), (VARS[1], self.admin_tls_key.as_ref())],
        )?;
        let Some([cert, key]) = identity else {
            if self.admin_tls_client_ca.is_some() {
                anyhow::bail!("{} needs {} and {} (the server's own certificate)", VARS[2], VARS[0], VARS[1]);
            }
            return Ok(None);
        };
        let (cert, key) = (read_pem(VARS[0], cert)?, read_pem(VARS[1], key)?);
        let client_ca = self.admin_tls_client_ca.as_deref().map(|ca| read_pem(VARS[2], ca)).transpose()?;
        flywheel_cluster::admin::AdminTls::from_pem(&cert, &key, client_ca.as_deref())
            .map(Some)
            .map_err(|e| tls_error(e, VARS))
    }

    pub fn database(&self) -> flywheel_storage::DatabaseConfig {
        let mut c = flywheel_storage::DatabaseConfig::new(self.database_url.clone());
        c.max_connections = self.db_max_connections;
        // A frozen node's transactions end soon after its leases would (see DatabaseConfig).
        c.idle_in_transaction_timeout = self.lease_ttl.max(Duration::from_secs(5));
        c
    }

    pub fn redis(&self) -> flywheel_storage::redis::RedisConfig {
        flywheel_storage::redis::RedisConfig::new(self.redis_url.clone(), self.redis_namespace.clone())
    }

    pub fn vector(&self) -> anyhow::Result<flywheel_storage::vector::VectorConfig> {
        use flywheel_storage::vector::VectorConfig;
        Ok(match self.vector_backend {
            VectorBackend::Pgvector => VectorConfig::Pgvector,
            VectorBackend::Qdrant => VectorConfig::Qdrant {
                url: self
                    .qdrant_url
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("FLYWHEEL_VECTOR_BACKEND=qdrant needs QDRANT_URL"))?,
                api_key: self.qdrant_api_key.clone().map(Secret::new),
            },
        })
    }

    pub fn owner_url(&self) -> Secret<String> {
        Secret::new(self.owner_database_url.clone())
    }

    pub fn runtime(&self) -> flywheel_supervisor::RuntimeConfig {
        flywheel_supervisor::RuntimeConfig {
            idle_timeout: Duration::from_secs(self.tenant_idle_secs),
            sweep_interval: Duration::from_secs(self.run_sweep_secs.max(1)),
            max_restarts: self.max_restarts,
            restart_window: Duration::from_secs(self.restart_window_secs),
            approval_ttl: (self.approval_ttl_hours > 0)
                .then(|| Duration::from_secs(self.approval_ttl_hours.saturating_mul(3600))),
            ..Default::default()
        }
    }

    pub fn model(&self) -> flywheel_actors::model::ModelConfig {
        use flywheel_actors::model::{ModelConfig, OpenAiConfig};
        match self.llm_provider {
            LlmProvider::Offline => ModelConfig::Offline,
            LlmProvider::Openai => ModelConfig::OpenAiCompatible(OpenAiConfig {
                base_url: self.llm_base_url.clone(),
                api_key: self.llm_api_key.clone().map(Secret::new),
                model: self.llm_model.clone(),
                timeout: Duration::from_secs(self.llm_timeout_secs),
                max_retries: self.llm_max_retries,
                json_mode: self.llm_json_mode,
                ..Default::default()
            }),
        }
    }

    pub fn budget(&self) -> flywheel_actors::model::BudgetConfig {
        flywheel_actors::model::BudgetConfig {
            default_monthly_tokens: (self.llm_monthly_tokens > 0).then_some(self.llm_monthly_tokens),
            default_daily_tokens: (self.llm_daily_tokens > 0).then_some(self.llm_daily_tokens),
            ..Default::default()
        }
    }

    pub fn structured(&self) -> flywheel_actors::model::StructuredConfig {
        flywheel_actors::model::StructuredConfig { max_retries: self.llm_schema_retries }
    }

    pub fn embedding(&self) -> flywheel_actors::embedding::EmbeddingConfig {
        use flywheel_actors::embedding::{EmbeddingConfig, OpenAiEmbeddingsConfig};
        match self.embedding_provider {
            EmbeddingProvider::Minilm => EmbeddingConfig::MiniLm { model_dir: self.model_dir.clone() },
            EmbeddingProvider::Openai => {
                let mut c = OpenAiEmbeddingsConfig::new(
                    self.embedding_base_url.clone(),
                    self.embedding_model.clone(),
                    flywheel_storage::vector::DIMENSIONS,
                );
                c.api_key = self.embedding_api_key.clone().map(Secret::new);
                // OpenAI's text-embedding-3 models shorten their vectors to what is asked.
                c.request_dimensions = self.embedding_model.starts_with("text-embedding-3");
                EmbeddingConfig::OpenAi(c)
            }
        }
    }

    pub fn gateway(&self) -> flywheel_gateway::GatewayConfig {
        let tracking = flywheel_gateway::TrackingConfig {
            stream: self.stream(),
            tenant_events_per_second: self.tenant_events_per_sec.max(1),
            ip_requests_per_second: self.ip_requests_per_sec.max(1),
            trust_forwarded_for: self.trust_forwarded_for,
            max_in_flight: self.tracking_max_in_flight.max(1),
            ..Default::default()
        };
        flywheel_gateway::GatewayConfig {
            max_body_bytes: self.max_body_bytes,
            public_url: self.public_url.clone(),
            tracking,
        }
    }

    pub fn stream(&self) -> flywheel_storage::event_stream::StreamConfig {
        flywheel_storage::event_stream::StreamConfig {
            shards: self.ingest_shards.max(1),
            max_backlog_per_shard: self.ingest_max_backlog.max(1),
        }
    }

    pub fn ingest(&self) -> flywheel_supervisor::IngestConfig {
        let consumer = self.ingest_consumer.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
        });
        flywheel_supervisor::IngestConfig {
            ingestors: self.ingestors.max(1),
            stores: self.ingest_stores,
            behind_after: Duration::from_millis(self.ingest_behind_ms),
            max_batch: self.ingest_batch.clamp(1, 50_000),
            max_linger: Duration::from_millis(self.ingest_linger_ms),
            claim_idle: Duration::from_secs(self.ingest_claim_idle_secs.max(1)),
            consumer_prefix: if consumer.is_empty() { "flywheel".into() } else { consumer },
            ..Default::default()
        }
    }
}
