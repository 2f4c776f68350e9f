//! The load generator: `POST`s prepared `/v1/collect` bodies (each send with fresh event ids
//! and times, [`Body::fresh`], done before the request counts as sent, and in the open loop
//! before it is due) over a pool of
//! keep-alive HTTP/1.1 connections, either closed loop (each of `concurrency` clients sends its
//! next request when the last one is answered: the maximum rate) or open loop (requests start on
//! a fixed schedule whatever the answers, at most `concurrency` in flight; a request's latency
//! counts from when it was due, so a stalled server shows in the tail instead of slowing the
//! schedule down).
//!
//! A warm-up precedes the measured window; only requests due inside the window count.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use axum::body::Bytes;
use tokio::sync::Semaphore;

use super::synthetic::{Body, Rng};
use crate::pauses::{self, Probe};
use crate::sample::Summary;
use crate::steal::CpuTime;

/// Closed loop (as fast as answered) or open loop (a fixed rate of requests per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    Closed,
    Open { requests_per_second: f64 },
}

#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub pace: Pace,
}

/// What to send: one URL per tenant (its write key in the query), bodies to cycle through.
#[derive(Debug, Clone)]
pub struct Workload {
    pub urls: Arc<Vec<String>>,
    pub bodies: Arc<Vec<Body>>,
    pub events_per_request: u64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Requests answered 2xx in the window.
    pub requests: u64,
    /// Events those requests carried.
    pub events: u64,
    /// Events answered 2xx over the whole run, warm-up included (what the server should store).
    pub total_events: u64,
    /// Other answers and transport errors, by status or kind, over the whole run.
    pub failures: BTreeMap<String, u64>,
    /// Latency of the window's 2xx requests, in ns, from when each was due (open loop: the
    /// schedule's time, so a late sender counts against the answer; closed loop: its send).
    pub latency: Option<Summary>,
    /// The same from when each request actually left the load generator (its own delays on a
    /// busy machine — waiting for a core, the runtime picking the request up — left out).
    pub service: Option<Summary>,
    /// Where in the window the slowest 1 % of those requests were due (see [`Tail`]).
    pub tail: Option<Tail>,
    /// Where the slowest 1 % of those requests spent their time (see [`Stages`]; open loop only).
    pub stages: Option<Stages>,
    /// The machine's pauses in the window, and the requests in flight during one (open loop only).
    pub paused: Option<Paused>,
    pub window: Duration,
    /// The window's start by the wall clock, to set a stall against the node's log.
    pub window_start: chrono::DateTime<chrono::Utc>,
    /// The share of the machine's CPU time stolen by its hypervisor during the run, warm-up
    /// included (`None` where it cannot be read).
    pub steal: Option<f64>,
}

/// When the slowest 1 % of a window's requests (by latency from due) were due, in slots of
/// [`Tail::SLOT`]: a tail made by a few stalls (a store, a statistics refresh, the machine's
/// neighbours) sits in a few slots; one made by requests queueing behind one another under a
/// load near the ceiling is spread over the window.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Requests in the tail (at least one).
    pub requests: usize,
    /// Slots of the window holding at least one of them.
    pub slots: usize,
    /// The slot holding the most, its start (from the window's), and how many it holds.
    pub busiest: (Duration, usize),
}

impl Tail {
    pub const SLOT: Duration = Duration::from_millis(250);

    /// Slots in a window of this length.
    pub fn slots_in(window: Duration) -> u128 {
        window.as_millis().div_ceil(Self::SLOT.as_millis())
    }

    /// From (due time after the window's start, latency) of each request; `None` when empty.
    fn of(requests: &[(Duration, f64)]) -> Option<Self> {
        let slowest = slowest_percent(requests, |(_, latency)| *latency);
        let n = slowest.len();
        let mut counts = BTreeMap::<u128, usize>::new();
        for (due, _) in slowest {
            *counts.entry(due.as_millis() / Self::SLOT.as_millis()).or_default() += 1;
        }
        let (&slot, &most) = counts.iter().max_by_key(|(slot, count)| (**count, std::cmp::Reverse(**slot)))?;
        let slot_ms = u64::try_from(slot * Self::SLOT.as_millis()).unwrap_or(u64::MAX);
        Some(Self { requests: n, slots: counts.len(), busiest: (Duration::from_millis(slot_ms), most) })
    }
}

