//! CPU time the hypervisor gave to other guests while a phase ran ("steal", the eighth column of
//! `/proc/stat`'s `cpu` line), as a share of the machine's CPU time. On a shared virtual machine
//! the host can slow everything measured several-fold for seconds (one run here, before this was
//! measured: an edge round at 185,904 events/s, the next two at 53,928 and 45,344, the no-op
//! handler's beside them falling alike). A phase prints its share next to its figures, so a run
//! slowed by stolen time is read as the machine's and not the code's; a swing with none stolen
//! (seen too) comes from the host in ways a guest cannot see.

/// The machine's CPU time so far, in clock ticks: all of it, and the part stolen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTime {
    total: u64,
    stolen: u64,
}

impl CpuTime {
    /// Now; `None` where `/proc/stat` cannot be read (not Linux) or reads unexpectedly.
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        Self::parse(stat.lines().next()?)
    }

    /// The aggregate line: `cpu user nice system idle iowait irq softirq steal guest guest_nice`.
    /// Guest time is already counted in user and nice, so the total is the first eight columns.
    fn parse(line: &str) -> Option<Self> {
        let mut fields = line.split_ascii_whitespace();
        if fields.next()? != "cpu" {
            return None;
        }
        let columns: Vec<u64> = fields.take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
        (columns.len() == 8).then(|| Self { total: columns.iter().sum(), stolen: columns[7] })
    }

    /// The share of the CPU time from `self` to `later` that was stolen, 0 to 1; `None` when no
    /// tick passed.
    pub fn stolen_until(&self, later: &Self) -> Option<f64> {
        let total = later.total.checked_sub(self.total).filter(|&t| t > 0)?;
        let stolen = later.stolen.saturating_sub(self.stolen);
        Some(stolen as f64 / total as f64)
    }

    /// The share stolen from `self` until now.
    pub fn stolen_since(&self) -> Option<f64> {
        self.stolen_until(&Self::now()?)
    }
}

/// "12 %" for a known share, "?" for an unknown one.
pub fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "?".to_owned(), |s| format!("{:.0} %", s * 100.0))
}

/// "; the hypervisor took 12 % of the CPU time (steal)" for a known share, else nothing.
pub fn text(share: Option<f64>) -> String {
    share.map(|s| format!("; the hypervisor took {} of the CPU time (steal)", percent(Some(s)))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_stolen_is_steal_over_all_eight_columns() {
        let before = CpuTime::parse("cpu  273475 1629 26618 212528 1899 0 4489 7644 0 0").unwrap();
        // 100 ticks pass, 25 of them stolen; guest columns move without counting twice.
        let after = CpuTime::parse("cpu  273515 1629 26628 212548 1899 0 4494 7669 30 0").unwrap();
        assert_eq!(before.stolen_until(&after), Some(0.25));
        assert_eq!(after.stolen_until(&after), None, "no tick passed");
        assert_eq!(after.stolen_until(&before), None, "time does not run backwards");
    }

    #[test]
    fn other_lines_and_short_lines_are_not_read() {
        assert_eq!(CpuTime::parse("cpu0 1 2 3 4 5 6 7 8 0 0"), None);
        assert_eq!(CpuTime::parse("cpu  1 2 3 4 5 6 7"), None, "a kernel without the steal column");
        assert_eq!(CpuTime::parse("cpu  1 2 x 4 5 6 7 8"), None);
    }

    #[test]
    fn this_machine_has_a_cpu_line() {
        if cfg!(target_os = "linux") {
            let now = CpuTime::now().expect("/proc/stat's cpu line");
            assert!(now.total > 0 && now.stolen <= now.total);
        }
    }

    #[test]
    fn the_text_names_the_share_or_nothing() {
        assert_eq!(text(Some(0.123)), "; the hypervisor took 12 % of the CPU time (steal)");
        assert_eq!(text(None), "");
        assert_eq!(percent(Some(0.004)), "0 %");
        assert_eq!(percent(None), "?");
    }
}
