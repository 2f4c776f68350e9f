//! Actor overhead. A ractor request/reply (`call`) against the same round trip over a tokio
//! mpsc + oneshot, and ractor `cast` throughput against a raw tokio mpsc. Same binary, same tokio
//! runtime; both sides run as tasks on its worker threads. After a warm-up, the variants are
//! measured in interleaved rounds (so drift hits them alike) and each is summarised by the median
//! of its rounds.
//!
//! Targets (issue 3): call ≤ 3× the mpsc + oneshot round trip, both without a timeout, so the
//! ratio is the actor's overhead alone; the runtime's own path (`call_t!`, a call with a timeout)
//! is printed against a round trip with the same timeout. Cast throughput ≥ 0.3× of raw mpsc: the
//! baseline is an unbounded mpsc, the same queue a ractor mailbox is; a bounded mpsc is printed
//! beside it for context.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{mpsc, oneshot};

use crate::sample::{Summary, ns_per_op, paired_ratios, ratio};
use crate::target::Target;

/// The timeout the runtime's `call_t!`s use for their replies.
const CALL_TIMEOUT: Duration = Duration::from_millis(2000);
/// Capacity of the bounded mpsc shown for context.
const BOUNDED_CAPACITY: usize = 1024;

#[derive(Debug, Clone, clap::Args)]
pub struct ActorsConfig {
    /// Operations per round.
    #[arg(id = "actor_iterations", long = "actor-iterations", value_name = "N", default_value_t = 100_000)]
    pub iterations: u64,
    /// Measured rounds per variant; the median is reported.
    #[arg(long = "actor-rounds", value_name = "N", default_value_t = 10)]
    pub rounds: u32,
}

enum EchoMsg {
    /// Replies with the running sum: a request/reply with a payload both ways.
    Ping(RpcReplyPort<u64>),
    /// One-way: adds to the sum.
    Add(u64),
    /// Replies with the sum of everything added since the last flush (proof that every cast
    /// was handled), and resets it.
    Flush(RpcReplyPort<u64>),
}

// ractor is built with `cluster`, which turns off the blanket impl for local-only messages.
impl ractor::Message for EchoMsg {}

/// The measured actor: no work beyond the message itself.
struct Echo;

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<EchoMsg>, _args: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<EchoMsg>,
        message: EchoMsg,
        sum: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EchoMsg::Ping(reply) => {
                let _ = reply.send(*sum);
            }
            EchoMsg::Add(n) => *sum = sum.wrapping_add(n),
            EchoMsg::Flush(reply) => {
                let _ = reply.send(std::mem::take(sum));
            }
        }
        Ok(())
    }
}

/// The baseline: the same protocol, served by a plain task that owns a receiver.
enum RawMsg {
    Ping(oneshot::Sender<u64>),
    Add(u64),
    Flush(oneshot::Sender<u64>),
}

fn serve_raw(message: RawMsg, sum: &mut u64) {
    match message {
        RawMsg::Ping(reply) => {
            let _ = reply.send(*sum);
        }
        RawMsg::Add(n) => *sum = sum.wrapping_add(n),
        RawMsg::Flush(reply) => {
            let _ = reply.send(std::mem::take(sum));
        }
    }
}

/// The sum `Flush` must report after casting `0..n`.
fn expected_sum(n: u64) -> u64 {
    (0..n).fold(0u64, u64::wrapping_add)
}

struct Subjects {
    actor: ActorRef<EchoMsg>,
    unbounded: mpsc::UnboundedSender<RawMsg>,
    bounded: mpsc::Sender<RawMsg>,
}

impl Subjects {
    async fn start() -> Result<(Self, Vec<tokio::task::JoinHandle<()>>)> {
        let (actor, actor_task) =
            Actor::spawn(None, Echo, ()).await.map_err(|e| anyhow!("cannot spawn the echo actor: {e}"))?;
        let (unbounded, mut unbounded_rx) = mpsc::unbounded_channel();
        let unbounded_task = tokio::spawn(async move {
            let mut sum = 0;
            while let Some(message) = unbounded_rx.recv().await {
                serve_raw(message, &mut sum);
            }
        });
        let (bounded, mut bounded_rx) = mpsc::channel(BOUNDED_CAPACITY);
        let bounded_task = tokio::spawn(async move {
            let mut sum = 0;
            while let Some(message) = bounded_rx.recv().await {
                serve_raw(message, &mut sum);
            }
        });
        let tasks = vec![
            tokio::spawn(async move {
                let _ = actor_task.await;
            }),
            unbounded_task,
            bounded_task,
        ];
        Ok((Self { actor, unbounded, bounded }, tasks))
    }

