//! Flywheel's agents: one orchestrator actor type per agent (Branding, Content, Community, Ads,
//! Landing Page, SEO, Email, Influencer, Affiliate, Affiliate Assistant, Analytics), the steps
//! each agent runs, and the model providers (language models and embeddings) those steps call.
//!
//! This crate owns what an agent *does* (`agent::AgentDef`, a list of `agent::Step`s); the
//! supervisor crate owns how runs are executed, restarted, checkpointed and resumed. Agents
//! reach data only through `flywheel-storage`.

pub mod agent;
pub mod branding;
pub mod embedding;
pub mod model;
