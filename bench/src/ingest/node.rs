//! A real node for the full-path measurement: the release `flywheel` binary (built first with
//! `cargo build --release --bin flywheel`, a no-op when it is up to date), started as a child
//! process against the bench database and Redis namespace, waited for on `/readyz`, its resident
//! memory sampled from `/proc/<pid>/status`, and killed when done (also when the benchmark fails).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::watch;

/// The `flywheel` binary: `explicit` if given, else what `cargo build --release --bin flywheel`
/// produces in this workspace.
pub fn binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--node-binary {} does not exist", path.display());
        }
        return Ok(path.to_owned());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("the bench crate has no parent directory"))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    println!("  building the node: cargo build --release --bin flywheel (a no-op when it is up to date)…");
    let mut build = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--bin",
            "flywheel",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(workspace.join("Cargo.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot run cargo to build the node; pass --node-binary <path to a release flywheel binary>")?;
    let stdout = build.stdout.take().ok_or_else(|| anyhow!("cargo's output was not captured"))?;
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "flywheel"
            && let Some(path) = message["executable"].as_str()
        {
            executable = Some(PathBuf::from(path));
        }
    }
    let status = build.wait()?;
    if !status.success() {
        bail!("cargo build --release --bin flywheel failed ({status})");
    }
    executable.ok_or_else(|| anyhow!("cargo built no flywheel executable"))
}

/// How the node is configured (environment of `flywheel node`).
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub binary: PathBuf,
    pub database_url: String,
    pub owner_database_url: String,
    pub redis_url: String,
    pub namespace: String,
    pub http: SocketAddr,
    pub ingestors: u16,
    pub shards: u16,
    pub batch: usize,
    pub linger_ms: u64,
    pub max_backlog: u64,
}

/// A running node process; killed when dropped.
#[derive(Debug)]
pub struct Node {
    child: Child,
    log: PathBuf,
    base: String,
}

impl Node {
    pub fn start(settings: &NodeSettings) -> Result<Self> {
        let log = std::env::temp_dir().join(format!("flywheel-bench-node-{}.log", uuid::Uuid::new_v4().simple()));
        let stderr = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(&settings.binary)
            .arg("node")
            .env("DATABASE_URL", &settings.database_url)
            .env("FLYWHEEL_OWNER_DATABASE_URL", &settings.owner_database_url)
            .env("REDIS_URL", &settings.redis_url)
            .env("FLYWHEEL_REDIS_NAMESPACE", &settings.namespace)
            .env("FLYWHEEL_HTTP_ADDR", settings.http.to_string())
            .env("FLYWHEEL_INGESTORS", settings.ingestors.to_string())
            .env("FLYWHEEL_INGEST_SHARDS", settings.shards.to_string())
            .env("FLYWHEEL_INGEST_BATCH", settings.batch.to_string())
            .env("FLYWHEEL_INGEST_LINGER_MS", settings.linger_ms.to_string())
            .env("FLYWHEEL_INGEST_MAX_BACKLOG", settings.max_backlog.to_string())
            // One client IP sends everything: neither limit may be what the figures measure.
            .env("FLYWHEEL_TENANT_EVENTS_PER_SEC", "1000000")
            .env("FLYWHEEL_IP_REQUESTS_PER_SEC", "1000000")
            .env("FLYWHEEL_RUN_SWEEP_SECS", "3600")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", settings.binary.display()))?;
        Ok(Self { child, log, base: format!("http://{}", settings.http) })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for `/readyz` to answer 200; fails at once if the process exits.
    pub async fn ready(&mut self, client: &reqwest::Client, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the node exited during start-up ({status}); its log:\n{}", self.log_tail());
            }
            if let Ok(answer) = client.get(format!("{}/readyz", self.base)).send().await
                && answer.status().is_success()
            {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= limit {
                bail!("the node was not ready after {limit:?}; its log:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines the node logged (warnings and errors only: RUST_LOG=warn).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Lines the node logged so far.
    pub fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log).map(|t| t.lines().count()).unwrap_or(0)
    }

    /// Kills the node and removes its log.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // After `stop` this finds the process already reaped; on an error path it ends the node
        // (the log stays, for the error message's sake).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process is running: it exists and is not a zombie (a child that exited and was not
/// reaped yet).
pub fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_owned()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// A process's resident set size in KB, from `/proc/<pid>/status`.
pub fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status; memory is measured on Linux only"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS line in /proc/{pid}/status"))
}

/// Samples a process's VmRSS in the background and keeps the largest reading.
#[derive(Debug)]
pub struct RssSampler {
    max_kb: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let max_kb = Arc::new(AtomicU64::new(rss_kb(pid).unwrap_or(0)));
        let (stop, mut stopped) = watch::channel(false);
        let max = max_kb.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(kb) = rss_kb(pid) {
                    max.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
            }
        });
        Self { max_kb, stop, task }
    }

    /// Stops sampling; returns the largest reading.
    pub async fn finish(self) -> u64 {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.max_kb.load(Ordering::Relaxed)
    }
}
