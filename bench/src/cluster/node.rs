//! One `flywheel node` process of the failover benchmark's cluster: started with its own node
//! id, HTTP port and cluster address; SIGKILLed or SIGTERMed on purpose; killed when dropped (so
//! an error path leaves no node behind). Its log (RUST_LOG=warn) goes to a temporary file,
//! quoted when it exits early, removed by [`ClusterNode::stop`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What every node of the cluster shares.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub binary: PathBuf,
    pub database_url: String,
    pub owner_database_url: String,
    pub redis_url: String,
    pub namespace: String,
    pub cookie: String,
    pub lease_ttl: Duration,
}

#[derive(Debug)]
pub struct ClusterNode {
    pub id: String,
    pub cluster_addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

fn free_addr() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}

impl ClusterNode {
    /// Starts node `id`, joining through `seeds` (cluster addresses; none: it starts alone).
    pub fn start(fleet: &Fleet, id: &str, seeds: &[SocketAddr]) -> Result<Self> {
        let cluster_addr = free_addr()?;
        let http = free_addr()?;
        let log = std::env::temp_dir().join(format!("flywheel-bench-{id}-{}.log", uuid::Uuid::new_v4().simple()));
        let stderr = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let seeds: Vec<String> = seeds.iter().map(SocketAddr::to_string).collect();
        let child = Command::new(&fleet.binary)
            .arg("node")
            .env("DATABASE_URL", &fleet.database_url)
            .env("FLYWHEEL_OWNER_DATABASE_URL", &fleet.owner_database_url)
            .env("REDIS_URL", &fleet.redis_url)
            .env("FLYWHEEL_REDIS_NAMESPACE", &fleet.namespace)
            .env("FLYWHEEL_HTTP_ADDR", http.to_string())
            .env("FLYWHEEL_NODE_ID", id)
            .env("FLYWHEEL_CLUSTER_ADDR", cluster_addr.to_string())
            .env("FLYWHEEL_CLUSTER_COOKIE", &fleet.cookie)
            .env("FLYWHEEL_SEEDS", seeds.join(","))
            .env("FLYWHEEL_LEASE_TTL", format!("{}ms", fleet.lease_ttl.as_millis()))
            .env("FLYWHEEL_INGESTORS", "0")
            .env("FLYWHEEL_LLM_PROVIDER", "offline")
            // Four nodes' pools at once (the replacement starts while three run) stay well under
            // PostgreSQL's default of 100 connections.
            .env("FLYWHEEL_DB_MAX_CONNECTIONS", "8")
            .env_remove("FLYWHEEL_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start {}", fleet.binary.display()))?;
        Ok(Self { id: id.to_owned(), cluster_addr, child, log })
    }

    /// Fails, quoting the log, when the node has exited.
    pub fn check(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("node {} exited ({status}); its log:\n{}", self.id, self.log_tail());
        }
        Ok(())
    }

    /// SIGKILL, and reap the process.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().with_context(|| format!("cannot SIGKILL node {}", self.id))?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM: the node finishes its requests, releases its shards and exits.
    pub fn terminate(&self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("cannot run kill(1) to send SIGTERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed ({status})", self.child.id());
        }
        Ok(())
    }

    /// Waits for the process to exit, up to `limit`.
    pub async fn exited(&mut self, limit: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() >= limit {
                bail!("node {} did not exit within {limit:?} of SIGTERM; its log:\n{}", self.id, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills the node if it still runs and removes its log.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        // After `stop` this finds the process already reaped; on an error path it ends the node
        // (the log stays, for the error message's sake).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
