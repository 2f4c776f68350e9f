//! What an agent is to the runtime: an ordered list of steps. A step does its slow work
//! (`run`, outside any transaction), then its domain writes (`apply`) are committed together with
//! its output and the run's cursor — the checkpoint. An approval step parks the run until a
//! human decides. The runtime (`flywheel-supervisor`) executes any `AgentDef`; adding an agent
//! means writing steps, not a new engine.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use flywheel_contracts::TenantId;
use flywheel_contracts::api::JsonObject;
use flywheel_contracts::api::approval::ApprovalKind;
use flywheel_contracts::api::run::AgentName;
use flywheel_contracts::ids::RunId;
use flywheel_storage::TenantTx;

/// A boxed future, so steps can be trait objects.
pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StepError>> + Send + 'a>>;

/// Why a step did not produce its output.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth another attempt (a provider timed out, the database was busy).
    #[error("{0}")]
    Retryable(String),
    /// Another attempt will not help (invalid input, a model that cannot produce valid output,
    /// an exhausted budget): the run fails with this message.
    #[error("{0}")]
    Fatal(String),
}

impl From<flywheel_storage::StorageError> for StepError {
    fn from(e: flywheel_storage::StorageError) -> Self {
        if e.is_retryable() { StepError::Retryable(e.to_string()) } else { StepError::Fatal(e.to_string()) }
    }
}

/// What a step sees: its run, the run's input and the outputs of the steps committed before it
/// (by step name; after a rejection the approval step's name + `.rejection` holds the reason).
#[derive(Debug, Clone)]
pub struct StepContext {
    pub tenant: TenantId,
    pub run: RunId,
    pub input: JsonObject,
    pub outputs: JsonObject,
}

impl StepContext {
    pub fn output(&self, step: &str) -> Option<&serde_json::Value> {
        self.outputs.get(step)
    }
}

/// What happens when a human rejects an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReject {
    /// The run ends as failed, with the reason.
    Fail,
    /// The run goes back to this step and regenerates, with the rejection in its context.
    LoopBackTo(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Work,
    /// `run` builds the artifact to approve; the run parks until a decision (or a policy).
    Approval {
        kind: ApprovalKind,
        on_reject: OnReject,
    },
}

pub trait Step: Send + Sync {
    fn name(&self) -> &'static str;

    fn kind(&self) -> StepKind {
        StepKind::Work
    }

    /// The step's work. Runs outside any transaction and may run more than once (a crash before
    /// the checkpoint): it must have no effects of its own — effects go in `apply`.
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, serde_json::Value>;

    /// Domain writes, in the checkpoint transaction with the step's output. Never runs twice for
    /// one step: a replayed step finds its idempotency key committed and skips it.
    fn apply<'a>(
        &'a self,
        _tx: &'a mut TenantTx,
        _ctx: &'a StepContext,
        _output: &'a serde_json::Value,
    ) -> StepFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// For an approval step: the JSON Schema an edited artifact must satisfy.
    fn artifact_schema(&self) -> Option<serde_json::Value> {
        None
    }

    /// For an approval step: the rules an edited artifact must also meet that a schema cannot
    /// say (unique names, what persisting it will require). `Err((field, message))`.
    fn check_artifact(&self, _artifact: &JsonObject) -> Result<(), (String, String)> {
        Ok(())
    }
}

/// Checks an agent's run input before the run is created: `Err((field, message))`.
pub type InputCheck = Arc<dyn Fn(&JsonObject) -> Result<(), (String, String)> + Send + Sync>;

/// An agent: its name, its input check and its steps, in order.
#[derive(Clone)]
pub struct AgentDef {
    pub name: AgentName,
    pub input_check: Option<InputCheck>,
    pub steps: Vec<Arc<dyn Step>>,
}

impl std::fmt::Debug for AgentDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentDef")
            .field("name", &self.name)
            .field("steps", &self.steps.iter().map(|s| s.name()).collect::<Vec<_>>())
            .finish()
    }
}

impl AgentDef {
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name() == name)
    }
}

/// Why an effect could not be performed.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// Try again later (the service is down, rate-limited).
    #[error("{0}")]
    Retryable(String),
    /// Another attempt will not help; the effect is marked failed.
    #[error("{0}")]
    Fatal(String),
}

/// Performs one kind of outbox effect (`flywheel_storage::outbox`). Called at least once per
/// effect, with the effect's idempotency key: the receiving side must deduplicate by it (or be
/// idempotent by construction).
pub trait EffectHandler: Send + Sync {
    fn kind(&self) -> &'static str;
    fn perform<'a>(
        &'a self,
        tenant: TenantId,
        idempotency_key: &'a str,
        payload: &'a serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = Result<(), EffectError>> + Send + 'a>>;
}

/// The agents a node can run, and the effects they can ask for.
#[derive(Clone, Default)]
pub struct Registry {
    agents: HashMap<AgentName, Arc<AgentDef>>,
    effects: HashMap<&'static str, Arc<dyn EffectHandler>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("effects", &self.effects.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    pub fn with(mut self, agent: AgentDef) -> Self {
        self.agents.insert(agent.name, Arc::new(agent));
        self
    }

    pub fn with_effect(mut self, handler: Arc<dyn EffectHandler>) -> Self {
        self.effects.insert(handler.kind(), handler);
        self
    }

    pub fn effect(&self, kind: &str) -> Option<Arc<dyn EffectHandler>> {
        self.effects.get(kind).cloned()
    }

    pub fn get(&self, name: AgentName) -> Option<Arc<AgentDef>> {
        self.agents.get(&name).cloned()
    }

    pub fn names(&self) -> Vec<AgentName> {
        self.agents.keys().copied().collect()
    }
}
