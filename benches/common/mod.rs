//! What the benchmark harnesses share (`mod common;`): their arguments, the
//! results table and its Reading, quantiles and duration formats.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

/// The command line of a harness.
pub struct Args {
    /// `--quick`: smaller sizes, for trying the harness out.
    pub quick: bool,
    /// `--out FILE`: also write the results there.
    pub out: Option<String>,
    /// `--only 2,4`: run only these rows (for working on one of them).
    pub only: Option<Vec<u32>>,
}

impl Args {
    /// The arguments, or `None` without `--bench`: `cargo test --all-targets`
    /// runs bench targets without it, and benchmarks never run in CI.
    pub fn parse() -> Option<Args> {
        let args: Vec<String> = std::env::args().collect();
        if !args.iter().any(|a| a == "--bench") {
            return None;
        }
        Some(Args {
            quick: args.iter().any(|a| a == "--quick"),
            out: args
                .iter()
                .position(|a| a == "--out")
                .and_then(|i| args.get(i + 1).cloned()),
            only: args
                .iter()
                .position(|a| a == "--only")
                .and_then(|i| args.get(i + 1))
                .map(|rows| rows.split(',').filter_map(|r| r.parse().ok()).collect()),
        })
    }

    /// Whether row `n` is to be run.
    pub fn runs(&self, n: u32) -> bool {
        !matches!(&self.only, Some(only) if !only.contains(&n))
    }

    /// Prints `text` and writes it to `--out`, if given.
    pub fn finish(&self, text: &str) {
        println!("{text}");
        if let Some(path) = &self.out {
            std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        }
    }
}

/// Whether a row meets its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Met {
    Yes,
    No,
    /// A comparison whose 95 % confidence interval holds both sides of the
    /// goal: neither met nor missed measurably on this machine.
    Tie,
}

impl From<bool> for Met {
    fn from(met: bool) -> Met {
        if met {
            Met::Yes
        } else {
            Met::No
        }
    }
}

/// One row of the results table.
pub struct Row {
    pub name: String,
    pub ours: String,
    pub baseline: String,
    pub goal: String,
    pub met: Met,
    pub reading: String,
}

/// The `q` quantile (nearest rank) of `samples`, which it sorts.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i]
}

/// The median of a few numbers (of repeated rounds).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n => values[n / 2],
    }
}

/// The median of `values` and a distribution-free 95 % confidence interval
/// for it, from order statistics (the normal approximation of the binomial):
/// `(low, median, high)`.
pub fn median_ci(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let half_width = 1.96 * (n as f64).sqrt() / 2.0;
    let low = ((n as f64 / 2.0 - half_width).floor() as usize).min(n - 1);
    let high = ((n as f64 / 2.0 + half_width).ceil() as usize).min(n - 1);
    (values[low], values[n / 2], values[high])
}

/// `1.23 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `123 µs`.
pub fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// `12.3 µs`.
pub fn us1(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// `12.3k/s`.
pub fn rate(per_second: f64) -> String {
    format!("{:.1}k/s", per_second / 1000.0)
}

/// The markdown section of a harness: `title`, a line on the setup, the
/// table, any detail tables, and a Reading of each row.
pub fn section(title: &str, setup: &str, rows: &[Row], details: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## {title}\n\n{setup}\n");
    let _ = writeln!(
        out,
        "| benchmark | tonic-etcd | baseline (same run) | goal | met |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    for r in rows {
        let met = match r.met {
            Met::Yes => "yes",
            Met::No => "**no**",
            Met::Tie => "**tie**",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            r.name, r.ours, r.baseline, r.goal, met
        );
    }
    if !details.is_empty() {
        let _ = writeln!(out, "\n{}", details.trim_end());
    }
    let _ = writeln!(out, "\nReading:\n");
    for r in rows {
        let _ = writeln!(out, "- **{}**: {}", r.name, r.reading);
    }
    out
}