/// The slowest 1 % of `requests` (at least one, unless there are none) by `latency`, slowest first.
fn slowest_percent<T>(requests: &[T], latency: impl Fn(&T) -> f64) -> Vec<&T> {
    let mut by_latency: Vec<&T> = requests.iter().collect();
    by_latency.sort_by(|a, b| latency(b).total_cmp(&latency(a)));
    by_latency.truncate(requests.len().div_ceil(100));
    by_latency
}

/// The mean time the slowest 1 % of a window's requests (by latency from due) spent in each stage:
/// due until the load generator released it (its timer's lateness, and the wait for one of the
/// `concurrency` requests in flight to be answered), until its send began (the load generator
/// getting to it), and from that send until the answer was read. Open loop only (closed
/// loop sends when due).
#[derive(Debug, Clone, Copy)]
pub struct Stages {
    pub to_released: Duration,
    pub to_sent: Duration,
    pub to_answered: Duration,
}

impl Stages {
    /// From (latency from due, [due to released, released to sent, sent to answered]) of each request,
    /// all in ns; `None` when empty.
    fn of(requests: &[(f64, [f64; 3])]) -> Option<Self> {
        let slowest = slowest_percent(requests, |(latency, _)| *latency);
        if slowest.is_empty() {
            return None;
        }
        let mean = |stage: usize| {
            let sum: f64 = slowest.iter().map(|(_, parts)| parts[stage]).sum();
            Duration::from_secs_f64((sum / slowest.len() as f64 / 1e9).max(0.0))
        };
        Some(Self { to_released: mean(0), to_sent: mean(1), to_answered: mean(2) })
    }
}

/// The machine's pauses in an open-loop window ([`crate::pauses`]), and how many of the window's
/// requests (from due to answered) were in flight during one: all of them, and the slowest 1 %.
/// A tail mostly in flight during pauses, with few requests in all, is the machine's.
#[derive(Debug, Clone, Copy)]
pub struct Paused {
    pub summary: pauses::Summary,
    pub tail: usize,
    pub tail_in_pause: usize,
    pub all: usize,
    pub all_in_pause: usize,
}

impl Paused {
    /// The share of the slowest 1 % in flight during a pause, in per cent.
    pub fn tail_percent(&self) -> f64 {
        percent(self.tail_in_pause, self.tail)
    }

    /// The share of all requests in flight during a pause, in per cent.
    pub fn all_percent(&self) -> f64 {
        percent(self.all_in_pause, self.all)
    }

    /// From the probe's pauses and (due time after `from`, latency from due in ns) of each request.
    fn of(seen: &pauses::Pauses, from: Instant, to: Instant, requests: &[(Duration, f64)]) -> Self {
        let span = |(due, latency): &(Duration, f64)| {
            let start = from + *due;
            (start, start + Duration::from_secs_f64(latency.max(0.0) / 1e9))
        };
        let slowest = slowest_percent(requests, |(_, latency)| *latency);
        Self {
            summary: seen.summary(from, to),
            tail: slowest.len(),
            tail_in_pause: seen.in_flight(slowest.into_iter().map(span)),
            all: requests.len(),
            all_in_pause: seen.in_flight(requests.iter().map(span)),
        }
    }
}

fn percent(part: usize, of: usize) -> f64 {
    part as f64 * 100.0 / of.max(1) as f64
}

impl Outcome {
    pub fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64().max(1e-9)
    }

    pub fn failures_text(&self) -> String {
        if self.failures.is_empty() {
            return "none".to_owned();
        }
        self.failures.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Debug, Default)]
struct Recorder {
    /// Due time after the window's start, and latency from due, of each request in the window.
    timeline: Vec<(Duration, f64)>,
    /// Latency from due and the time in each stage ([`Stages`]) of the same requests, in ns (the
    /// last stage, from the send to the answer, is the latency from the send).
    stages: Vec<(f64, [f64; 3])>,
    requests: u64,
    events: u64,
    total_events: u64,
    failures: BTreeMap<String, u64>,
}

