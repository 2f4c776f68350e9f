//! The Branding agent: research → synthesize → propose → approve (brand_positioning) → persist
//! (brand_core, personas) → embed (brand memory in the vector store).
//!
//! Workers, as the design names them: MarketResearchWorker (`research`), PositioningSynthesizer
//! (`synthesize`), ToneGuidelineWriter and PersonaBuilder (`propose`), VectorMemoryWriter
//! (`embed`). Competitor texts and seed materials reach the model only as fenced, untrusted data
//! (see `model::prompt`); nothing a text says can approve anything — only a decision can.

use std::future::Future;
use std::sync::Arc;

use flywheel_contracts::api::brand_core::{BrandCoreCreate, BrandCoreUpdate, BrandStatus};
use flywheel_contracts::api::persona::{PersonaCreate, PersonaUpdate};
use flywheel_contracts::api::run::{AgentName, BrandingInput};
use flywheel_contracts::api::{JsonObject, approval::ApprovalKind};
use flywheel_storage::audit::Actor;
use flywheel_storage::vector::{Collection, MemoryItem, VectorMemory, VectorStore};
use flywheel_storage::{ListQuery, TenantTx, brand_core, personas};
use serde_json::{Value, json};

use crate::agent::{
    AgentDef, EffectError, EffectHandler, OnReject, Registry, Step, StepContext, StepError, StepFuture, StepKind,
};
use crate::embedding::{Embedder, Embeddings};
use crate::model::{LanguageModel, Model, ModelError, branding};

/// The vector collection brand memory lives in.
pub const MEMORY_COLLECTION: &str = "brand";

/// What the Branding agent's steps call.
pub struct BrandingServices {
    pub model: Model,
    pub embedder: Embeddings,
    pub vector: VectorMemory,
    /// For refinement runs, which start from the tenant's approved brand core.
    pub db: flywheel_storage::Database,
}

/// A refinement run's input: what analytics (or a person) learned since the brand was approved.
/// The run proposes a revised positioning, again behind approval.
pub fn insights_input(insights: &[String]) -> JsonObject {
    let mut input = JsonObject::new();
    input.insert("insights".into(), json!(insights));
    input
}

fn is_refinement(ctx: &StepContext) -> bool {
    ctx.input.contains_key("insights")
}

fn check_input(input: &JsonObject) -> Result<(), (String, String)> {
    if let Some(insights) = input.get("insights") {
        let ok = input.len() == 1
            && insights.as_array().is_some_and(|list| {
                (1..=20).contains(&list.len())
                    && list
                        .iter()
                        .all(|i| i.as_str().is_some_and(|t| !t.trim().is_empty() && t.chars().count() <= 2000))
            });
        return if ok {
            Ok(())
        } else {
            Err((
                "input.insights".into(),
                "insights is a list of 1 to 20 texts of up to 2000 characters, alone in the input".into(),
            ))
        };
    }
    flywheel_contracts::schema::validate(flywheel_contracts::schema::BRANDING_INPUT, &Value::Object(input.clone()))
        .map_err(|v| {
            let field = v.field.map_or_else(|| "input".to_owned(), |f| format!("input.{f}"));
            (field, v.message)
        })
}

/// The agent definition, ready for a `Registry`.
pub fn agent(services: Arc<BrandingServices>) -> AgentDef {
    AgentDef {
        name: AgentName::Branding,
        input_check: Some(Arc::new(check_input)),
        steps: vec![
            Arc::new(Research(services.clone())),
            Arc::new(Synthesize(services.clone())),
            Arc::new(Propose(services.clone())),
            Arc::new(Approve),
            Arc::new(Persist),
            Arc::new(Embed),
        ],
    }
}

fn model_error(e: ModelError) -> StepError {
    if e.is_retryable() { StepError::Retryable(e.to_string()) } else { StepError::Fatal(e.to_string()) }
}

/// The model tasks' `company`: the run's input, or for a refinement run the input of the
/// tenant's latest successful branding run (recorded by the `research` step).
fn company(ctx: &StepContext) -> Result<Value, StepError> {
    if is_refinement(ctx) {
        return ctx.output("research").and_then(|r| r.get("company").cloned()).ok_or_else(|| {
            StepError::Fatal("a refinement run needs an approved brand from an earlier branding run".into())
        });
    }
    company_of(&ctx.input)
}

fn company_of(input: &JsonObject) -> Result<Value, StepError> {
    let input: BrandingInput = serde_json::from_value(Value::Object(input.clone()))
        .map_err(|e| StepError::Fatal(format!("branding input: {e}")))?;
    Ok(json!({
        "name": input.company_name,
        "industry": input.industry,
        "goals": input.goals,
        "competitors": input.competitors,
        "seed_materials": input.seed_materials,
    }))
}

