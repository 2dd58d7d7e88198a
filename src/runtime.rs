//! The tokio runtime (IO) and the rayon pool (decoding, encoding, copies), built lazily,
//! sized by [`threads`], rebuilt when that count changes, and rebuilt in a forked child: a
//! child inherits neither runtime's threads, so using the parent's would hang.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::ThreadPool;
use tokio::runtime::Runtime;

/// The environment variable that sets [`threads`] in every process that reads it (children
/// inherit it), unless [`set_threads`] overrides it in one process.
pub const THREADS_ENV: &str = "BIGARRAYS_NUM_THREADS";

/// Tokio workers only drive IO (syscalls, TLS, small copies); more than this many buys
/// nothing, however many cores decode.
const MAX_IO_WORKERS: usize = 8;

/// The tokio runtime that drives store IO.
///
/// When the last handle to a replaced runtime goes, its tasks may still be running: reads
/// spawn fetches and wait for their results on channels, without a handle. So the runtime
/// is shut down only once it has no task left (or after [`REAP_WAIT`]), by a thread of its
/// own: waiting where the handle was dropped could block a runtime thread, which tokio
/// forbids.
pub struct Io(std::mem::ManuallyDrop<Runtime>);

/// How long a replaced runtime may keep running tasks (an idle pooled HTTP connection's
/// task lives up to 90 s) before it is shut down regardless.
const REAP_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

impl Deref for Io {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        &self.0
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        // SAFETY: the runtime is taken once, here, and `self` is never used again.
        let runtime = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        if runtime.metrics().num_alive_tasks() == 0 {
            return runtime.shutdown_background();
        }
        // If the thread cannot start, the closure is dropped with the runtime inside it,
        // un-dropped: its idle threads are leaked rather than its tasks cut short.
        let runtime = std::mem::ManuallyDrop::new(runtime);
        let _ = std::thread::Builder::new()
            .name("bigarrays-reap".to_string())
            .spawn(move || {
                let runtime = std::mem::ManuallyDrop::into_inner(runtime);
                let deadline = std::time::Instant::now() + REAP_WAIT;
                while runtime.metrics().num_alive_tasks() > 0
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                runtime.shutdown_background();
            });
    }
}

struct Runtimes {
    pid: u32,
    threads: usize,
    io: Arc<Io>,
    cpu: Arc<ThreadPool>,
}

static CURRENT: Mutex<Option<Runtimes>> = Mutex::new(None);

/// A thread count chosen in one process, packed with that process's id: a forked child
/// inherits the memory but not the choice (it makes its own, e.g. as a DataLoader worker).
struct PerProcess(AtomicU64);

impl PerProcess {
    const fn new() -> Self {
        PerProcess(AtomicU64::new(0))
    }

    fn set(&self, n: Option<usize>) {
        let n = n.map_or(0, |n| n.clamp(1, u32::MAX as usize) as u64);
        let packed = if n == 0 {
            0
        } else {
            (u64::from(std::process::id()) << 32) | n
        };
        self.0.store(packed, Ordering::SeqCst);
    }

    fn get(&self) -> Option<usize> {
        let packed = self.0.load(Ordering::SeqCst);
        let (pid, n) = ((packed >> 32) as u32, (packed & 0xffff_ffff) as usize);
        (n > 0 && pid == std::process::id()).then_some(n)
    }
}

/// `set_threads` in this process.
static CHOSEN: PerProcess = PerProcess::new();
/// A caller's default for this process (the Python binding sets a DataLoader worker's share).
static DEFAULT: PerProcess = PerProcess::new();

/// The cores this process may use, asked once: on Linux the answer reads cgroup files,
/// which every read's planning would otherwise pay for again.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

/// `BIGARRAYS_NUM_THREADS` as this process found it at first use: `Ok(None)` when unset,
/// `Err` with the text when it is not a positive integer (then it is ignored here; the
/// Python module refuses to load with it, naming the variable).
pub fn env_threads() -> std::result::Result<Option<usize>, String> {
    static ENV: OnceLock<std::result::Result<Option<usize>, String>> = OnceLock::new();
    ENV.get_or_init(|| match std::env::var(THREADS_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(v.to_string_lossy().into_owned()),
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(text),
        },
    })
    .clone()
}