/// The measured window and what one request carries, shared by every sender.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The run's start: the open loop's schedule starts here (its warm-up's first request).
    start: Instant,
    from: Instant,
    to: Instant,
    events_per_request: u64,
}

/// When a request was due, released (a slot free, its send task started), sent and answered.
#[derive(Debug, Clone, Copy)]
struct Times {
    due: Instant,
    released: Instant,
    sent: Instant,
    done: Instant,
}

impl Recorder {
    fn record(&mut self, window: Window, times: Times, answer: &Result<u16, String>) {
        let Times { due, released, sent, done } = times;
        match answer {
            Ok(status) if (200..300).contains(status) => {
                self.total_events += window.events_per_request;
                if due >= window.from && due < window.to {
                    self.requests += 1;
                    self.events += window.events_per_request;
                    let latency = done.duration_since(due).as_secs_f64() * 1e9;
                    self.timeline.push((due.duration_since(window.from), latency));
                    let ns = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64() * 1e9;
                    self.stages.push((latency, [ns(due, released), ns(released, sent), ns(sent, done)]));
                }
            }
            Ok(status) => *self.failures.entry(format!("HTTP {status}")).or_default() += 1,
            Err(kind) => *self.failures.entry(kind.clone()).or_default() += 1,
        }
    }
}

/// An HTTP client for the load: keep-alive connections, no proxy, Nagle off.
pub fn client(concurrency: usize) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency.max(1))
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// A seed for the event ids of one sender of this process: no two senders, nor two runs, draw
/// the same (the ids' time alone would not part requests sent in the same millisecond).
fn seed_of(sender: usize) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let low = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or_default();
    low ^ (sender as u64).rotate_left(40) ^ u64::from(std::process::id()).rotate_left(20)
}

async fn send(client: &reqwest::Client, url: &str, body: Bytes) -> Result<u16, String> {
    let answer = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| if e.is_timeout() { "timeout".to_owned() } else { "transport error".to_owned() })?;
    let status = answer.status().as_u16();
    // Reading the answer to its end keeps the connection reusable.
    answer.bytes().await.map_err(|_| "truncated answer".to_owned())?;
    Ok(status)
}

pub async fn run(client: &reqwest::Client, workload: &Workload, load: Load) -> Result<Outcome> {
    if workload.urls.is_empty() || workload.bodies.is_empty() {
        return Err(anyhow!("the load needs at least one URL and one body"));
    }
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let cpu = CpuTime::now();
    let start = Instant::now();
    let window_start = chrono::Utc::now() + load.warmup;
    let window = Window {
        start,
        from: start + load.warmup,
        to: start + load.warmup + load.duration,
        events_per_request: workload.events_per_request,
    };
    let concurrency = load.concurrency.max(1);
    let seen = match load.pace {
        Pace::Closed => {
            closed(client, workload, concurrency, window, &recorder).await?;
            None
        }
        Pace::Open { requests_per_second } => {
            let probe = Probe::start()?;
            let sent = open(workload, concurrency, requests_per_second, window, &recorder).await;
            // Stopped whatever the load did: a real-time thread left ticking would outlive the run.
            let seen =
                tokio::task::spawn_blocking(move || probe.stop()).await.context("the pause probe's waiter panicked")?;
            sent?;
            Some(seen?)
        }
    };
    let recorder = std::mem::take(&mut *recorder.lock().map_err(|_| anyhow!("a sender panicked"))?);
    Ok(Outcome {
        requests: recorder.requests,
        events: recorder.events,
        total_events: recorder.total_events,
        failures: recorder.failures,
        latency: Summary::of(&recorder.timeline.iter().map(|(_, latency)| *latency).collect::<Vec<_>>()),
        service: Summary::of(&recorder.stages.iter().map(|(_, [.., answered])| *answered).collect::<Vec<_>>()),
        tail: Tail::of(&recorder.timeline),
        // A closed loop sends each request as it is due: nothing to split.
        stages: matches!(load.pace, Pace::Open { .. }).then(|| Stages::of(&recorder.stages)).flatten(),
        paused: seen.map(|seen| Paused::of(&seen, window.from, window.to, &recorder.timeline)),
        window: load.duration,
        window_start,
        steal: cpu.and_then(|c| c.stolen_since()),
    })
}