fn previous(ctx: &StepContext, step: &str) -> Result<Value, StepError> {
    ctx.output(step).cloned().ok_or_else(|| StepError::Fatal(format!("the {step} step has no output")))
}

async fn ask(
    services: &BrandingServices,
    ctx: &StepContext,
    spec: &branding::TaskSpec,
    input: Value,
) -> Result<Value, StepError> {
    let request = spec.request(ctx.tenant, input).with_run(ctx.run);
    services.model.complete(&request).await.map(|r| r.output).map_err(model_error)
}

struct Research(Arc<BrandingServices>);

impl Step for Research {
    fn name(&self) -> &'static str {
        "research"
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            if !is_refinement(ctx) {
                return ask(&self.0, ctx, &branding::RESEARCH, json!({"company": company(ctx)?})).await;
            }
            // A refinement starts from what was approved: the brand core, and the company as the
            // last successful branding run described it.
            let mut tx = self.0.db.begin(ctx.tenant).await?;
            let filter = flywheel_storage::runs::RunFilter {
                agent: Some(AgentName::Branding),
                status: Some(flywheel_contracts::api::run::RunStatus::Succeeded),
            };
            let (runs, _) =
                flywheel_storage::runs::list(&mut tx, &filter, ListQuery { limit: ListQuery::MAX_LIMIT, after: None })
                    .await?;
            let (cores, _) = brand_core::list(&mut tx, ListQuery { limit: ListQuery::MAX_LIMIT, after: None }).await?;
            tx.commit().await?;
            let base = runs.iter().find(|r| !r.input.contains_key("insights")).ok_or_else(|| {
                StepError::Fatal("no approved branding run to refine: run the Branding agent first".into())
            })?;
            let core = cores
                .into_iter()
                .find(|b| b.name == "primary")
                .ok_or_else(|| StepError::Fatal("no approved brand core to refine".into()))?;
            Ok(json!({
                "company": company_of(&base.input)?,
                "brand_core": {"positioning": core.positioning, "tone": core.tone, "guidelines": core.guidelines},
                "refines_run": base.id,
            }))
        })
    }
}

struct Synthesize(Arc<BrandingServices>);

impl Step for Synthesize {
    fn name(&self) -> &'static str {
        "synthesize"
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            let mut company = company(ctx)?;
            // After a rejection, the reviewer's reason travels with the company as one more
            // piece of material (untrusted like the rest: it informs, it does not command).
            if let Some(reason) = ctx.output("approve.rejection").and_then(|r| r["reason"].as_str()) {
                company["memory"] = json!([format!("A reviewer rejected the previous proposal: {reason}")]);
            }
            if is_refinement(ctx) {
                let research = previous(ctx, "research")?;
                let input = json!({"company": company, "brand_core": research["brand_core"], "insights": ctx.input["insights"]});
                return ask(&self.0, ctx, &branding::REFINE, input).await;
            }
            ask(
                &self.0,
                ctx,
                &branding::POSITIONING,
                json!({"company": company, "research": previous(ctx, "research")?}),
            )
            .await
        })
    }
}

struct Propose(Arc<BrandingServices>);

impl Step for Propose {
    fn name(&self) -> &'static str {
        "propose"
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            let positioning = previous(ctx, "synthesize")?;
            let input =
                json!({"company": company(ctx)?, "research": previous(ctx, "research")?, "positioning": positioning});
            let rationale = positioning.get("rationale").cloned().unwrap_or(Value::Null);
            let tone = ask(&self.0, ctx, &branding::TONE, input.clone()).await?;
            let people = ask(&self.0, ctx, &branding::PERSONAS, input).await?;
            branding::distinct_persona_names(&people).map_err(StepError::Retryable)?;
            Ok(json!({
                "positioning": positioning["positioning"],
                "tone": tone["tone"],
                "guidelines": {
                    "value_props": positioning["value_props"],
                    "differentiators": positioning["differentiators"],
                    "proof_points": positioning["proof_points"],
                    "voice_attributes": tone["voice_attributes"],
                    "do": tone["do"],
                    "dont": tone["dont"],
                    "vocabulary": tone["vocabulary"],
                    "sample_lines": tone["sample_lines"],
                },
                "personas": people["personas"],
                "rationale": rationale,
            }))
        })
    }
}

/// The human gate: brand positioning and tone are the brand at stake.
struct Approve;