    async fn rtt_raw(&self, n: u64, timeout: Option<Duration>) -> Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            let (reply, answer) = oneshot::channel();
            self.unbounded.send(RawMsg::Ping(reply)).map_err(|_| anyhow!("the baseline task stopped"))?;
            let sum = match timeout {
                None => answer.await,
                Some(limit) => tokio::time::timeout(limit, answer).await.context("a baseline round trip timed out")?,
            };
            black_box(sum.context("the baseline task dropped a reply")?);
        }
        Ok(start.elapsed())
    }

    async fn rtt_actor(&self, n: u64, timeout: Option<Duration>) -> Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            match self.actor.call(EchoMsg::Ping, timeout).await? {
                CallResult::Success(sum) => black_box(sum),
                CallResult::Timeout => bail!("a call to the echo actor timed out"),
                CallResult::SenderError => bail!("the echo actor dropped a reply"),
            };
        }
        Ok(start.elapsed())
    }

    async fn cast_unbounded(&self, n: u64) -> Result<Duration> {
        let start = Instant::now();
        for i in 0..n {
            self.unbounded.send(RawMsg::Add(i)).map_err(|_| anyhow!("the baseline task stopped"))?;
        }
        let (reply, answer) = oneshot::channel();
        self.unbounded.send(RawMsg::Flush(reply)).map_err(|_| anyhow!("the baseline task stopped"))?;
        check_sum("unbounded mpsc", answer.await?, n)?;
        Ok(start.elapsed())
    }

    async fn cast_bounded(&self, n: u64) -> Result<Duration> {
        let start = Instant::now();
        for i in 0..n {
            self.bounded.send(RawMsg::Add(i)).await.map_err(|_| anyhow!("the baseline task stopped"))?;
        }
        let (reply, answer) = oneshot::channel();
        self.bounded.send(RawMsg::Flush(reply)).await.map_err(|_| anyhow!("the baseline task stopped"))?;
        check_sum("bounded mpsc", answer.await?, n)?;
        Ok(start.elapsed())
    }

    async fn cast_actor(&self, n: u64) -> Result<Duration> {
        let start = Instant::now();
        for i in 0..n {
            self.actor.cast(EchoMsg::Add(i))?;
        }
        let sum = match self.actor.call(EchoMsg::Flush, Some(Duration::from_secs(60))).await? {
            CallResult::Success(sum) => sum,
            _ => bail!("the echo actor did not answer the flush"),
        };
        check_sum("ractor cast", sum, n)?;
        Ok(start.elapsed())
    }
}

fn check_sum(what: &str, got: u64, n: u64) -> Result<()> {
    if got != expected_sum(n) {
        bail!("{what}: handled messages sum to {got}, expected {}; messages were lost", expected_sum(n));
    }
    Ok(())
}

/// Per-round ns/op of each variant.
#[derive(Default)]
struct Rounds {
    rtt_raw: Vec<f64>,
    rtt_raw_timeout: Vec<f64>,
    call: Vec<f64>,
    call_timeout: Vec<f64>,
    cast_unbounded: Vec<f64>,
    cast_bounded: Vec<f64>,
    cast_actor: Vec<f64>,
}

pub async fn run(config: ActorsConfig) -> Result<Vec<Target>> {
    // The client side runs as a task too, on a worker thread like the actor and the baselines.
    tokio::spawn(measure(config)).await.context("the actors benchmark task panicked")?
}

