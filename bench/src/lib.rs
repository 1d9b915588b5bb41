//! What the benchmark programs of `bench/` share: the cluster they run against, the per-process
//! figures Linux keeps in `/proc`, latency percentiles and the listeners measured. The programs: `consume-bench`
//! (throughput) and `host-bench` (latency, memory, scale-out).

pub mod cluster;
pub mod fill;
pub mod latencies;
pub mod listeners;
pub mod procfs;
