//! The first error of a read's many chunk tasks: the tasks run on the CPU pool and report
//! failures here; the first one is kept, and the flag it sets tells the tasks not yet started
//! to skip their work (their buffers are dropped unseen).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The first failure of one read, shared by its tasks.
#[derive(Debug, Default)]
pub(crate) struct FirstError {
    stop: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl FirstError {
    /// Records `e` unless an earlier failure was recorded, and stops the tasks to come.
    pub(crate) fn fail(&self, e: Error) {
        self.stop.store(true, Ordering::Relaxed);
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    }

    /// Whether the read has failed (or was interrupted): work not yet done is wasted.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Runs one task unless the read has failed, turning its error or panic into the read's
    /// failure.
    pub(crate) fn run(&self, task: impl FnOnce() -> Result<()>) {
        if self.stopped() {
            return;
        }
        let result =
            catch_unwind(AssertUnwindSafe(task)).unwrap_or_else(|p| Err(Error::from_panic(p)));
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// The read's outcome: the first failure, if any.
    pub(crate) fn into_result(self) -> Result<()> {
        match self.error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
