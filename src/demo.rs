//! `flywheel demo`: a demo tenant ("Northwind Trail Running", slug `demo`) with a brand core, a
//! persona, a campaign and a lead, and a fresh owner API key printed with a curl line to try.
//! Idempotent: run again, it reuses the tenant and its data and issues another key.

use anyhow::{Context, Result};
use flywheel_contracts::api::brand_core::BrandCoreCreate;
use flywheel_contracts::api::campaign::{CampaignCreate, Channel};
use flywheel_contracts::api::lead::LeadCreate;
use flywheel_contracts::api::persona::PersonaCreate;
use flywheel_contracts::{Currency, Email, Money, Role, Slug};
use flywheel_storage::audit::Actor;
use flywheel_storage::{Database, ListQuery, api_keys, brand_core, campaigns, leads, personas};
use serde_json::json;

use crate::config::Config;

fn object(v: serde_json::Value) -> Option<serde_json::Map<String, serde_json::Value>> {
    v.as_object().cloned()
}

/// The demo tenant and the key printed for it.
#[derive(Debug, Clone)]
pub struct DemoTenant {
    pub tenant: flywheel_contracts::TenantId,
    pub api_key: String,
}

pub async fn prepare(config: &Config) -> Result<DemoTenant> {
    let db = Database::connect(&config.database()).await.context("connect to PostgreSQL")?;
    let slug = Slug::parse("demo").map_err(|e| anyhow::anyhow!("{e}"))?;
    let actor = Actor::Operator("flywheel demo".to_owned());
    let key = match db.tenant_id_by_slug(&slug).await? {
        None => {
            let created = db.create_tenant("Northwind Trail Running", &slug, "flywheel demo").await?;
            (created.tenant_id, created.api_key)
        }
        Some(tenant) => {
            let mut tx = db.begin(tenant).await?;
            let (_, key) = api_keys::create(&mut tx, "demo key", Role::Owner, &actor).await?;
            tx.commit().await?;
            (tenant, key.plain.expose().clone())
        }
    };
    let (tenant, api_key) = key;

    let mut tx = db.begin(tenant).await?;
    let (existing, _) = brand_core::list(&mut tx, ListQuery { limit: 1, after: None }).await?;
    if existing.is_empty() {
        brand_core::create(
            &mut tx,
            &BrandCoreCreate {
                name: None,
                positioning: "Trail shoes for people who run before work: light enough for a 5 km loop, \
                              tough enough for the mountain race they are secretly training for."
                    .into(),
                tone: "Encouraging, specific and a little wry; we talk pace, terrain and kit, never hype.".into(),
                guidelines: object(json!({
                    "voice": ["second person", "short sentences", "metric units first"],
                    "colors": {"primary": "#1F4D3A", "accent": "#F2A541"},
                    "avoid": ["'crush your goals'", "before/after body imagery"]
                })),
                status: None,
            },
            &actor,
        )
        .await?;
        personas::create(
            &mut tx,
            &PersonaCreate {
                name: "Dawn-patrol commuter".into(),
                description: Some(
                    "Office worker, 30-45, runs 4 mornings a week before 7am, eyeing a first 50 km ultra.".into(),
                ),
                attributes: object(json!({"weekly_km": 35, "channels": ["instagram", "email"], "budget": "mid"})),
            },
        )
        .await?;
        let usd = Currency::parse("USD").map_err(|e| anyhow::anyhow!("{e}"))?;
        campaigns::create(
            &mut tx,
            &CampaignCreate {
                name: "Spring trail launch".into(),
                objective: Some("500 pre-orders of the Ridgeline 2 before race season".into()),
                strategy: object(json!({"hook": "first light miles", "offer": "free gaiters with pre-order"})),
                budget: Some(Money::parse("12000.00", usd).map_err(|e| anyhow::anyhow!("{e}"))?),
                start_date: None,
                end_date: None,
                channels: Some(vec![Channel::Instagram, Channel::Email, Channel::MetaAds]),
                status: None,
            },
            &actor,
        )
        .await?;
        leads::create(
            &mut tx,
            &LeadCreate {
                email: Some(Email::parse("ana.runner@example.com").map_err(|e| anyhow::anyhow!("{e}"))?),
                phone: None,
                name: Some("Ana Runner".into()),
                source: Some("demo".into()),
                status: None,
                attributes: object(json!({"shoe_size_eu": 39})),
                landing_page_id: None,
                campaign_id: None,
                affiliate_id: None,
            },
        )
        .await?;
    }
    let write_key = flywheel_storage::tracking::get(&mut tx).await?.write_key;
    tx.commit().await?;
    db.close().await;

    let base = format!("http://{}", config.http_addr);
    println!();
    println!("Demo tenant \"demo\" ({tenant}) is ready.");
    println!("API key (shown once): {api_key}");
    println!();
    println!("Try:");
    println!("  curl -s -H 'Authorization: Bearer {api_key}' {base}/v1/brand_core");
    println!("  curl -s -H 'Authorization: Bearer {api_key}' -H 'Content-Type: application/json' \\");
    println!("       -d '{{\"email\": \"new.lead@example.com\", \"name\": \"New Lead\"}}' {base}/v1/leads");
    println!();
    println!("Tracking: paste into a page <script async src=\"{base}/t.js\" data-key=\"{write_key}\"></script>");
    println!(
        "  or send an event: curl -s -H 'Content-Type: application/json' -d '{{\"events\": [{{\"type\": \"page_view\", \"source\": \"web\"}}]}}' '{base}/v1/collect?key={write_key}'"
    );
    println!("  then read it:     curl -s -H 'Authorization: Bearer {api_key}' {base}/v1/events");
    println!();
    Ok(DemoTenant { tenant, api_key })
}

