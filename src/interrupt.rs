//! Interrupting long reads and writes. An embedding (the Python binding) may register one
//! process-wide check, `hook`, that says whether the operation running on the calling thread
//! should stop (Python: a Ctrl-C whose handler raised). The engine calls it while the
//! calling thread waits for IO or decoding, at most once per [`POLL`] per thread, stops
//! what is left of the operation and returns [`Error::Interrupted`].
//!
//! Without a hook (pure Rust users) nothing changes: the waits are the plain blocking ones.
//! With one, an operation that ends within its first [`POLL`] never calls it: the check is
//! due only once that much time has passed since the operation first waited.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tokio::sync::mpsc::Receiver;

use crate::error::{Error, Result};

/// How often a waiting thread asks the hook: Ctrl-C is honoured within about this long (plus
/// whatever must finish before the operation can return, such as a chunk being decoded).
pub const POLL: Duration = Duration::from_millis(50);

/// Whether the operation on the calling thread should stop. Called on that thread, never
/// while it holds locks of the engine's.
pub type Hook = fn() -> bool;

static HOOK: OnceLock<Hook> = OnceLock::new();

thread_local! {
    /// When the calling thread next asks the hook; `None` until its first operation.
    static DUE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Registers the process-wide check; only the first registration counts (the Python
/// module registers it when imported). Returns whether this one was taken.
pub fn set_hook(hook: Hook) -> bool {
    HOOK.set(hook).is_ok()
}

fn hook() -> Option<Hook> {
    HOOK.get().copied()
}

/// Marks the start of an operation on this thread: its first check falls due [`POLL`] after
/// its first wait or check begins, so an operation shorter than that never calls the hook.
/// (No clock is read here: the hot path of small cached reads passes through.)
pub(crate) fn begin() {
    DUE.with(|d| d.set(None));
}

/// When this thread's next check is due (from now, at the first ask of an operation).
fn due() -> Instant {
    DUE.with(|d| match d.get() {
        Some(t) => t,
        None => {
            let t = Instant::now() + POLL;
            d.set(Some(t));
            t
        }
    })
}

/// Asks the hook if a check is due; [`Error::Interrupted`] when it says stop. Cheap when
/// not due (a clock read), free without a hook.
pub(crate) fn check() -> Result<()> {
    let Some(hook) = hook() else {
        return Ok(());
    };
    let now = Instant::now();
    if now < due() {
        return Ok(());
    }
    DUE.with(|d| d.set(Some(now + POLL)));
    if hook() {
        return Err(Error::Interrupted);
    }
    Ok(())
}

/// The next item of `rx`, checking for interruption while waiting.
pub(crate) fn recv<T>(io: &Runtime, rx: &mut Receiver<T>) -> Result<Option<T>> {
    if hook().is_none() {
        return Ok(rx.blocking_recv());
    }
    // An item already waiting needs no timer: local reads often queue faster than they are
    // painted, and entering the runtime for each would cost more than the wait.
    if let Ok(item) = rx.try_recv() {
        return Ok(Some(item));
    }
    loop {
        // The timer is made inside the runtime: tokio's timers need its context.
        let next = io.block_on(async { tokio::time::timeout_at(due().into(), rx.recv()).await });
        match next {
            Ok(item) => return Ok(item),
            Err(_elapsed) => check()?,
        }
    }
}

/// Runs a store future to completion on `io` from a thread outside it, checking for
/// interruption meanwhile. An interrupted future is dropped, which abandons the requests
/// it has in flight: a put is one atomic object replacement (temporary file + rename, one
/// PUT), so each of its objects is left whole, old or new.
pub(crate) fn block_on<T>(io: &Runtime, future: impl Future<Output = Result<T>>) -> Result<T> {
    if hook().is_none() {
        return io.block_on(future);
    }
    io.block_on(async {
        let mut future = std::pin::pin!(future);
        loop {
            match tokio::time::timeout_at(due().into(), &mut future).await {
                Ok(result) => return result,
                Err(_elapsed) => check()?,
            }
        }
    })
}

/// Runs `work` on the CPU pool, as `pool.install` does, checking for interruption while the
/// calling thread waits. `work` gets a flag that turns true on interruption: its tasks
/// should look at it before each piece and give up (with any error) when it is set. The
/// call still waits for `work` to return, since it may borrow from the caller's stack.
pub(crate) fn install<R: Send>(
    pool: &rayon::ThreadPool,
    work: impl FnOnce(&AtomicBool) -> Result<R> + Send,
) -> Result<R> {
    static NEVER: AtomicBool = AtomicBool::new(false);
    // A thread of the pool itself must not block waiting for a task it might have to run.
    if hook().is_none() || pool.current_thread_index().is_some() {
        return pool.install(|| work(&NEVER));
    }
    let cancel = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut interrupted = false;
    let mut result = None;
    pool.in_place_scope(|scope| {
        let cancel = &cancel;
        scope.spawn(move |_| {
            let _ = tx.send(work(cancel));
        });
        loop {
            let wait = due().saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(r) => {
                    result = Some(r);
                    return;
                }
                // The task panicked: the scope re-raises the panic when it ends.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if !interrupted && check().is_err() {
                        interrupted = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    match result {
        _ if interrupted => Err(Error::Interrupted),
        Some(r) => r,
        None => Err(Error::internal("a CPU task ended without a result")),
    }
}

/// [`Error::Interrupted`] when `cancel` is set: for the tasks of [`install`].
pub(crate) fn cancelled(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::Interrupted);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// What the test hook answers on this thread (tests run on threads of their own, so
        /// the process-wide hook interrupts only the test that asks it to).
        static STOP: Cell<bool> = const { Cell::new(false) };
    }

    fn test_hook() -> bool {
        STOP.get()
    }

    /// Registers the test hook and sets this thread's answer.
    fn hooked(stop: bool) {
        set_hook(test_hook);
        STOP.set(stop);
        begin();
    }

    #[test]
    fn a_wait_on_a_silent_channel_is_interrupted() {
        hooked(true);
        let (_tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        let started = Instant::now();
        assert!(matches!(
            recv(&crate::runtime::io(), &mut rx),
            Err(Error::Interrupted)
        ));
        assert!(started.elapsed() >= POLL && started.elapsed() < 20 * POLL);
    }

    #[test]
    fn a_pending_future_is_interrupted() {
        hooked(true);
        let never = futures::future::pending::<Result<()>>();
        assert!(matches!(
            block_on(&crate::runtime::io(), never),
            Err(Error::Interrupted)
        ));
    }

    #[test]
    fn cpu_work_sees_the_flag_and_the_call_waits_for_it() {
        hooked(true);
        let finished = AtomicBool::new(false);
        let result = install(&crate::runtime::cpu(), |cancel| -> Result<()> {
            loop {
                if let Err(e) = cancelled(cancel) {
                    finished.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        assert!(matches!(result, Err(Error::Interrupted)));
        assert!(finished.load(Ordering::Relaxed));
    }

    #[test]
    fn no_check_falls_due_within_the_first_poll() {
        hooked(true);
        assert!(check().is_ok());
        std::thread::sleep(POLL);
        assert!(matches!(check(), Err(Error::Interrupted)));
    }

    #[test]
    fn waits_that_are_not_interrupted_return_what_they_waited_for() {
        hooked(false);
        let io = crate::runtime::io();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u8>(1);
        io.spawn(async move {
            tokio::time::sleep(3 * POLL).await;
            let _ = tx.send(7).await;
        });
        assert_eq!(recv(&io, &mut rx).ok().flatten(), Some(7));
        let late = async {
            tokio::time::sleep(2 * POLL).await;
            Ok(5)
        };
        assert_eq!(block_on(&io, late).ok(), Some(5));
        let work = install(&crate::runtime::cpu(), |_| {
            std::thread::sleep(2 * POLL);
            Ok(9)
        });
        assert_eq!(work.ok(), Some(9));
    }
}
