//! Flywheel's agents: one orchestrator actor type per agent (Branding, Content, Community, Ads,
//! Landing Page, SEO, Email, Influencer, Affiliate, Affiliate Assistant, Analytics), the worker
//! actors each orchestrator runs its steps on, and the model providers (language models and
//! embeddings) those workers call.
//!
//! This crate owns what an agent *does*; the supervisor crate owns how agents are spawned,
//! restarted, checkpointed and resumed. Agents reach data only through `flywheel-storage`.
//! Filled by the actor-runtime issue; empty until then.
