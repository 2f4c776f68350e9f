//! Pauses of the whole machine during a phase, which the steal column ([`crate::steal`]) does not
//! always show: a probe thread due every millisecond records how late it wakes. Where the bench
//! may take the highest real-time priority (`SCHED_FIFO`: as root, or with `CAP_SYS_NICE`)
//! nothing in the guest stands between the probe and a core, so a wake-up milliseconds late is
//! the virtual machine stopped by its host (or the kernel not preempting). On one two-core
//! machine here the probe, with the guest idle, woke more than 5 ms late 13 times in 20 s
//! (at most 48 ms late), with no steal counted; under the ingest benchmark's load it did 146
//! times in 170 s. A request in flight across such a pause waits it out, whatever the server
//! does, so a latency phase says how many pauses it had and how many of its slowest 1 % were in
//! flight during one ([`Pauses::in_flight`]).
//!
//! Without real-time priority the probe waits for a core like everything else, and its pauses
//! include that wait; the report says which it was.
//!
//! Its cost: a thousand wake-ups a second took about 3 % of one core on that machine (140 ms of
//! CPU time in 5 s, read from `/proc/<pid>/task/*/stat`), each preempting whatever ran for some
//! tens of microseconds; against a latency target in milliseconds that is noise, and a coarser
//! tick would miss the pauses of a few milliseconds that such a target is made of.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

/// The probe's period.
pub const TICK: Duration = Duration::from_millis(1);
/// A wake-up at least this late is a pause: twice the period, well above the timer's and the
/// kernel's ordinary jitter (tens of microseconds), and a fair share of a 5 ms latency target.
pub const PAUSE: Duration = Duration::from_millis(2);

/// A pause: from when the first tick missed was due until the probe woke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub from: Instant,
    pub to: Instant,
}

impl Pause {
    pub fn length(&self) -> Duration {
        self.to.saturating_duration_since(self.from)
    }
}

/// What a probe saw.
#[derive(Debug, Clone, Default)]
pub struct Pauses {
    /// Whether it ran at real-time priority (if not, its pauses include waiting for a core).
    pub realtime: bool,
    /// Every pause, in order.
    pub pauses: Vec<Pause>,
}

/// The pauses of one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub realtime: bool,
    pub count: usize,
    pub longest: Duration,
    pub total: Duration,
}

impl Pauses {
    /// The pauses overlapping `[from, to)`, cut to it.
    pub fn within(&self, from: Instant, to: Instant) -> Vec<Pause> {
        self.pauses
            .iter()
            .filter(|p| p.from < to && p.to > from)
            .map(|p| Pause { from: p.from.max(from), to: p.to.min(to) })
            .collect()
    }

    /// Count, longest and total of the pauses in `[from, to)`.
    pub fn summary(&self, from: Instant, to: Instant) -> Summary {
        let pauses = self.within(from, to);
        Summary {
            realtime: self.realtime,
            count: pauses.len(),
            longest: pauses.iter().map(Pause::length).max().unwrap_or_default(),
            total: pauses.iter().map(Pause::length).sum(),
        }
    }

    /// How many of `requests` (each from its due time to its answer) were in flight during a
    /// pause: they overlap one.
    pub fn in_flight(&self, requests: impl IntoIterator<Item = (Instant, Instant)>) -> usize {
        // Sorted by start (as recorded); each request is looked up by binary search on the ends.
        let ends: Vec<Instant> = self.pauses.iter().map(|p| p.to).collect();
        requests
            .into_iter()
            .filter(|&(from, to)| {
                // The first pause ending after the request starts: the only candidate that can
                // also start before it ends (the pauses do not overlap one another).
                let first = ends.partition_point(|&end| end <= from);
                self.pauses.get(first).is_some_and(|p| p.from < to)
            })
            .count()
    }
}

/// A running probe; [`Probe::stop`] ends it and returns what it saw.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Pauses>>,
}

impl Probe {
    pub fn start() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pause-probe".to_owned())
            .spawn(move || watch(&flag))
            .context("cannot start the pause probe")?;
        Ok(Self { stop, thread })
    }

    /// Stops the probe (within one tick) and returns its pauses.
    pub fn stop(self) -> Result<Pauses> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow!("the pause probe panicked"))?
    }
}