async fn measure(config: ActorsConfig) -> Result<Vec<Target>> {
    let n = config.iterations.max(1);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    println!(
        "actors: {n} operations per round, {} rounds of every variant, tokio multi-thread runtime, {workers} workers",
        config.rounds
    );
    let (subjects, tasks) = Subjects::start().await?;

    // Warm-up: a tenth of a round of everything (allocator, caches, the scheduler's queues).
    let warm = (n / 10).max(1);
    subjects.rtt_raw(warm, None).await?;
    subjects.rtt_raw(warm, Some(CALL_TIMEOUT)).await?;
    subjects.rtt_actor(warm, None).await?;
    subjects.rtt_actor(warm, Some(CALL_TIMEOUT)).await?;
    subjects.cast_unbounded(warm).await?;
    subjects.cast_bounded(warm).await?;
    subjects.cast_actor(warm).await?;

    let mut r = Rounds::default();
    for _ in 0..config.rounds.max(1) {
        r.rtt_raw.push(ns_per_op(subjects.rtt_raw(n, None).await?, n));
        r.rtt_raw_timeout.push(ns_per_op(subjects.rtt_raw(n, Some(CALL_TIMEOUT)).await?, n));
        r.call.push(ns_per_op(subjects.rtt_actor(n, None).await?, n));
        r.call_timeout.push(ns_per_op(subjects.rtt_actor(n, Some(CALL_TIMEOUT)).await?, n));
        r.cast_unbounded.push(ns_per_op(subjects.cast_unbounded(n).await?, n));
        r.cast_bounded.push(ns_per_op(subjects.cast_bounded(n).await?, n));
        r.cast_actor.push(ns_per_op(subjects.cast_actor(n).await?, n));
    }
    subjects.actor.stop(None);
    drop(subjects);
    for task in tasks {
        let _ = task.await;
    }

    let summary = |samples: &[f64]| Summary::of(samples).ok_or_else(|| anyhow!("no samples"));
    let ratios = |num: &[f64], den: &[f64]| paired_ratios(num, den).ok_or_else(|| anyhow!("no samples"));
    let rtt_raw = summary(&r.rtt_raw)?;
    let rtt_raw_timeout = summary(&r.rtt_raw_timeout)?;
    let call = summary(&r.call)?;
    let call_timeout = summary(&r.call_timeout)?;
    let cast_unbounded = summary(&r.cast_unbounded)?;
    let cast_bounded = summary(&r.cast_bounded)?;
    let cast_actor = summary(&r.cast_actor)?;
    // Costs over costs; throughput ratios are baseline cost over actor cost.
    let call_ratio = ratios(&r.call, &r.rtt_raw)?;
    let call_timeout_ratio = ratios(&r.call_timeout, &r.rtt_raw_timeout)?;
    let cast_ratio = ratios(&r.cast_unbounded, &r.cast_actor)?;
    let cast_bounded_ratio = ratios(&r.cast_bounded, &r.cast_actor)?;

    println!("  request/reply, ns per round trip (ratios: median of per-round ratios)");
    println!("    tokio mpsc + oneshot                {rtt_raw}");
    println!("    ractor call                         {call}");
    println!("      = {} the mpsc + oneshot round trip", ratio(&call_ratio));
    println!("    tokio mpsc + oneshot, 2 s timeout   {rtt_raw_timeout}");
    println!("    ractor call_t! (2 s timeout)        {call_timeout}");
    println!("      = {} the round trip with the same timeout", ratio(&call_timeout_ratio));
    println!("  one-way, ns per message (throughput = 1 / that)");
    println!("    tokio mpsc unbounded                {cast_unbounded}  = {}", per_second(cast_unbounded.median));
    println!(
        "    tokio mpsc bounded({BOUNDED_CAPACITY})             {cast_bounded}  = {}",
        per_second(cast_bounded.median)
    );
    println!("    ractor cast                         {cast_actor}  = {}", per_second(cast_actor.median));
    println!(
        "      = {} the unbounded mpsc's throughput, {} the bounded one's",
        ratio(&cast_ratio),
        ratio(&cast_bounded_ratio)
    );

    Ok(vec![
        Target::at_most("call/rtt", call_ratio.median, "x", 3.0),
        Target::info("call_t/rtt-with-timeout", call_timeout_ratio.median, "x"),
        Target::at_least("cast/mpsc", cast_ratio.median, "x", 0.3),
        Target::info("cast/bounded-mpsc", cast_bounded_ratio.median, "x"),
    ])
}

fn per_second(ns_per_message: f64) -> String {
    format!("{:.2} M msg/s", 1e3 / ns_per_message)
}
