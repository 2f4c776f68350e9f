//! Summaries of repeated timings: a benchmark collects samples (nanoseconds per operation, one
//! per round or one per operation) and reports their median, which a stray scheduler hiccup or
//! fsync stall does not move, next to the mean and the tail.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub median: f64,
    pub mean: f64,
    pub min: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// `None` when there are no samples.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
        // Nearest rank, so that p99 of a handful of samples is their maximum.
        let rank = (n * 99).div_ceil(100).clamp(1, n);
        Some(Self {
            count: n,
            median,
            mean: sorted.iter().sum::<f64>() / n as f64,
            min: sorted[0],
            p99: sorted[rank - 1],
            max: sorted[n - 1],
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "median {} (mean {}, min {}, p99 {}; {} samples)",
            Nanos(self.median),
            Nanos(self.mean),
            Nanos(self.min),
            Nanos(self.p99),
            self.count
        )
    }
}

/// Ratios of paired samples, `numerator[i] / denominator[i]`: when each round measures both
/// sides back to back, interference that lasts longer than a round (another process compiling,
/// a frequency change) scales both and cancels out of the ratio.
pub fn paired_ratios(numerator: &[f64], denominator: &[f64]) -> Option<Summary> {
    let ratios: Vec<f64> = numerator.iter().zip(denominator).map(|(n, d)| n / d).collect();
    Summary::of(&ratios)
}

/// A ratio summary for the figures: `2.80x (rounds 2.41-3.32x)`.
pub fn ratio(summary: &Summary) -> String {
    format!("{:.2}x (rounds {:.2}-{:.2}x)", summary.median, summary.min, summary.max)
}

/// Nanoseconds, printed in the unit that keeps them readable.
#[derive(Debug, Clone, Copy)]
pub struct Nanos(pub f64);

impl fmt::Display for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        if ns >= 1e6 {
            write!(f, "{:.3} ms", ns / 1e6)
        } else if ns >= 1e4 {
            write!(f, "{:.1} µs", ns / 1e3)
        } else {
            write!(f, "{ns:.0} ns")
        }
    }
}

/// Nanoseconds per operation of a round of `ops` operations.
pub fn ns_per_op(elapsed: Duration, ops: u64) -> f64 {
    elapsed.as_secs_f64() * 1e9 / ops.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_mean_and_tail_of_a_few_samples() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 100.0]).expect("samples");
        assert_eq!((s.count, s.median, s.mean, s.min, s.p99, s.max), (4, 4.0, 27.25, 1.0, 100.0, 100.0));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn paired_ratios_divide_round_by_round() {
        let r = paired_ratios(&[2.0, 9.0, 4.0], &[1.0, 3.0, 1.0]).expect("samples");
        assert_eq!((r.median, r.min, r.max), (3.0, 2.0, 4.0));
        assert_eq!(ratio(&r), "3.00x (rounds 2.00-4.00x)");
    }

    #[test]
    fn nanoseconds_print_in_a_readable_unit() {
        assert_eq!(Nanos(850.0).to_string(), "850 ns");
        assert_eq!(Nanos(12_500.0).to_string(), "12.5 µs");
        assert_eq!(Nanos(2_345_000.0).to_string(), "2.345 ms");
    }
}
