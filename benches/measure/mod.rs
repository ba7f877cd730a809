//! Shared by the benchmarks: percentiles and formatting.
#![allow(dead_code)] // each bench uses its own subset

use std::time::Duration;

/// The `p` quantile (0.0..=1.0) of `samples`, nearest rank.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// (median, p95).
pub fn stats(mut samples: Vec<Duration>) -> (Duration, Duration) {
    (percentile(&mut samples, 0.5), percentile(&mut samples, 0.95))
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
