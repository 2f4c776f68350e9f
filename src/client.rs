//! `flywheel runs …` and `flywheel approvals …`: a thin client of a running node's HTTP API,
//! authenticated by an API key, so the command line obeys exactly the same roles and tenant
//! scoping as any other caller.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The node's base URL.
    #[arg(long, env = "FLYWHEEL_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// An API key of the tenant to act for.
    #[arg(long, env = "FLYWHEEL_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        status: Option<String>,
    },
    /// A run with its steps and outputs.
    Show {
        id: String,
    },
    /// Start a run of AGENT with the JSON input in FILE (`-` for standard input).
    Start {
        agent: String,
        input: String,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Cancel {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approvals (pending ones by default).
    List {
        #[arg(long, default_value = "pending")]
        status: String,
    },
    Show {
        id: String,
    },
    Approve {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    Reject {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Approve an edited artifact, read as JSON from FILE (`-` for standard input).
    Edit {
        id: String,
        artifact: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Override a rule and approve (owners only).
    Force {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

fn read_json(source: &str) -> Result<Value> {
    let text = if source == "-" {
        std::io::read_to_string(std::io::stdin()).context("read standard input")?
    } else {
        std::fs::read_to_string(source).with_context(|| format!("read {source}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{source} is not JSON"))
}

async fn send(args: &ClientArgs, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<()> {
    let key = args.api_key.as_deref().context("set FLYWHEEL_API_KEY (or --api-key) to a key of your tenant")?;
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("{}{path}", args.url.trim_end_matches('/'))).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.with_context(|| format!("reach the node at {}", args.url))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let pretty =
        serde_json::from_str::<Value>(&text).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or(text);
    if status.is_success() {
        println!("{pretty}");
        Ok(())
    } else {
        bail!("{status}: {pretty}")
    }
}

pub async fn runs(args: &ClientArgs, command: RunsCommand) -> Result<()> {
    use reqwest::Method;
    match command {
        RunsCommand::List { agent, status } => {
            let mut query = Vec::new();
            if let Some(a) = agent {
                query.push(format!("agent={a}"));
            }
            if let Some(s) = status {
                query.push(format!("status={s}"));
            }
            send(args, Method::GET, &format!("/v1/runs?{}", query.join("&")), None).await
        }
        RunsCommand::Show { id } => send(args, Method::GET, &format!("/v1/runs/{id}"), None).await,
        RunsCommand::Start { agent, input } => {
            send(args, Method::POST, &format!("/v1/agents/{agent}/runs"), Some(json!({"input": read_json(&input)?})))
                .await
        }
        RunsCommand::Pause { id } => send(args, Method::POST, &format!("/v1/runs/{id}/pause"), None).await,
        RunsCommand::Resume { id } => send(args, Method::POST, &format!("/v1/runs/{id}/resume"), None).await,
        RunsCommand::Cancel { id } => send(args, Method::POST, &format!("/v1/runs/{id}/cancel"), None).await,
    }
}

pub async fn approvals(args: &ClientArgs, command: ApprovalsCommand) -> Result<()> {
    use reqwest::Method;
    let decide = |id: &str| format!("/v1/approvals/{id}/decision");
    // Optional fields are left out rather than sent as null.
    let decision = |kind: &str, reason: Option<String>, artifact: Option<Value>| {
        let mut body = json!({"decision": kind});
        if let Some(r) = reason {
            body["reason"] = json!(r);
        }
        if let Some(a) = artifact {
            body["artifact"] = a;
        }
        body
    };
    match command {
        ApprovalsCommand::List { status } => {
            send(args, Method::GET, &format!("/v1/approvals?status={status}"), None).await
        }
        ApprovalsCommand::Show { id } => send(args, Method::GET, &format!("/v1/approvals/{id}"), None).await,
        ApprovalsCommand::Approve { id, reason } => {
            send(args, Method::POST, &decide(&id), Some(decision("approve", reason, None))).await
        }
        ApprovalsCommand::Reject { id, reason } => {
            send(args, Method::POST, &decide(&id), Some(decision("reject", Some(reason), None))).await
        }
        ApprovalsCommand::Edit { id, artifact, reason } => {
            send(args, Method::POST, &decide(&id), Some(decision("edit", reason, Some(read_json(&artifact)?)))).await
        }
        ApprovalsCommand::Force { id, reason } => {
            send(args, Method::POST, &decide(&id), Some(decision("force", Some(reason), None))).await
        }
    }
}
