//! How many threads the engine uses in this process (`bigarrays.set_num_threads`), and the
//! default inside a torch DataLoader worker: the machine's cores shared among the workers,
//! so that N workers never start N × cores threads.

use std::sync::atomic::{AtomicU32, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::to_pyerr;
use crate::error::Error;
use crate::runtime;

/// The process whose default is decided (0: none yet). Until then every engine call asks
/// again, because a spawned DataLoader worker calls the engine (unpickling its dataset
/// opens layers) before torch tells it that it is a worker.
static SETTLED: AtomicU32 = AtomicU32::new(0);

/// Decides this process's default thread count once it can be known; cheap once decided.
/// Runs before each engine call, with the GIL held.
pub(super) fn settle(py: Python<'_>) -> PyResult<()> {
    let pid = std::process::id();
    if SETTLED.load(Ordering::Relaxed) == pid {
        return Ok(());
    }
    if let Err(text) = runtime::env_threads() {
        return Err(to_pyerr(Error::invalid(format!(
            "{}={text:?} is not a positive integer (the threads bigarrays may use)",
            runtime::THREADS_ENV
        ))));
    }
    if runtime::threads_chosen() {
        SETTLED.store(pid, Ordering::Relaxed);
        return Ok(());
    }
    match dataloader_workers(py) {
        Some(workers) => {
            runtime::set_default_threads(Some((runtime::cores() / workers).max(1)));
            SETTLED.store(pid, Ordering::Relaxed);
        }
        // The main process never becomes a worker; any other may still learn it is one.
        None if is_main_process(py) => {
            runtime::set_default_threads(None);
            SETTLED.store(pid, Ordering::Relaxed);
        }
        None => {}
    }
    Ok(())
}

/// The number of workers of the DataLoader this process works for, if it is one of them.
/// Only asks torch if it is already imported (a worker always has it): importing it here
/// would cost seconds. A torch half imported by another thread reads as no worker.
fn dataloader_workers(py: Python<'_>) -> Option<usize> {
    let modules = py.import("sys").ok()?.getattr("modules").ok()?;
    let torch = modules
        .cast_into::<PyDict>()
        .ok()?
        .get_item("torch")
        .ok()??;
    let info = torch
        .getattr("utils")
        .and_then(|m| m.getattr("data"))
        .and_then(|m| m.getattr("get_worker_info"))
        .and_then(|f| f.call0())
        .ok()?;
    if info.is_none() {
        return None;
    }
    info.getattr("num_workers")
        .and_then(|n| n.extract::<usize>())
        .ok()
        .filter(|&n| n > 0)
}

/// Whether this is the program's first process, which never becomes a DataLoader worker.
/// A spawned or forkserver child looks like one while it unpickles its arguments (its
/// dataset, whose arrays open their layers): multiprocessing sets `parent_process()` only
/// after that, so a `multiprocessing.spawn._main` on the stack says it is a child.
fn is_main_process(py: Python<'_>) -> bool {
    let no_parent = py
        .import("multiprocessing")
        .and_then(|m| m.call_method0("parent_process"))
        .is_ok_and(|parent| parent.is_none());
    no_parent && !starting_child(py)
}

fn starting_child(py: Python<'_>) -> bool {
    let Ok(mut frame) = py
        .import("sys")
        .and_then(|s| s.call_method1("_getframe", (0,)))
    else {
        return false;
    };
    loop {
        let named = |attr: &str| -> String {
            frame
                .getattr("f_code")
                .and_then(|c| c.getattr(attr))
                .and_then(|v| v.extract())
                .unwrap_or_default()
        };
        let file = named("co_filename");
        if named("co_name") == "_main"
            && file.contains("multiprocessing")
            && file.ends_with("spawn.py")
        {
            return true;
        }
        match frame.getattr("f_back") {
            Ok(back) if !back.is_none() => frame = back,
            _ => return false,
        }
    }
}

/// Sets the threads the engine uses in this process (None: back to the default).
#[pyfunction]
pub(super) fn set_num_threads(n: Option<usize>) -> PyResult<()> {
    if n == Some(0) {
        return Err(to_pyerr(Error::invalid(
            "set_num_threads needs at least 1 thread (or None for the default)",
        )));
    }
    runtime::set_threads(n);
    // Back to the default: decide it again.
    SETTLED.store(0, Ordering::Relaxed);
    Ok(())
}

/// The threads the engine uses in this process (the CPU pool's size).
#[pyfunction]
pub(super) fn get_num_threads(py: Python<'_>) -> PyResult<usize> {
    settle(py)?;
    Ok(runtime::threads())
}
