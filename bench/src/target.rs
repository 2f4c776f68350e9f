//! `Target`: one measured figure next to the bound issue 3 sets for it, and the one summary line
//! a run of `flywheel-bench` ends with.

use std::fmt;

/// The bound a figure must respect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// The figure must not exceed this (a cost ratio, a size).
    AtMost(f64),
    /// The figure must reach at least this (a throughput ratio).
    AtLeast(f64),
    /// Reported for context; no target.
    Info,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Short and stable, for grepping the summary line: `call/rtt`, `checkpoint/insert`, …
    pub name: &'static str,
    pub value: f64,
    /// Printed right after the value: `x` for a ratio, ` KB` for a size.
    pub unit: &'static str,
    pub bound: Bound,
}

impl Target {
    pub fn at_most(name: &'static str, value: f64, unit: &'static str, limit: f64) -> Self {
        Self { name, value, unit, bound: Bound::AtMost(limit) }
    }

    pub fn at_least(name: &'static str, value: f64, unit: &'static str, limit: f64) -> Self {
        Self { name, value, unit, bound: Bound::AtLeast(limit) }
    }

    pub fn info(name: &'static str, value: f64, unit: &'static str) -> Self {
        Self { name, value, unit, bound: Bound::Info }
    }

    /// `None` for a figure reported for context only.
    pub fn met(&self) -> Option<bool> {
        match self.bound {
            Bound::AtMost(limit) => Some(self.value <= limit),
            Bound::AtLeast(limit) => Some(self.value >= limit),
            Bound::Info => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:.2}{}", self.name, self.value, self.unit)?;
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        match self.bound {
            Bound::AtMost(limit) => write!(f, " (target <= {limit}{}: {})", self.unit, verdict(self.value <= limit)),
            Bound::AtLeast(limit) => write!(f, " (target >= {limit}{}: {})", self.unit, verdict(self.value >= limit)),
            Bound::Info => write!(f, " (info)"),
        }
    }
}

/// The one summary line: every figure with its verdict, then the overall verdict.
pub fn summary(benchmark: &str, targets: &[Target]) -> String {
    let figures: Vec<String> = targets.iter().map(Target::to_string).collect();
    let checked = targets.iter().filter_map(Target::met).count();
    let missed = targets.iter().filter(|t| t.met() == Some(false)).count();
    let verdict = match (missed, checked) {
        (0, 1) => "the target met".to_owned(),
        (0, n) => format!("all {n} targets met"),
        (m, n) => format!("{m} of {n} targets MISSED"),
    };
    format!("SUMMARY {benchmark}: {} => {verdict}", figures.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_each_figure_and_the_overall_verdict() {
        let targets = [
            Target::at_most("call/rtt", 2.5, "x", 3.0),
            Target::at_least("cast/mpsc", 0.2, "x", 0.3),
            Target::info("runtime-step/insert", 4.0, "x"),
        ];
        assert_eq!(
            summary("actors", &targets),
            "SUMMARY actors: call/rtt 2.50x (target <= 3x: met); cast/mpsc 0.20x (target >= 0.3x: MISSED); \
             runtime-step/insert 4.00x (info) => 1 of 2 targets MISSED"
        );
    }
}