impl Step for Approve {
    fn name(&self) -> &'static str {
        "approve"
    }
    fn kind(&self) -> StepKind {
        StepKind::Approval { kind: ApprovalKind::BrandPositioning, on_reject: OnReject::LoopBackTo("synthesize") }
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move { previous(ctx, "propose") })
    }
    fn artifact_schema(&self) -> Option<Value> {
        Some(artifact_schema())
    }
    fn check_artifact(&self, artifact: &JsonObject) -> Result<(), (String, String)> {
        validate_for_persisting(&Value::Object(artifact.clone()))
    }
}

/// What an approver may edit: the brand core's fields (as `contracts/api/brand_core.json`
/// bounds them) and the personas (as `persona.json` does).
pub fn artifact_schema() -> Value {
    json!({
        "type": "object",
        "required": ["positioning", "tone", "guidelines", "personas"],
        "properties": {
            "positioning": {"type": "string", "minLength": 1, "maxLength": 20000},
            "tone": {"type": "string", "minLength": 1, "maxLength": 20000},
            "guidelines": {"type": "object"},
            "rationale": {"type": ["string", "null"], "maxLength": 3000},
            "personas": {
                "type": "array",
                "maxItems": 10,
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": {"type": "string", "maxLength": 20000},
                        "attributes": {"type": "object"}
                    }
                }
            }
        }
    })
}

/// The approved artifact, checked against the API's own contracts for what it becomes: a brand
/// core (`brand_core.json#/$defs/create`) and personas (`persona.json#/$defs/create`) with
/// distinct, non-blank names. `Err((field, message))`, fields relative to `artifact`.
fn validate_for_persisting(approved: &Value) -> Result<(), (String, String)> {
    use flywheel_contracts::schema::{self, BRAND_CORE_CREATE, PERSONA_CREATE};
    let core =
        json!({"positioning": approved["positioning"], "tone": approved["tone"], "guidelines": approved["guidelines"]});
    schema::validate(BRAND_CORE_CREATE, &core)
        .map_err(|v| (format!("artifact.{}", v.field.unwrap_or_else(|| "positioning".into())), v.message))?;
    let mut seen = std::collections::HashSet::new();
    for (i, p) in approved["personas"].as_array().into_iter().flatten().enumerate() {
        let name = p["name"].as_str().unwrap_or_default().trim().to_lowercase();
        if name.is_empty() {
            return Err((format!("artifact.personas.{i}.name"), "a persona needs a name".into()));
        }
        if !seen.insert(name.clone()) {
            return Err((format!("artifact.personas.{i}.name"), format!("two personas are named {name:?}")));
        }
        let mut persona = json!({"name": p["name"].as_str().unwrap_or_default().trim()});
        if let Some(d) = p.get("description").filter(|d| !d.is_null()) {
            persona["description"] = d.clone();
        }
        if let Some(a) = p.get("attributes").filter(|a| !a.is_null()) {
            persona["attributes"] = a.clone();
        }
        schema::validate(PERSONA_CREATE, &persona)
            .map_err(|v| (format!("artifact.personas.{i}.{}", v.field.unwrap_or_else(|| "name".into())), v.message))?;
    }
    Ok(())
}

/// Persists the approved (possibly edited) artifact: the tenant's primary brand core and its
/// personas, updated in place when they exist.
struct Persist;

