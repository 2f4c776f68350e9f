//! Transport throughput: an echo actor in a peer process (this binary re-executed as the hidden
//! `cluster-peer` subcommand), reached over ractor_cluster on loopback through the process group
//! it joins, against the same actor spawned in this process. ractor's process groups are
//! process-global, so two nodes must be two processes.
//!
//! The actor speaks the node router's shape (`cluster/src/transport.rs`): a
//! `RactorClusterMessage` enum of `Vec<u8>` payloads, each an encoded
//! [`flywheel_contracts::cluster::Echo`] (bincode 2 behind a format byte). The caller encodes
//! every request and decodes every reply, locally and remotely alike.
//!
//! Measured per payload (64 B and 4 KiB): sequential `call_t!`s, the same number of calls from
//! K concurrent callers, and N one-way casts followed by `Count` calls until every cast is
//! accounted for. Local and remote rounds alternate; each figure is the median of its rounds,
//! and remote/local is the median of the per-round ratios.

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use flywheel_contracts::cluster::{Echo, Wire};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, NodeServerMessage, RactorClusterMessage};

use crate::limits::bounded;
use crate::sample::{Summary, ns_per_op, paired_ratios, ratio};
use crate::target::Target;

/// The process group the peer's echo actor joins.
const GROUP: &str = "flywheel.bench.echo";
/// What `call_t!` waits for each reply.
const CALL_TIMEOUT_MS: u64 = 5_000;
/// The peer's start, the connection and the group sync.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// Upper bound on the measurements.
const LIMIT: Duration = Duration::from_secs(300);
/// How long the casts of one round may take to be counted after the last one was sent.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// The environment variable that hands the peer its cookie (not its command line, which `ps`
/// shows).
const COOKIE_ENV: &str = "FLYWHEEL_BENCH_PEER_COOKIE";

/// The payload sizes measured, with the summary's names for their figures.
struct Payload {
    bytes: usize,
    label: &'static str,
    call: &'static str,
    concurrent: &'static str,
    cast: &'static str,
}

const PAYLOADS: [Payload; 2] = [
    Payload {
        bytes: 64,
        label: "64 B",
        call: "cluster-call-64B/local",
        concurrent: "cluster-call-64B-concurrent/local",
        cast: "cluster-cast-64B/local",
    },
    Payload {
        bytes: 4096,
        label: "4 KiB",
        call: "cluster-call-4KiB/local",
        concurrent: "cluster-call-4KiB-concurrent/local",
        cast: "cluster-cast-4KiB/local",
    },
];

#[derive(Debug, Clone, clap::Args)]
pub struct TransportConfig {
    /// Calls per round, sequential and (spread over the callers) concurrent.
    #[arg(
        id = "cluster_calls",
        long = "cluster-calls",
        env = "FLYWHEEL_BENCH_CLUSTER_CALLS",
        value_name = "N",
        default_value_t = 2_000
    )]
    pub calls: u64,
    /// Concurrent callers of the concurrent request/reply variant.
    #[arg(
        id = "cluster_callers",
        long = "cluster-callers",
        env = "FLYWHEEL_BENCH_CLUSTER_CALLERS",
        value_name = "K",
        default_value_t = 16
    )]
    pub callers: u64,
    /// One-way casts per round.
    #[arg(
        id = "cluster_casts",
        long = "cluster-casts",
        env = "FLYWHEEL_BENCH_CLUSTER_CASTS",
        value_name = "N",
        default_value_t = 20_000
    )]
    pub casts: u64,
    /// Measured rounds of every variant (0 skips the transport benchmark).
    #[arg(
        id = "cluster_rounds",
        long = "cluster-rounds",
        env = "FLYWHEEL_BENCH_CLUSTER_ROUNDS",
        value_name = "N",
        default_value_t = 5
    )]
    pub rounds: u32,
}