async fn closed(
    client: &reqwest::Client,
    workload: &Workload,
    concurrency: usize,
    window: Window,
    recorder: &Arc<Mutex<Recorder>>,
) -> Result<()> {
    let mut senders = Vec::with_capacity(concurrency);
    for sender in 0..concurrency {
        let (client, workload, recorder) = (client.clone(), workload.clone(), recorder.clone());
        let mut seeds = Rng::new(seed_of(sender));
        senders.push(tokio::spawn(async move {
            let mut k = sender;
            while Instant::now() < window.to {
                let url = &workload.urls[k % workload.urls.len()];
                let body =
                    workload.bodies[(k / workload.urls.len() + sender) % workload.bodies.len()].fresh(seeds.next_u64());
                k += concurrency;
                let due = Instant::now();
                let answer = send(&client, url, body).await;
                let done = Instant::now();
                let failed = !matches!(answer, Ok(200..300));
                if let Ok(mut r) = recorder.lock() {
                    r.record(window, Times { due, released: due, sent: due, done }, &answer);
                }
                if failed {
                    // A refusing server answers fast: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    for sender in senders {
        sender.await.context("a load sender panicked")?;
    }
    Ok(())
}

/// Requests a second one open-loop thread is given at most: on a busy two-core machine a single
/// thread fell behind its schedule at 7,182 requests/s (p99 134 ms from due against 4.8 ms from
/// the send), while at 1,000–1,250 it kept to it.
const REQUESTS_PER_THREAD: f64 = 2_000.0;

/// Open loop: threads of their own (one per [`REQUESTS_PER_THREAD`], at most one per core) each
/// run an interleaved share of the schedule (thread i of n: requests i, i + n, i + 2n, …) on a
/// single-threaded runtime, with a client and a share of the `concurrency` of their own. A
/// thread prepares each request's body ahead of its due time, waits for that time on a timerfd
/// (a high-resolution timer, late by the thread's timer slack, 50 µs by default: tokio's timer
/// ticks every millisecond, which at thousands of requests a
/// second would bunch them and count its own lateness against the server), then sends the
/// request and reads its answer itself. No request waits for a hand-off to another thread; on a
/// busy machine such a hand-off (a pacer thread waking a runtime worker) was a millisecond of the
/// tail that was the load generator's own.
async fn open(
    workload: &Workload,
    concurrency: usize,
    requests_per_second: f64,
    window: Window,
    recorder: &Arc<Mutex<Recorder>>,
) -> Result<()> {
    let rate = requests_per_second.max(0.1);
    let most = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(concurrency).max(1);
    let threads = (1..=most).find(|n| rate / *n as f64 <= REQUESTS_PER_THREAD).unwrap_or(most);
    let mut running = Vec::with_capacity(threads);
    for share in 0..threads {
        let part = Part {
            first: share,
            every: threads,
            slots: concurrency / threads + usize::from(share < concurrency % threads),
        };
        let (workload, recorder) = (workload.clone(), recorder.clone());
        let thread = std::thread::Builder::new().name(format!("load-open-{share}")).spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot build the open loop's runtime")?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, schedule(workload, part, rate, window, recorder))
        })?;
        running.push(thread);
    }
    for thread in running {
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("the open loop's waiter panicked")?
            .map_err(|_| anyhow!("the open loop panicked"))??;
    }
    Ok(())
}

/// One open-loop thread's share of the schedule: requests `first`, `first + every`, …, with at
/// most `slots` of them in flight.
#[derive(Debug, Clone, Copy)]
struct Part {
    first: usize,
    every: usize,
    slots: usize,
}

/// An open-loop thread's part of the schedule, on its own runtime (see [`open`]).
async fn schedule(
    workload: Workload,
    part: Part,
    rate: f64,
    window: Window,
    recorder: Arc<Mutex<Recorder>>,
) -> Result<()> {
    let client = client(part.slots)?;
    let timer = Timer::new()?;
    let slots = Arc::new(Semaphore::new(part.slots));
    let first = window.start;
    let mut seeds = Rng::new(seed_of(usize::MAX - part.first));
    for k in (part.first..).step_by(part.every.max(1)) {
        let due = first + Duration::from_secs_f64(k as f64 / rate);
        if due >= window.to {
            break;
        }
        let url = workload.urls[k % workload.urls.len()].clone();
        let body = workload.bodies[(k / workload.urls.len()) % workload.bodies.len()].fresh(seeds.next_u64());
        timer.wait_until(due).await?;
        // A full set of requests in flight holds the schedule back; the wait counts against the
        // late requests' latency (from their due time).
        let slot = slots.clone().acquire_owned().await.context("the request slots closed")?;
        let released = Instant::now();
        let (client, recorder) = (client.clone(), recorder.clone());
        tokio::task::spawn_local(async move {
            let sent = Instant::now();
            let answer = send(&client, &url, body).await;
            let done = Instant::now();
            if let Ok(mut r) = recorder.lock() {
                r.record(window, Times { due, released, sent, done }, &answer);
            }
            drop(slot);
        });
        // The request goes out now, before the next one's body is prepared.
        tokio::task::yield_now().await;
    }
    // Every slot back: every request answered (or timed out).
    let all = u32::try_from(part.slots).unwrap_or(u32::MAX);
    let _all = slots.acquire_many(all).await.context("the request slots closed")?;
    Ok(())
}

/// A one-shot timer on a timerfd, awaited on the runtime's I/O driver: it wakes the thread when
/// it expires (within the thread's timer slack, 50 µs by default), where tokio's own timer rounds
/// to the millisecond.
struct Timer {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Timer {
    fn new() -> Result<Self> {
        use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
        let fd = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)
            .context("cannot create a timerfd")?;
        // `AsyncFd::new` is deprecated as unsound for a descriptor that could be closed or replaced
        // under it; the `OwnedFd` it takes over cannot be, and its replacement (`register`) is
        // `unsafe`, which this workspace forbids.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::new(fd).context("cannot register the timerfd")?;
        Ok(Self { fd })
    }

    /// Returns at `at` (at once when it is past).
    async fn wait_until(&self, at: Instant) -> Result<()> {
        use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let value =
            Timespec { tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX), tv_nsec: left.subsec_nanos().into() };
        let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
        timerfd_settime(
            self.fd.get_ref(),
            TimerfdTimerFlags::empty(),
            &Itimerspec { it_interval: zero, it_value: value },
        )
        .context("cannot arm the timerfd")?;
        loop {
            let mut ready = self.fd.readable().await.context("cannot wait for the timerfd")?;
            let mut expirations = [0_u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expirations[..]) {
                Ok(_) => return Ok(()),
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(anyhow!("cannot read the timerfd: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_stall_puts_the_tail_in_one_slot() {
        // 1,000 requests, one every 10 ms; the ten due between 5.00 and 5.09 s waited 40 ms.
        let requests: Vec<(Duration, f64)> =
            (0..1_000).map(|i| (ms(i * 10), if (500..510).contains(&i) { 40e6 } else { 1e6 })).collect();
        let tail = Tail::of(&requests).expect("a tail");
        assert_eq!((tail.requests, tail.slots, Tail::slots_in(ms(10_000))), (10, 1, 40));
        assert_eq!(tail.busiest, (ms(5_000), 10));
    }

    #[test]
    fn a_spread_tail_is_counted_slot_by_slot() {
        // The slow ones every 100th request: ten of them, in ten slots; the busiest is the first.
        let requests: Vec<(Duration, f64)> =
            (0..1_000).map(|i| (ms(i * 10), if i % 100 == 7 { 9e6 } else { 1e6 })).collect();
        let tail = Tail::of(&requests).expect("a tail");
        assert_eq!((tail.requests, tail.slots), (10, 10));
        assert_eq!(tail.busiest, (ms(0), 1));
        assert!(Tail::of(&[]).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_open_loop_sends_every_request_due_in_its_window() -> Result<()> {
        // Due at k / rate: a window holds the same requests whatever the machine's speed (a late
        // one still counts by its due time), each answered 202 by the no-op server. 400 a second
        // for 0.1 s of warm-up and 0.5 s: k = 40..240 in the window. 4,000 a second (two threads
        // where there are two cores) for 0.05 s and 0.25 s: k = 200..1200.
        let server = crate::ingest::noop::NoopServer::start(1)?;
        let (bodies, _) = crate::ingest::synthetic::bodies(&mut Rng::new(7), 4, 3);
        let workload = Workload {
            urls: Arc::new(vec![format!("{}/v1/collect", server.base())]),
            bodies: Arc::new(bodies),
            events_per_request: 3,
        };
        for (rate, warmup, duration, (in_window, all)) in
            [(400.0, ms(100), ms(500), (200, 240)), (4_000.0, ms(50), ms(250), (1_000, 1_200))]
        {
            let load = Load { concurrency: 4, warmup, duration, pace: Pace::Open { requests_per_second: rate } };
            let outcome = run(&client(4)?, &workload, load).await?;
            assert_eq!(outcome.failures_text(), "none", "at {rate}/s");
            assert_eq!((outcome.requests, outcome.events), (in_window, in_window * 3), "at {rate}/s");
            assert_eq!(outcome.total_events, all * 3, "at {rate}/s: the warm-up's requests were sent and answered too");
            let (latency, service, stages) =
                (outcome.latency.expect("latency"), outcome.service.expect("service"), outcome.stages.expect("stages"));
            let count = usize::try_from(in_window)?;
            assert_eq!((latency.count, service.count), (count, count), "at {rate}/s");
            assert!(latency.min >= service.min, "a request's latency from due includes its time from its send");
            assert!(stages.to_answered > Duration::ZERO);
        }
        server.stop().await?;
        Ok(())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_timer_never_returns_before_its_time() -> Result<()> {
        let timer = Timer::new()?;
        for wait in [ms(0), ms(1), ms(3), Duration::from_micros(250)] {
            let at = Instant::now() + wait;
            timer.wait_until(at).await?;
            assert!(Instant::now() >= at, "returned before {wait:?} had passed");
        }
        // A time already past returns at once, with the timer left disarmed.
        timer.wait_until(Instant::now().checked_sub(ms(5)).unwrap_or_else(Instant::now)).await?;
        Ok(())
    }

    #[test]
    fn the_stages_are_those_of_the_slowest_requests() {
        // 200 requests: two slow ones (the slowest 1 %) waited for a slot; the rest were quick.
        let mut requests: Vec<(f64, [f64; 3])> = (0..198).map(|_| (1e6, [1e4, 2e4, 97e4])).collect();
        requests.push((6e6, [4e6, 1e5, 19e5]));
        requests.push((8e6, [6e6, 3e5, 17e5]));
        let stages = Stages::of(&requests).expect("stages");
        assert_eq!(stages.to_released, ms(5));
        assert_eq!(stages.to_sent, Duration::from_micros(200));
        assert_eq!(stages.to_answered, Duration::from_micros(1_800));
        assert!(Stages::of(&[]).is_none());
    }

    #[test]
    fn the_requests_in_flight_during_a_pause_are_counted_from_due_to_answered() {
        // 200 requests, one due every 10 ms, each answered in 1 ms, but two: due at 1,000 and
        // 1,500 ms, answered after 30 ms (the slowest 1 %). The machine paused from 1,020 to
        // 1,040 ms (the first slow one in flight, and the quick ones due at 1,020 and 1,030) and
        // from 1,700 to 1,703 (the one due at 1,700).
        let from = Instant::now();
        let mut requests: Vec<(Duration, f64)> = (0..200).map(|k| (ms(10 * k), 1e6)).collect();
        requests[100].1 = 30e6;
        requests[150].1 = 30e6;
        let seen = pauses::Pauses {
            realtime: true,
            pauses: vec![
                pauses::Pause { from: from + ms(1_020), to: from + ms(1_040) },
                pauses::Pause { from: from + ms(1_700), to: from + ms(1_703) },
            ],
        };
        let paused = Paused::of(&seen, from, from + ms(2_000), &requests);
        assert_eq!((paused.tail_in_pause, paused.tail), (1, 2));
        assert_eq!((paused.all_in_pause, paused.all), (4, 200));
        assert_eq!(paused.summary.count, 2);
        assert_eq!(paused.summary.total, ms(23));
    }
}
