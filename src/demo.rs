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

pub async fn prepare(config: &Config) -> Result<()> {
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
    Ok(())
}
