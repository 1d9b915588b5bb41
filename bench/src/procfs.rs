//! Per-process figures from Linux's `/proc` (`None` elsewhere or once the process is gone).

use std::sync::OnceLock;
use std::time::Duration;

/// utime + stime of `pid` from `/proc/<pid>/stat`: its CPU time, all threads.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second() as f64))
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// Resident memory of a process: now (`VmRSS`) and its peak so far (`VmHWM`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    pub now: u64,
    pub peak: u64,
}

impl Rss {
    /// Reads `/proc/<pid>/status`.
    pub fn read(pid: u32) -> Option<Self> {
        parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
    }
}

/// `VmRSS` and `VmHWM` of a `/proc/<pid>/status` text (`<name>:  <n> kB` lines).
fn parse_status(status: &str) -> Option<Rss> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok().map(|kib| kib * 1024)
        })
    };
    Some(Rss { now: field("VmRSS")?, peak: field("VmHWM")? })
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_rss_and_peak() {
        let table = [
            ("VmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n", Some(Rss { now: 1 << 20, peak: 2 << 20 })),
            ("VmRSS:\t1 kB\n", None),
            ("VmRSSx:\t1 kB\nVmHWM:\t1 kB\n", None),
            ("VmRSS:\tmany kB\nVmHWM:\t1 kB\n", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_status(text), want, "{text:?}");
        }
    }
}