/// The probe's loop: a periodic timerfd, read blocking; each read returns the expirations since
/// the last, so a late wake-up is seen as several at once, the first of them due when the pause
/// began.
fn watch(stop: &AtomicBool) -> Result<Pauses> {
    use thread_priority::{RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
    let realtime = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Max,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .is_ok();
    let timer = rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC)
        .context("cannot create the pause probe's timerfd")?;
    let tick = Timespec { tv_sec: 0, tv_nsec: i64::from(TICK.subsec_nanos()) };
    let start = Instant::now();
    rustix::time::timerfd_settime(
        &timer,
        TimerfdTimerFlags::empty(),
        &Itimerspec { it_interval: tick, it_value: tick },
    )
    .context("cannot arm the pause probe's timerfd")?;
    let mut ticks: u32 = 0;
    let mut pauses = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let mut expirations = [0_u8; 8];
        match rustix::io::read(&timer, &mut expirations[..]) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(anyhow!("cannot read the pause probe's timerfd: {e}")),
        }
        let now = Instant::now();
        let due = start + TICK * ticks.saturating_add(1);
        let expired = u32::try_from(u64::from_ne_bytes(expirations)).unwrap_or(u32::MAX);
        ticks = ticks.saturating_add(expired);
        if now.saturating_duration_since(due) >= PAUSE {
            pauses.push(Pause { from: due, to: now });
        }
    }
    Ok(Pauses { realtime, pauses })
}

/// "a real-time probe due every millisecond was 2 ms or more late 12 time(s) (at most 48.1 ms,
/// 190.2 ms in all)", or that it never was.
pub fn text(summary: &Summary) -> String {
    let probe = if summary.realtime {
        "a real-time probe due every millisecond"
    } else {
        "a probe due every millisecond (not real-time: its lateness includes waiting for a core)"
    };
    if summary.count == 0 {
        return format!("{probe} was never {} ms or more late", PAUSE.as_millis());
    }
    format!(
        "{probe} was {} ms or more late {} time(s) (at most {:.1} ms, {:.1} ms in all)",
        PAUSE.as_millis(),
        summary.count,
        summary.longest.as_secs_f64() * 1e3,
        summary.total.as_secs_f64() * 1e3
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn seen(at: Instant, spans: &[(u64, u64)]) -> Pauses {
        Pauses {
            realtime: true,
            pauses: spans.iter().map(|&(a, b)| Pause { from: at + ms(a), to: at + ms(b) }).collect(),
        }
    }

    #[test]
    fn a_window_counts_the_pauses_it_overlaps_cut_to_it() {
        let at = Instant::now();
        let pauses = seen(at, &[(10, 14), (100, 148), (500, 503)]);
        let summary = pauses.summary(at + ms(12), at + ms(400));
        assert_eq!(summary.count, 2);
        assert_eq!(summary.longest, ms(48));
        assert_eq!(summary.total, ms(2 + 48));
        assert_eq!(pauses.summary(at + ms(200), at + ms(400)).count, 0);
    }

    #[test]
    fn a_request_overlapping_a_pause_was_in_flight_during_it() {
        let at = Instant::now();
        let pauses = seen(at, &[(10, 14), (100, 148)]);
        let requests = [
            (at + ms(0), at + ms(5)),     // before
            (at + ms(9), at + ms(11)),    // into the first
            (at + ms(12), at + ms(13)),   // inside it
            (at + ms(14), at + ms(99)),   // between: ends and starts touch, no overlap
            (at + ms(90), at + ms(200)),  // across the second
            (at + ms(147), at + ms(150)), // leaving it
            (at + ms(149), at + ms(150)), // after
        ];
        assert_eq!(pauses.in_flight(requests), 4);
    }

    #[test]
    fn the_probe_sees_a_stop_of_its_process() -> Result<()> {
        // A stop of the whole process stands in for a stop of the machine: a child stops this
        // process (SIGSTOP), sleeps 50 ms, and lets it go on (SIGCONT).
        let probe = Probe::start()?;
        std::thread::sleep(ms(20));
        let pid = std::process::id();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -STOP {pid}; sleep 0.05; kill -CONT {pid}"))
            .status()
            .context("cannot run sh")?;
        assert!(status.success(), "the stopper failed: {status}");
        std::thread::sleep(ms(20));
        let pauses = probe.stop()?;
        assert!(
            pauses.pauses.iter().any(|p| p.length() >= ms(40)),
            "no pause of 40 ms or more among {:?}",
            pauses.pauses.iter().map(Pause::length).collect::<Vec<_>>()
        );
        assert!(pauses.pauses.iter().all(|p| p.length() >= PAUSE));
        Ok(())
    }
}
