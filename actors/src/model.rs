//! Language models: the one trait agents call ([`LanguageModel`]), what a call carries
//! ([`ModelRequest`], [`ModelResponse`]), how it fails ([`ModelError`]), and the provider stack a
//! node builds from its configuration ([`from_config`]).
//!
//! The stack, from the outside in:
//!
//! ```text
//! Structured        validates the answer against the request's JSON Schema; on a bad answer asks
//!   │               again with the validation error appended (2 retries by default)
//!   └ Budgeted      per call: refuses before the call if the tenant's budget cannot cover its
//!       │           worst case, reserves it, settles the tokens the provider reported
//!       └ Provider  OfflineModel (default: no network, deterministic) or OpenAiCompatible
//! ```
//!
//! Budgeting sits *inside* validation so that every attempt, retries included, is checked and
//! recorded on its own: a retry is a fresh spend, and a run stops at the first call the budget
//! cannot cover, not after it.
//!
//! Text from outside the tenant (competitor pages, comments, form fields, seed materials) travels
//! in [`ModelRequest::untrusted`] and only ever reaches a model through [`prompt`], which quotes
//! and fences it as data. No provider offers the model tools or function calls, and an answer is
//! only ever data checked against a schema: text cannot trigger a call or a decision.

pub mod branding;
pub mod budget;
pub mod offline;
pub mod openai;
pub mod prompt;
pub mod structured;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use flywheel_contracts::TenantId;
use flywheel_contracts::ids::RunId;
use flywheel_storage::model_usage::BudgetPeriod;
use flywheel_storage::{Database, StorageError};
use serde_json::Value;

pub use budget::{BudgetConfig, Budgeted};
pub use offline::OfflineModel;
pub use openai::{OpenAiCompatible, OpenAiConfig};
pub use structured::{Structured, StructuredConfig};

/// What is asked of a model, named for accounting, logs and the offline provider: lowercase
/// words separated by dots (`branding.research`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Task(&'static str);

impl Task {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }
    pub const fn as_str(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Text that came from outside the tenant's trusted inputs: a competitor's page, a seed
/// document, a comment, a form field. It is material to analyse, never instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrustedText {
    /// Where it came from, for the model's benefit (`competitor: Acme`, `seed material 2`).
    pub source: String,
    pub text: String,
}

impl UntrustedText {
    pub fn new(source: impl Into<String>, text: impl Into<String>) -> Self {
        Self { source: source.into(), text: text.into() }
    }
}

/// An earlier answer that failed validation, and why. [`Structured`] appends one per retry; the
/// prompt shows them to the model as its own previous turns followed by the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// The rejected answer as the model gave it (clipped).
    pub answer: String,
    /// What was wrong with it.
    pub error: String,
}

/// One request to a language model.
#[derive(Debug, Clone)]
pub struct ModelRequest {
    pub tenant: TenantId,
    /// The run the call serves, for accounting; `None` outside runs.
    pub run: Option<RunId>,
    pub task: Task,
    /// Trusted system text: what to do and how.
    pub instructions: String,
    /// Trusted structured inputs (the tenant's own settings, earlier steps' outputs).
    pub input: Value,
    /// Data from outside the tenant: quoted and fenced, never followed.
    pub untrusted: Vec<UntrustedText>,
    /// The JSON Schema (draft 2020-12) the answer must match.
    pub output_schema: Value,
    /// The most the answer may spend; also what the budget reserves for it.
    pub max_output_tokens: u32,
    /// Rejected earlier answers, oldest first (filled by [`Structured`]).
    pub corrections: Vec<Correction>,
}

impl ModelRequest {
    /// A request with no untrusted text, no run and a 1,024-token answer cap.
    pub fn new(
        tenant: TenantId,
        task: Task,
        instructions: impl Into<String>,
        input: Value,
        output_schema: Value,
    ) -> Self {
        Self {
            tenant,
            run: None,
            task,
            instructions: instructions.into(),
            input,
            untrusted: Vec::new(),
            output_schema,
            max_output_tokens: 1024,
            corrections: Vec::new(),
        }
    }

    pub fn with_run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    pub fn with_untrusted(mut self, source: impl Into<String>, text: impl Into<String>) -> Self {
        self.untrusted.push(UntrustedText::new(source, text));
        self
    }

    pub fn with_max_output_tokens(mut self, tokens: u32) -> Self {
        self.max_output_tokens = tokens;
        self
    }
}

/// Tokens a call spent, as the provider reported them (or, when it did not, as estimated).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(other.completion_tokens);
    }
}

/// A model's answer: JSON (validated against the request's schema once it leaves the stack).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelResponse {
    pub output: Value,
    pub usage: Usage,
    /// The model that answered, as the provider names it.
    pub model: String,
}

