//! What a run costs: CPU time of each process and of the machine, memory, batch sizes.

use crate::*;

/// CPU time used so far, in clock ticks: by the service, by the PostgreSQL postmaster and its
/// children (the backends, the WAL writer, the checkpointer…), by this process, and by the whole
/// machine (busy and total, from /proc/stat, which shows how noisy the machine was).
pub(crate) struct CpuSnapshot {
    pub(crate) service: Option<u64>,
    pub(crate) postgres: Option<u64>,
    pub(crate) loadgen: u64,
    pub(crate) machine_busy: u64,
    pub(crate) machine_total: u64,
}

#[derive(Serialize, Clone, Copy)]
pub(crate) struct CpuSeconds {
    pub(crate) service: Option<f64>,
    pub(crate) postgres: Option<f64>,
    pub(crate) loadgen: f64,
    pub(crate) machine_busy: f64,
    /// Wall time × cores.
    pub(crate) machine_capacity: f64,
}

impl CpuSnapshot {
    pub(crate) fn take(service: Option<u32>, postgres: Option<u32>) -> CpuSnapshot {
        let (machine_busy, machine_total) = machine_ticks();
        CpuSnapshot {
            service: service.and_then(process_ticks),
            postgres: postgres.map(|pid| {
                process_ticks(pid).unwrap_or(0)
                    + children(pid)
                        .into_iter()
                        .filter_map(process_ticks)
                        .sum::<u64>()
            }),
            loadgen: process_ticks(std::process::id()).unwrap_or(0),
            machine_busy,
            machine_total,
        }
    }

    pub(crate) fn since(&self, earlier: &CpuSnapshot) -> CpuSeconds {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let secs = |now: u64, then: u64| now.saturating_sub(then) as f64 / hz;
        CpuSeconds {
            service: self.service.zip(earlier.service).map(|(a, b)| secs(a, b)),
            postgres: self.postgres.zip(earlier.postgres).map(|(a, b)| secs(a, b)),
            loadgen: secs(self.loadgen, earlier.loadgen),
            machine_busy: secs(self.machine_busy, earlier.machine_busy),
            machine_capacity: secs(self.machine_total, earlier.machine_total),
        }
    }
}

/// The fields of /proc/<pid>/stat after the command name.
pub(crate) fn proc_stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of a process (and of its waited-for children).
pub(crate) fn process_ticks(pid: u32) -> Option<u64> {
    let f = proc_stat_fields(pid)?;
    // Fields 14-17 of proc(5): utime, stime, cutime, cstime; the list starts at field 3.
    (11..15).map(|i| f.get(i)?.parse::<u64>().ok()).sum()
}

pub(crate) fn children(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            proc_stat_fields(pid)
                .is_some_and(|f| f.get(1).and_then(|p| p.parse().ok()) == Some(ppid))
        })
        .collect()
}

/// (busy, total) ticks of all CPUs.
pub(crate) fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// New events of this run per inserting transaction.
pub(crate) const BATCHES: &str = r#"
with b as (
    select received_at, count(*) as n from events
    where hook_id = any($1)
    group by received_at
)
select count(*),
       coalesce(avg(n), 0)::float8,
       coalesce(percentile_disc(0.5) within group (order by n), 0),
       coalesce(percentile_disc(0.9) within group (order by n), 0),
       coalesce(max(n), 0)
from b
"#;

pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub(crate) fn emit(report: &Value, json_out: Option<&Path>) -> Result<(), BoxError> {
    let line = serde_json::to_string(report)?;
    println!("{line}");
    if let Some(path) = json_out {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{line}")?;
    }
    Ok(())
}