/// The threads the engine uses in this process: the CPU pool has this many, the IO runtime
/// this many up to 8, and the in-flight byte budgets of reads scale with it. Chosen by, in
/// order: [`set_threads`] in this process, `BIGARRAYS_NUM_THREADS`, [`set_default_threads`]
/// in this process, the machine's [`cores`].
pub fn threads() -> usize {
    CHOSEN
        .get()
        .or_else(|| env_threads().ok().flatten())
        .or_else(|| DEFAULT.get())
        .unwrap_or_else(cores)
}

/// Whether the thread count was chosen explicitly (by [`set_threads`] in this process or
/// the environment variable), so that no default applies.
pub fn threads_chosen() -> bool {
    CHOSEN.get().is_some() || matches!(env_threads(), Ok(Some(_)))
}

/// Sets [`threads`] for this process (`None`: back to the default). Reads already running
/// finish on the pools they started with; the next one builds pools of the new size.
pub fn set_threads(n: Option<usize>) {
    CHOSEN.set(n);
}

/// Sets the count [`threads`] falls back to in this process when nothing chose one.
pub fn set_default_threads(n: Option<usize>) {
    DEFAULT.set(n);
}

fn build(pid: u32, threads: usize) -> Runtimes {
    let workers = threads.min(MAX_IO_WORKERS);
    // Tokio starts its workers first, when the runtime is built; later threads are its
    // blocking pool (local file reads), which exit after 10 s idle. Naming them apart lets
    // a thread listing tell the fixed threads from the passing ones.
    let started = Arc::new(AtomicUsize::new(0));
    Runtimes {
        pid,
        threads,
        io: Arc::new(Io(std::mem::ManuallyDrop::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name_fn(move || {
                    if started.fetch_add(1, Ordering::Relaxed) < workers {
                        "bigarrays-io".to_string()
                    } else {
                        "bigarrays-blk".to_string()
                    }
                })
                .enable_all()
                .build()
                .expect("cannot start the tokio runtime (out of threads?)"),
        ))),
        cpu: Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("bigarrays-cpu-{i}"))
                .build()
                .expect("cannot start the rayon pool (out of threads?)"),
        ),
    }
}

fn with_runtimes<R>(f: impl FnOnce(&Runtimes) -> R) -> R {
    let pid = std::process::id();
    let lock = || {
        let mut guard = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|r| r.pid != pid) {
            // Forked: the old runtimes' threads do not exist here. Dropping them would wait
            // on those threads forever, so leak them instead.
            std::mem::forget(guard.take());
        }
        guard
    };
    let want = threads();
    if let Some(r) = lock().as_ref().filter(|r| r.threads == want) {
        return f(r);
    }
    // Built without the lock held, so that other threads keep using the current pools (and
    // a fork meanwhile copies no held lock); replacing them drops this module's handles
    // only, and reads running on them keep theirs.
    let fresh = build(pid, want);
    let mut guard = lock();
    match guard.as_ref().filter(|r| r.threads == want) {
        Some(r) => f(r), // another thread built the same meanwhile; `fresh` goes unused
        None => f(guard.insert(fresh)),
    }
}

/// The runtime that drives store IO.
pub fn io() -> Arc<Io> {
    with_runtimes(|r| r.io.clone())
}

/// The pool that runs codec work and copies.
pub fn cpu() -> Arc<ThreadPool> {
    with_runtimes(|r| r.cpu.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changing the count while a read runs: the read keeps its pool, the next call gets
    /// one of the new size, and `None` goes back to the default.
    #[test]
    fn a_new_count_builds_new_pools_and_old_handles_keep_working() {
        set_threads(Some(3));
        let old = cpu();
        assert_eq!(old.current_num_threads(), 3);
        set_threads(Some(1));
        assert_eq!(threads(), 1);
        let new = cpu();
        assert_eq!(new.current_num_threads(), 1);
        assert_eq!(old.install(|| 2 + 2), 4);
        assert_eq!(io().block_on(async { 7 }), 7);
        set_threads(None);
        assert_eq!(threads_chosen(), matches!(env_threads(), Ok(Some(_))));
    }
}
