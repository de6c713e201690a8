//! CPU threading of candle's kernels, and the allocator's handling of freed memory.

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

/// Set to `system` to leave glibc's allocator as it is (see [`keep_freed_memory`]).
pub const INSTRUCTREC_MALLOC: &str = "INSTRUCTREC_MALLOC";

/// Makes glibc's allocator keep freed memory for the next allocation instead of handing it back
/// to the kernel.
///
/// glibc serves large allocations (above a threshold that grows to at most 32 MiB) by mapping
/// fresh pages and unmaps them on free. A training step allocates and frees hundreds of MiB of
/// activations and gradients (the logits alone are batch x target x vocabulary floats), so
/// each step faulted in and zeroed those pages again: 14% of a profile of the default step,
/// and system time was a third of the step's CPU time. Served from the heap instead, trimmed
/// only above 1 GiB of free memory at its top, the default step took 0.71-0.72 s instead of
/// 1.00-1.05 s, at 2% more peak memory (docs/performance.md). A flan-t5-small-shaped step frees
/// more than 1 GiB at once, so that threshold still let it fault in about 400,000 pages (1.6
/// GB) every step; the threshold is now the largest glibc takes (2 GiB), under which no step
/// faults after the first; the process keeps its peak resident size until it exits.
///
/// Call it first thing in `main`. `INSTRUCTREC_MALLOC=system` leaves glibc as it is, to
/// compare. (Setting any of glibc's own `MALLOC_*_` variables also turns off its adaptive
/// threshold, so they cannot stand for its default.) Does nothing where the C library is not
/// glibc.
pub fn keep_freed_memory() {
    if std::env::var(INSTRUCTREC_MALLOC).is_ok_and(|v| v == "system") {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // allocate, and a refused value leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

/// Minor page faults this process has taken (Linux's /proc/self/stat; `None` elsewhere): each
/// is a page the kernel mapped and, for fresh memory, zeroed. A training step that reuses its
/// freed memory takes none after the first step.
pub fn minor_page_faults() -> Option<u64> {
    stat_fields()?.get(7)?.parse().ok()
}

/// The fields of /proc/self/stat after the parenthesised command name.
fn stat_fields() -> Option<Vec<String>> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit(')').next()?;
    Some(after.split_whitespace().map(String::from).collect())
}

/// CPU seconds this process has used on all its threads (Linux's /proc/self/stat; `None`
/// elsewhere). On a shared machine this tracks the work a benchmark did better than wall time.
pub fn process_cpu_seconds() -> Option<f64> {
    // utime and stime are the 12th and 13th fields after the parenthesised command name.
    let fields = stat_fields()?;
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
