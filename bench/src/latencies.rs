//! Latency samples: exact percentiles (the samples are few enough to keep and sort) and a
//! histogram of fixed, roughly doubling buckets for printing.

use std::fmt::Write as _;
use std::time::Duration;

/// Upper bounds of the histogram's buckets; a last, open bucket holds the rest.
const BOUNDS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_000, 3_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000];

/// Latencies of one consumer, in the order they were recorded.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    sorted: bool,
    samples: Vec<Duration>,
}

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.sorted = false;
        self.samples.push(d);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `q` quantile (0..=1) by the nearest-rank method; `None` without samples.
    pub fn quantile(&mut self, q: f64) -> Option<Duration> {
        if !self.sorted {
            self.samples.sort_unstable();
            self.sorted = true;
        }
        let n = self.samples.len();
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as usize).clamp(1, n.max(1));
        self.samples.get(rank - 1).copied()
    }

    /// Samples per bucket of [`BOUNDS_US`] (a sample equal to a bound falls in that bound's
    /// bucket), the open bucket last.
    pub fn histogram(&self) -> [u64; BOUNDS_US.len() + 1] {
        let mut counts = [0; BOUNDS_US.len() + 1];
        for d in &self.samples {
            let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            counts[BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(BOUNDS_US.len())] += 1;
        }
        counts
    }

    /// `p50 … p90 … p99 … max …` in ms.
    pub fn summary(&mut self) -> String {
        let mut line = String::new();
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("max", 1.0)]
        {
            let value =
                self.quantile(q).map_or_else(|| "-".to_owned(), |d| format!("{:.2}", ms(d)));
            let _ = write!(line, "{name} {value:>7} ms  ");
        }
        line.trim_end().to_owned()
    }

    /// The histogram as rows `≤ bound: count (share) bar`, beside `other`'s counts if given.
    pub fn print_histogram(&self, name: &str, other: Option<(&str, &Self)>) {
        let mine = self.histogram();
        let theirs = other.map(|(_, o)| o.histogram());
        let share = |n: u64, total: usize| 100.0 * n as f64 / total.max(1) as f64;
        print!("  {:>12}  {:>20}", "latency", name);
        if let Some((other_name, _)) = other {
            print!("  {other_name:>20}");
        }
        println!();
        for (i, n) in mine.iter().enumerate() {
            let label = match BOUNDS_US.get(i) {
                Some(b) => format!("≤ {:.2} ms", *b as f64 / 1e3),
                None => format!("> {:.0} ms", BOUNDS_US[BOUNDS_US.len() - 1] as f64 / 1e3),
            };
            let bar = "#".repeat((share(*n, self.len()) / 2.0).ceil() as usize);
            print!("  {label:>12}  {n:>8} {:>6.2} %   ", share(*n, self.len()));
            if let (Some(t), Some((_, o))) = (&theirs, other) {
                print!("  {:>8} {:>6.2} %   ", t[i], share(t[i], o.len()));
            }
            println!("  {bar}");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(us: &[u64]) -> Latencies {
        let mut l = Latencies::default();
        for u in us {
            l.push(Duration::from_micros(*u));
        }
        l
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let us = |v| Some(Duration::from_micros(v));
        let table: [(&[u64], f64, Option<Duration>); 6] = [
            (&[], 0.5, None),
            (&[7], 0.99, us(7)),
            (&[4, 1, 3, 2], 0.5, us(2)),
            (&[4, 1, 3, 2], 0.51, us(3)),
            (&[4, 1, 3, 2], 1.0, us(4)),
            (&[4, 1, 3, 2], 0.0, us(1)),
        ];
        for (samples, q, want) in table {
            assert_eq!(of(samples).quantile(q), want, "{samples:?} q {q}");
        }
    }

    #[test]
    fn a_sample_on_a_bound_falls_in_that_bounds_bucket() {
        let h = of(&[0, 100, 101, 1_000_000, 1_000_001, 5_000_000]).histogram();
        assert_eq!(h[0], 2);
        assert_eq!(h[1], 1);
        assert_eq!(h[BOUNDS_US.len() - 1], 1);
        assert_eq!(h[BOUNDS_US.len()], 2);
        assert_eq!(h.iter().sum::<u64>(), 6);
    }
}