/// Why a call failed, shaped by how the caller should react.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The provider could not be reached, timed out or failed on its side (5xx) even after the
    /// client's own retries. Retry the step later.
    #[error("model provider unavailable: {message}")]
    Unavailable { message: String },
    /// The provider kept answering 429. Retry the step after `retry_after` (when it said).
    #[error("model provider rate limit reached{}", retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited { retry_after: Option<Duration> },
    /// The model answered with something that is not JSON. The structured layer asks again with
    /// the error; callers outside the stack see [`ModelError::InvalidOutput`] instead.
    #[error("the answer to {task} is not JSON: {error}")]
    Unparseable { task: Task, raw: String, error: String, usage: Usage },
    /// The answer did not match the task's schema, even after the retries with the validation
    /// error. Fail the step: asking the same thing again is unlikely to help.
    #[error("the model gave no valid answer to {task}: {error}")]
    InvalidOutput { task: Task, error: String },
    /// The call's worst case would take the tenant past its token budget; nothing was sent.
    /// Stop the run; it can continue once the period rolls over or the budget is raised.
    #[error(
        "token budget exhausted for tenant {tenant}: {used} of {limit} tokens used this {period}, the call needs up to {requested}"
    )]
    BudgetExhausted { tenant: TenantId, period: BudgetPeriod, limit: u64, used: u64, requested: u64 },
    /// The provider refused the request itself (a 4xx other than 401/403/404/429: context too
    /// long, unsupported parameter). Our request or configuration is wrong; retrying won't help.
    #[error("model provider rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The provider is configured wrongly (bad URL, key or model name; 401/403/404), or the
    /// provider cannot answer this task at all. An operator must fix the configuration.
    #[error("model provider misconfigured: {0}")]
    Misconfigured(String),
    /// Token accounting could not be read or written.
    #[error("model accounting failed: {0}")]
    Storage(#[from] StorageError),
}

impl ModelError {
    /// Whether the same request may succeed later without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            ModelError::Unavailable { .. } | ModelError::RateLimited { .. } => true,
            ModelError::Storage(e) => e.is_retryable(),
            ModelError::Unparseable { .. }
            | ModelError::InvalidOutput { .. }
            | ModelError::BudgetExhausted { .. }
            | ModelError::Rejected { .. }
            | ModelError::Misconfigured(_) => false,
        }
    }

    /// When to retry, if the provider said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ModelError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// Tokens the failed call spent anyway (an answer that was not JSON was still generated).
    pub fn usage(&self) -> Option<Usage> {
        match self {
            ModelError::Unparseable { usage, .. } => Some(*usage),
            _ => None,
        }
    }
}

/// A language model. Implementations never offer the model tools or function calls.
pub trait LanguageModel: Send + Sync {
    /// Answers `request`. The answer is JSON; whether it matches `request.output_schema` is the
    /// [`Structured`] layer's business.
    fn complete(&self, request: &ModelRequest) -> impl Future<Output = Result<ModelResponse, ModelError>> + Send;

    /// Which kind of provider this is, for accounting (`offline`, `openai_compatible`).
    fn provider(&self) -> &'static str;

    /// The configured model name, for accounting before the answer names it.
    fn model_name(&self) -> &str;
}

/// Which language-model provider a node uses. The binary reads it from the environment:
/// `FLYWHEEL_LLM_PROVIDER` (`offline` | `openai`), then for `openai` the settings of
/// [`OpenAiConfig`].
#[derive(Debug, Clone, Default)]
pub enum ModelConfig {
    /// The built-in offline writer: no network, no key, deterministic for a given request. It
    /// answers the tasks this crate defines (see [`branding`]) from the tenant's own inputs.
    #[default]
    Offline,
    /// Any server speaking OpenAI's chat-completions API: OpenAI, Ollama, vLLM, llama.cpp
    /// server, …
    OpenAiCompatible(OpenAiConfig),
}

/// The provider a node runs: one of the two implementations, chosen at start.
#[derive(Debug)]
pub enum Provider {
    Offline(OfflineModel),
    /// Boxed: the client is much larger than the offline writer.
    OpenAiCompatible(Box<OpenAiCompatible>),
}

impl LanguageModel for Provider {
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        match self {
            Provider::Offline(m) => m.complete(request).await,
            Provider::OpenAiCompatible(m) => m.complete(request).await,
        }
    }

    fn provider(&self) -> &'static str {
        match self {
            Provider::Offline(m) => m.provider(),
            Provider::OpenAiCompatible(m) => m.provider(),
        }
    }

    fn model_name(&self) -> &str {
        match self {
            Provider::Offline(m) => m.model_name(),
            Provider::OpenAiCompatible(m) => m.model_name(),
        }
    }
}

/// The full stack agents call: validation around budgeting around the configured provider.
pub type Model = Structured<Budgeted<Provider>>;

/// Builds the stack for `config`: the provider, then per-call budgeting against `db` with
/// `budget`, then schema validation with `structured`. Fails only on a configuration that cannot
/// work (an unparseable base URL, for example).
pub fn from_config(
    config: &ModelConfig,
    budget: BudgetConfig,
    structured: StructuredConfig,
    db: Database,
) -> Result<Model, ModelError> {
    let provider = match config {
        ModelConfig::Offline => Provider::Offline(OfflineModel::new()),
        ModelConfig::OpenAiCompatible(c) => Provider::OpenAiCompatible(Box::new(OpenAiCompatible::new(c.clone())?)),
    };
    Ok(Structured::new(Budgeted::new(provider, db, budget), structured))
}

/// A conservative token count for text a provider has not counted: about three characters a
/// token, which over-counts English (closer to four) so that reservations err on the safe side.
pub fn estimate_tokens(text: &str) -> u64 {
    let chars = u64::try_from(text.chars().count()).unwrap_or(u64::MAX);
    chars.div_ceil(3)
}
