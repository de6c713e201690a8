//! CPU threading of candle's kernels.

/// The environment variable candle reads, once, to size its pool for elementwise kernels.
pub const CANDLE_NUM_THREADS: &str = "CANDLE_NUM_THREADS";

/// Makes candle run its elementwise CPU kernels (adds, products, exp, reductions, copies) on the
/// calling thread; matrix products stay parallel on rayon's pool (`RAYON_NUM_THREADS`).
///
/// candle 0.11 runs large elementwise kernels on its own thread pool, whose caller busy-waits
/// for the workers. On the 2-core machine this project trains on, shared with other jobs, the
/// spinning took over half the CPU time of a training step: with one thread a `small` training
/// step went from 5.5-6.0 s to 2.0 s of wall time (docs/performance.md).
///
/// Call it first thing in `main`, before any other thread exists: it sets an environment
/// variable, and candle reads it when it first needs the pool. An explicit
/// `CANDLE_NUM_THREADS` is left alone.
pub fn serial_elementwise_ops() {
    if std::env::var_os(CANDLE_NUM_THREADS).is_none() {
        std::env::set_var(CANDLE_NUM_THREADS, "1");
    }
}

/// CPU seconds this process has used on all its threads (Linux's /proc/self/stat; `None`
/// elsewhere). On a shared machine this tracks the work a benchmark did better than wall time.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // utime and stime are the 12th and 13th fields after the parenthesised command name.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