/// The echo actor's messages: the node router's shape.
#[derive(RactorClusterMessage)]
pub enum EchoMsg {
    /// One-way: an encoded [`Echo`], decoded and counted (as the router decodes a forwarded run).
    Cast(Vec<u8>),
    /// An encoded [`Echo`], answered with the same bytes (as the router's `Echo`).
    #[rpc]
    Echo(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// How many casts were decoded since the last `Count`.
    #[rpc]
    Count(RpcReplyPort<u64>),
}

/// The measured actor, in the peer (joining [`GROUP`]) or in this process (the baseline).
struct EchoActor {
    join: bool,
}

impl Actor for EchoActor {
    type Msg = EchoMsg;
    /// Casts decoded since the last `Count`.
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<EchoMsg>, _args: ()) -> Result<u64, ActorProcessingErr> {
        if self.join {
            ractor::pg::join(GROUP.to_owned(), vec![myself.get_cell()]);
        }
        Ok(0)
    }

    async fn handle(
        &self,
        _myself: ActorRef<EchoMsg>,
        message: EchoMsg,
        count: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EchoMsg::Cast(bytes) => {
                if let Ok(echo) = Echo::decode(&bytes) {
                    black_box(echo.seq);
                    *count += 1;
                }
            }
            EchoMsg::Echo(bytes, reply) => {
                let _ = reply.send(bytes);
            }
            EchoMsg::Count(reply) => {
                let _ = reply.send(std::mem::take(count));
            }
        }
        Ok(())
    }
}

/// The hidden `cluster-peer` subcommand's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// Where the peer's node server listens (127.0.0.1).
    #[arg(long)]
    pub port: u16,
    #[arg(long, env = COOKIE_ENV, hide_env_values = true)]
    pub cookie: String,
}

