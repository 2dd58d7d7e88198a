//! The tokio runtime (IO) and the rayon pool (decoding, encoding, copies), built lazily and
//! rebuilt in a forked child: a child inherits neither runtime's threads, so using the
//! parent's would hang.

use std::sync::{Arc, Mutex};

use rayon::ThreadPool;
use tokio::runtime::Runtime;

struct Runtimes {
    pid: u32,
    io: Arc<Runtime>,
    cpu: Arc<ThreadPool>,
}

static CURRENT: Mutex<Option<Runtimes>> = Mutex::new(None);

/// The cores this process may use, asked once: on Linux the answer reads cgroup files,
/// which every read's planning would otherwise pay for again.
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

fn with_runtimes<R>(f: impl FnOnce(&Runtimes) -> R) -> R {
    let mut guard = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if guard.as_ref().is_some_and(|r| r.pid != pid) {
        // Forked: the old runtimes' threads do not exist here. Dropping them would wait on
        // those threads forever, so leak them instead.
        std::mem::forget(guard.take());
    }
    let runtimes = guard.get_or_insert_with(|| Runtimes {
        pid,
        io: Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cores().min(8))
                .thread_name("bigarrays-io")
                .enable_all()
                .build()
                .expect("cannot start the tokio runtime (out of threads?)"),
        ),
        cpu: Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(cores())
                .thread_name(|i| format!("bigarrays-cpu-{i}"))
                .build()
                .expect("cannot start the rayon pool (out of threads?)"),
        ),
    });
    f(runtimes)
}

/// The runtime that drives store IO.
pub fn io() -> Arc<Runtime> {
    with_runtimes(|r| r.io.clone())
}

/// The pool that runs codec work and copies.
pub fn cpu() -> Arc<ThreadPool> {
    with_runtimes(|r| r.cpu.clone())
}
