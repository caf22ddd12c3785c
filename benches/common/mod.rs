//! What the benchmarks share: their environment switches, the statistics
//! of their tables (median, range, ratio) and where cargo put what they run.

#![allow(dead_code)]

use std::path::PathBuf;

/// `BENCH_REPEAT` (at least 1), else `default`: how many times each
/// measurement runs.
pub fn repeat(default: usize) -> usize {
    std::env::var("BENCH_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(default).max(1)
}

/// True unless the comma-separated list in `var` is set and does not name
/// `name` (e.g. `BENCH_PROGRAMS=redis`).
pub fn wanted(var: &str, name: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.split(',').any(|w| w.trim() == name))
}

/// Median of `samples`, if any.
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => None,
        n if n % 2 == 1 => Some(s[n / 2]),
        n => Some((s[n / 2 - 1] + s[n / 2]) / 2.0),
    }
}

/// `median [min-max]` of `samples` with `digits` decimals for the median
/// and `range_digits` for the range; `-` if there are none.
pub fn summary(samples: &[f64], digits: usize, range_digits: usize) -> String {
    match median(samples) {
        Some(m) => {
            let lo = samples.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{m:.digits$} [{lo:.range_digits$}-{hi:.range_digits$}]")
        }
        None => "-".into(),
    }
}

/// `a / b` with two decimals, `-` if either is missing.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// The release `libvls.so` cargo built with this benchmark (`bench`, its
/// name in `cargo bench --bench NAME`): `cargo bench` leaves it beside the
/// binary in `target/release/deps/`; `cargo build --release` puts one in
/// `target/release/`.
pub fn libvls(bench: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let deps = exe.parent().ok_or("this binary has no directory")?;
    [deps, deps.parent().unwrap_or(deps)]
        .iter()
        .map(|d| d.join("libvls.so"))
        .find(|so| so.is_file())
        .ok_or_else(|| {
            format!(
                "no libvls.so in {} or its parent: run as `cargo bench --features vpp --bench {bench}`, \
                 or build it with `cargo build --release --features vpp --lib`",
                deps.display()
            )
        })
}
