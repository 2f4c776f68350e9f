//! Time bounds: every benchmark finishes or fails within a deadline, waits on asynchronous
//! outcomes by polling with a deadline, and stops on Ctrl-C in a way that still lets it clean up
//! (drop its database) before the process exits.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

/// Runs `work` until it finishes, `limit` passes or Ctrl-C is pressed, whichever comes first.
/// The caller's cleanup runs after this returns in every case.
pub async fn bounded<T>(what: &str, limit: Duration, work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        outcome = tokio::time::timeout(limit, work) => {
            outcome.map_err(|_| anyhow!("{what} did not finish within {limit:?}"))?
        }
        _ = tokio::signal::ctrl_c() => bail!("{what} interrupted (Ctrl-C)"),
    }
}

/// Calls `check` every `every` until it yields a value; fails after `limit` with the last
/// progress `check` reported.
pub async fn poll_until<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Polled<T>>>,
{
    let start = Instant::now();
    loop {
        let progress = match check().await? {
            Polled::Ready(value) => return Ok(value),
            Polled::Pending(progress) => progress,
        };
        if start.elapsed() >= limit {
            bail!("{what}: still waiting after {limit:?} ({progress})");
        }
        tokio::time::sleep(every).await;
    }
}

/// What one poll found.
#[derive(Debug)]
pub enum Polled<T> {
    Ready(T),
    /// Not yet; says how far it got, for the error if the deadline passes.
    Pending(String),
}