impl Step for Persist {
    fn name(&self) -> &'static str {
        "persist"
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            let approved = previous(ctx, "approve")?;
            validate_for_persisting(&approved).map_err(|(field, message)| {
                StepError::Fatal(format!("the approved artifact cannot be saved: {field}: {message}"))
            })?;
            Ok(approved)
        })
    }
    fn apply<'a>(&'a self, tx: &'a mut TenantTx, _ctx: &'a StepContext, approved: &'a Value) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let actor = Actor::Agent("branding".into());
            let text = |k: &str| approved[k].as_str().unwrap_or_default().to_owned();
            let guidelines = approved["guidelines"].as_object().cloned().unwrap_or_default();
            let (existing, _) = brand_core::list(tx, ListQuery { limit: ListQuery::MAX_LIMIT, after: None }).await?;
            match existing.into_iter().find(|b| b.name == "primary") {
                Some(current) => {
                    let update = BrandCoreUpdate {
                        positioning: Some(text("positioning")),
                        tone: Some(text("tone")),
                        guidelines: Some(guidelines),
                        status: Some(BrandStatus::Approved),
                        ..Default::default()
                    };
                    brand_core::update(tx, current.id, &update, &actor).await?;
                }
                None => {
                    let create = BrandCoreCreate {
                        name: None,
                        positioning: text("positioning"),
                        tone: text("tone"),
                        guidelines: Some(guidelines),
                        status: Some(BrandStatus::Approved),
                    };
                    brand_core::create(tx, &create, &actor).await?;
                }
            }
            let (stored, _) = personas::list(tx, ListQuery { limit: ListQuery::MAX_LIMIT, after: None }).await?;
            for p in approved["personas"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap_or_default().trim().to_owned();
                let description = p["description"].as_str().map(str::to_owned);
                let attributes = p["attributes"].as_object().cloned();
                match stored.iter().find(|s| s.name.eq_ignore_ascii_case(&name)) {
                    Some(s) => {
                        personas::update(tx, s.id, &PersonaUpdate { name: None, description, attributes }).await?;
                    }
                    None => {
                        personas::create(tx, &PersonaCreate { name, description, attributes }).await?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// Brand memory: the positioning, the tone and each persona, under stable ids. The step records
/// one `memory.upsert` effect in the outbox with its checkpoint; the relay embeds and stores the
/// texts (an upsert by id, so performing it again replaces rather than duplicates).
struct Embed;

impl Step for Embed {
    fn name(&self) -> &'static str {
        "embed"
    }
    fn run<'a>(&'a self, ctx: &'a StepContext) -> StepFuture<'a, Value> {
        Box::pin(async move {
            let approved = previous(ctx, "approve")?;
            let mut entries = vec![
                json!({"external_id": "brand_core:positioning", "content": approved["positioning"], "metadata": {"kind": "positioning"}}),
                json!({"external_id": "brand_core:tone", "content": approved["tone"], "metadata": {"kind": "tone"}}),
            ];
            for p in approved["personas"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap_or_default();
                entries.push(json!({
                    "external_id": format!("persona:{}", name.to_lowercase()),
                    "content": format!("{name}: {}", p["description"].as_str().unwrap_or_default()),
                    "metadata": {"kind": "persona", "name": name},
                }));
            }
            entries.retain(|e| e["content"].as_str().is_some_and(|c| !c.trim().is_empty()));
            Ok(json!({"collection": MEMORY_COLLECTION, "entries": entries}))
        })
    }
    fn apply<'a>(&'a self, tx: &'a mut TenantTx, ctx: &'a StepContext, output: &'a Value) -> StepFuture<'a, ()> {
        Box::pin(async move {
            flywheel_storage::outbox::enqueue(tx, MEMORY_UPSERT, &format!("{MEMORY_UPSERT}:{}", ctx.run), output)
                .await?;
            Ok(())
        })
    }
}

/// The outbox effect that writes brand memory.
pub const MEMORY_UPSERT: &str = "memory.upsert";

/// Performs `memory.upsert`: embeds the entries and upserts them into the tenant's collection.
pub struct MemoryUpsert(pub Arc<BrandingServices>);

impl EffectHandler for MemoryUpsert {
    fn kind(&self) -> &'static str {
        MEMORY_UPSERT
    }
    fn perform<'a>(
        &'a self,
        tenant: flywheel_contracts::TenantId,
        _idempotency_key: &'a str,
        payload: &'a Value,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), EffectError>> + Send + 'a>> {
        Box::pin(async move {
            let fatal = |e: String| EffectError::Fatal(e);
            let collection = Collection::parse(payload["collection"].as_str().unwrap_or_default())
                .map_err(|e| fatal(e.to_string()))?;
            let entries = payload["entries"].as_array().cloned().unwrap_or_default();
            let texts: Vec<String> =
                entries.iter().map(|e| e["content"].as_str().unwrap_or_default().to_owned()).collect();
            let vectors = self.0.embedder.embed(&texts).await.map_err(|e| {
                if e.is_retryable() { EffectError::Retryable(e.to_string()) } else { EffectError::Fatal(e.to_string()) }
            })?;
            let items: Vec<MemoryItem> = entries
                .iter()
                .zip(vectors)
                .map(|(e, embedding)| MemoryItem {
                    external_id: e["external_id"].as_str().unwrap_or_default().to_owned(),
                    content: e["content"].as_str().unwrap_or_default().to_owned(),
                    metadata: e["metadata"].as_object().cloned().unwrap_or_default(),
                    embedding,
                })
                .collect();
            self.0.vector.upsert(tenant, &collection, &items).await.map_err(|e| {
                if e.is_retryable() { EffectError::Retryable(e.to_string()) } else { EffectError::Fatal(e.to_string()) }
            })
        })
    }
}

/// Adds the Branding agent and its effect to `registry`.
pub fn register(registry: Registry, services: Arc<BrandingServices>) -> Registry {
    registry.with(agent(services.clone())).with_effect(Arc::new(MemoryUpsert(services)))
}