/// The peer process: a node server and an echo actor in [`GROUP`]; prints `ready` once both
/// run and exits when its standard input closes (the benchmark ended, or died).
pub async fn peer(args: PeerArgs) -> Result<()> {
    let server = NodeServer::new(
        args.port,
        args.cookie,
        "bench-peer".to_owned(),
        Ipv4Addr::LOCALHOST.to_string(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (server, _) =
        Actor::spawn(None, server, ()).await.map_err(|e| anyhow!("cannot start the peer's node server: {e}"))?;
    let (echo, _) = Actor::spawn(None, EchoActor { join: true }, ())
        .await
        .map_err(|e| anyhow!("cannot spawn the peer's echo actor: {e}"))?;
    println!("ready");
    tokio::task::spawn_blocking(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    })
    .await
    .context("the peer's stdin watcher panicked")?;
    echo.stop(None);
    server.stop(None);
    Ok(())
}

/// The peer process, seen from the benchmark: killed when dropped, and its stdin closed, so it
/// also ends if this process dies first.
struct PeerProcess {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl PeerProcess {
    fn start(port: u16, cookie: &str) -> Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable to start the peer")?;
        let mut child = Command::new(exe)
            .args(["cluster-peer", "--port", &port.to_string()])
            .env(COOKIE_ENV, cookie)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the peer process")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("the peer's stdout was not captured"))?;
        let peer = Self { child, _stdin: stdin };
        // Blocking read on a thread; if it times out, killing the peer (drop) ends the read.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
        });
        match rx.recv_timeout(CONNECT_LIMIT) {
            Ok(Ok(line)) if line.trim() == "ready" => Ok(peer),
            Ok(Ok(line)) => bail!("the peer did not start (it printed {line:?})"),
            Ok(Err(e)) => Err(e).context("cannot read the peer's output"),
            Err(_) => bail!("the peer did not start within {CONNECT_LIMIT:?}"),
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Connects this process's node server to the peer and waits until the peer's echo actor
/// shows in [`GROUP`].
async fn connect(server: &ActorRef<NodeServerMessage>, peer: SocketAddr) -> Result<ActorRef<EchoMsg>> {
    let start = Instant::now();
    let mut connected = false;
    loop {
        if !connected {
            match ractor_cluster::client_connect(server, peer).await {
                Ok(()) => connected = true,
                Err(e) if start.elapsed() >= CONNECT_LIMIT => bail!("cannot connect to the peer at {peer}: {e}"),
                Err(_) => {}
            }
        }
        if let Some(cell) = ractor::pg::get_members(&GROUP.to_owned()).into_iter().next() {
            return Ok(ActorRef::from(cell));
        }
        if start.elapsed() >= CONNECT_LIMIT {
            bail!("the peer's echo actor did not appear in process group {GROUP} within {CONNECT_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn request(seq: u64, payload: &[u8]) -> Vec<u8> {
    Echo { seq, payload: payload.to_vec() }.encode()
}

async fn call(target: &ActorRef<EchoMsg>, seq: u64, payload: &[u8]) -> Result<()> {
    let bytes = ractor::call_t!(target, EchoMsg::Echo, CALL_TIMEOUT_MS, request(seq, payload))
        .map_err(|e| anyhow!("an echo call failed: {e}"))?;
    let reply = Echo::decode(&bytes).context("an echo reply did not decode")?;
    if reply.seq != seq || reply.payload.len() != payload.len() {
        bail!("an echo reply does not match its request");
    }
    Ok(())
}

async fn calls(target: &ActorRef<EchoMsg>, n: u64, payload: &[u8]) -> Result<Duration> {
    let start = Instant::now();
    for seq in 0..n {
        call(target, seq, payload).await?;
    }
    Ok(start.elapsed())
}

/// `n` calls spread over `callers` tasks (the remainder goes to the first).
async fn concurrent_calls(target: &ActorRef<EchoMsg>, n: u64, callers: u64, payload: &[u8]) -> Result<Duration> {
    let callers = callers.clamp(1, n.max(1));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let share = n / callers + if i == 0 { n % callers } else { 0 };
            let (target, payload) = (target.clone(), payload.to_vec());
            tokio::spawn(async move {
                for seq in 0..share {
                    call(&target, seq, &payload).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a caller task panicked")??;
    }
    Ok(start.elapsed())
}

/// `n` casts, then `Count` calls until all `n` were decoded.
async fn casts(target: &ActorRef<EchoMsg>, n: u64, payload: &[u8]) -> Result<Duration> {
    let start = Instant::now();
    for seq in 0..n {
        target.cast(EchoMsg::Cast(request(seq, payload))).map_err(|e| anyhow!("a cast failed: {e}"))?;
    }
    let sent = Instant::now();
    let mut counted = 0;
    loop {
        counted += ractor::call_t!(target, EchoMsg::Count, CALL_TIMEOUT_MS)
            .map_err(|e| anyhow!("a count call failed: {e}"))?;
        if counted >= n {
            break;
        }
        if sent.elapsed() >= DRAIN_LIMIT {
            bail!("{counted} of {n} casts arrived within {DRAIN_LIMIT:?} of the last one; messages were lost");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if counted != n {
        bail!("{counted} casts counted, {n} sent");
    }
    Ok(start.elapsed())
}

/// ns per message of each variant, per round.
#[derive(Default)]
struct Rounds {
    call: [Vec<f64>; 2],
    concurrent: [Vec<f64>; 2],
    cast: [Vec<f64>; 2],
}

const LOCAL: usize = 0;
const REMOTE: usize = 1;

pub async fn run(config: TransportConfig) -> Result<Vec<Target>> {
    if config.rounds == 0 {
        println!("cluster transport: skipped (--cluster-rounds 0)");
        return Ok(Vec::new());
    }
    // The callers run as tasks on worker threads, like the actors and the node sessions.
    tokio::spawn(async move { bounded("the cluster transport benchmark", LIMIT, measure(config)).await })
        .await
        .context("the cluster transport benchmark task panicked")?
}

async fn measure(config: TransportConfig) -> Result<Vec<Target>> {
    let calls_n = config.calls.max(1);
    let casts_n = config.casts.max(1);
    let callers = config.callers.max(1);
    println!(
        "cluster transport: ractor_cluster between this process and a peer process on loopback vs the same echo \
         actor in this process; per round {calls_n} calls (sequential, then from {callers} concurrent callers) and \
         {casts_n} casts, {} rounds, payloads 64 B and 4 KiB",
        config.rounds
    );
    let cookie = uuid::Uuid::new_v4().simple().to_string();
    let peer_port = free_port()?;
    let peer = PeerProcess::start(peer_port, &cookie)?;
    let server = NodeServer::new(
        free_port()?,
        cookie,
        "bench-main".to_owned(),
        Ipv4Addr::LOCALHOST.to_string(),
        None,
        Some(NodeConnectionMode::Isolated),
    )
    .with_listen_addr(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (server, server_task) =
        Actor::spawn(None, server, ()).await.map_err(|e| anyhow!("cannot start this process's node server: {e}"))?;
    let (local, local_task) = Actor::spawn(None, EchoActor { join: false }, ())
        .await
        .map_err(|e| anyhow!("cannot spawn the local echo actor: {e}"))?;
    let outcome = async {
        let start = Instant::now();
        let remote = connect(&server, SocketAddr::from((Ipv4Addr::LOCALHOST, peer_port))).await?;
        println!("  peer pid {} connected; its echo actor joined {GROUP} after {:?}", peer.child.id(), start.elapsed());
        let subjects = [&local, &remote];
        let mut rounds = [Rounds::default(), Rounds::default()];
        for (p, payload) in PAYLOADS.iter().enumerate() {
            let bytes = vec![0xa5u8; payload.bytes];
            // Warm-up: a tenth of a round of everything.
            for target in subjects {
                calls(target, calls_n / 10 + 1, &bytes).await?;
                concurrent_calls(target, calls_n / 10 + 1, callers, &bytes).await?;
                casts(target, casts_n / 10 + 1, &bytes).await?;
            }
            let r = &mut rounds[p];
            for _ in 0..config.rounds {
                for (side, target) in subjects.iter().enumerate() {
                    r.call[side].push(ns_per_op(calls(target, calls_n, &bytes).await?, calls_n));
                    r.concurrent[side]
                        .push(ns_per_op(concurrent_calls(target, calls_n, callers, &bytes).await?, calls_n));
                    r.cast[side].push(ns_per_op(casts(target, casts_n, &bytes).await?, casts_n));
                }
            }
        }
        report(&rounds, callers)
    }
    .await;
    local.stop(None);
    server.stop(None);
    let _ = local_task.await;
    let _ = server_task.await;
    drop(peer);
    outcome
}

fn report(rounds: &[Rounds; 2], callers: u64) -> Result<Vec<Target>> {
    let summary = |samples: &[f64]| Summary::of(samples).ok_or_else(|| anyhow!("no samples"));
    let mut targets = Vec::new();
    for (payload, r) in PAYLOADS.iter().zip(rounds) {
        let encoded = request(0, &vec![0u8; payload.bytes]).len();
        println!("  payload {} (an encoded Echo of {encoded} bytes); messages/s, median of rounds", payload.label);
        let concurrent = format!("request/reply, {callers} callers");
        let variants = [
            ("request/reply, 1 caller", &r.call, payload.call),
            (concurrent.as_str(), &r.concurrent, payload.concurrent),
            ("one-way casts", &r.cast, payload.cast),
        ];
        for (what, samples, name) in variants {
            let (local, remote) = (summary(&samples[LOCAL])?, summary(&samples[REMOTE])?);
            // Throughput remote/local = local ns per message / remote ns per message.
            let relative = paired_ratios(&samples[LOCAL], &samples[REMOTE]).ok_or_else(|| anyhow!("no samples"))?;
            println!(
                "    {what:<26} local {:>11}  remote {:>11}  remote/local {}",
                per_second(local.median),
                per_second(remote.median),
                ratio(&relative)
            );
            targets.push(Target::info(name, relative.median, "x"));
        }
    }
    Ok(targets)
}

fn per_second(ns_per_message: f64) -> String {
    let rate = 1e9 / ns_per_message;
    if rate >= 1e6 { format!("{:.2} M/s", rate / 1e6) } else { format!("{:.1} k/s", rate / 1e3) }
}
