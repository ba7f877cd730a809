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

/// Seconds from busybox `time`'s "real 0m 1.23s" line.
pub fn busybox_real(stderr: &str) -> f64 {
    let line = stderr.lines().find(|l| l.starts_with("real")).expect("time output");
    let rest = line.trim_start_matches("real").trim();
    let (m, s) = rest.split_once('m').expect("minutes");
    m.trim().parse::<f64>().expect("m") * 60.0
        + s.trim().trim_end_matches('s').parse::<f64>().expect("s")
}