/// Starts a Branding run for the demo tenant (unless one already waits for approval) and, once
/// it parks at its approval, prints the one command that decides it.
pub async fn branding_run(
    runtime: flywheel_supervisor::Runtime,
    db: Database,
    demo: DemoTenant,
    config: Config,
) -> Result<()> {
    use flywheel_contracts::api::approval::ApprovalStatus;
    let pending = |db: Database| async move {
        let mut tx = db.begin(demo.tenant).await?;
        let (rows, _) = flywheel_storage::approvals::list(
            &mut tx,
            Some(ApprovalStatus::Pending),
            ListQuery { limit: 1, after: None },
        )
        .await?;
        tx.commit().await?;
        anyhow::Ok(rows.into_iter().next())
    };
    if pending(db.clone()).await?.is_none() {
        let input = json!({
            "company_name": "Northwind Trail Running",
            "industry": "trail running shoes",
            "goals": ["500 pre-orders of the Ridgeline 2 before race season", "a newsletter of 10,000 runners"],
            "competitors": [
                {"name": "Summit Pace", "text": "The fastest carbon-plated trail racer, engineered for elite athletes."},
                {"name": "Mudlark", "text": "Rugged boots-meet-runners for weekend hikers."}
            ],
            "seed_materials": [
                "We make light trail shoes for people who run before work: muddy forest loops at dawn, and one day a first mountain ultra.",
                "Ridgeline 2: 245 g, 6 mm drop, lugs that shed mud, a toe guard that survives scree."
            ]
        });
        let input = input.as_object().cloned().unwrap_or_default();
        runtime
            .submit(demo.tenant, flywheel_contracts::api::run::AgentName::Branding, &input, "demo")
            .await
            .map_err(|e| anyhow::anyhow!("start the demo Branding run: {e}"))?;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    let approval = loop {
        if let Some(a) = pending(db.clone()).await? {
            break a;
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("the demo Branding run did not reach its approval within two minutes");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "flywheel".into());
    println!();
    println!("The Branding agent proposes a positioning for the demo tenant and waits for you:");
    println!("  {}", approval.artifact.get("positioning").and_then(|v| v.as_str()).unwrap_or_default());
    println!();
    println!("Approve it (or `reject --reason …`, `edit <file>`):");
    println!(
        "  FLYWHEEL_URL=http://{} FLYWHEEL_API_KEY={} {exe} approvals approve {}",
        config.http_addr, demo.api_key, approval.id
    );
    println!();
    Ok(())
}
