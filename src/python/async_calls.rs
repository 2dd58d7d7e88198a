//! Engine calls for asyncio (`BigArray.read_async` and friends). The event loop's thread
//! only queues a call here and returns; a few threads of the IO runtime's blocking pool
//! run the queued calls with the ordinary blocking engine methods, GIL released, and hand
//! each result to a Python callback (`done(result, error)`), which passes it to the loop
//! with `call_soon_threadsafe`.
//!
//! Reads of the same layer that are queued together run as one `read_many`, so a thousand
//! concurrent reads take a handful of threads, and chunks they share are fetched once.
//! Every call carries a `CancelToken`: a batch stops (within the engine's interruption
//! check, about 50 ms) once every call in it is cancelled, and its buffers go with it; a
//! call cancelled while queued never starts. A write stops between chunk puts, each of
//! which is atomic, so a cancelled write leaves each chunk old or new.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::detached;
use super::errors::to_pyerr;
use super::interrupt::{bind_batch, CancelToken};
use super::layer::{read_boxes, read_nd};
use crate::error::Error;
use crate::geometry::Bbox;
use crate::nd::NdBox;
use crate::runtime;
use crate::volume::Volume;

/// At most this many calls run at once (more wait in the queue, where reads join batches);
/// each call is itself concurrent inside.
const MAX_RUNNING: usize = 8;

/// A batch of reads takes queued reads of its layer up to this many output bytes (the
/// first always), so that one huge batch does not hold small reads back for long.
const BATCH_BYTES: usize = 256 << 20;

/// What a call does.
pub(super) enum Work {
    /// Boxes in (x, y, z) absolute coordinates, and the bytes each needs.
    Read(Vec<Bbox>, Vec<usize>),
    /// Regions of the array's own axes (Zarr), and the bytes each needs.
    ReadNd(Vec<NdBox>, Vec<usize>),
    /// A box written from Fortran-ordered bytes, optionally only the chunks touching `only`.
    Write {
        bbox: Bbox,
        data: Py<PyArray1<u8>>,
        only: Option<Vec<Bbox>>,
    },
    /// A region of the array's own axes written from C-ordered bytes.
    WriteNd {
        region: NdBox,
        data: Py<PyArray1<u8>>,
    },
}

impl Work {
    fn read_bytes(&self) -> Option<usize> {
        match self {
            Work::Read(_, lens) | Work::ReadNd(_, lens) => Some(lens.iter().sum()),
            _ => None,
        }
    }
}

/// One queued call: its layer, its work, the token that cancels it, and the callback that
/// takes its result (a list of flat uint8 arrays for reads, None for writes) or its error.
pub(super) struct Call {
    pub(super) volume: Arc<dyn Volume>,
    pub(super) work: Work,
    pub(super) token: Py<CancelToken>,
    pub(super) done: Py<PyAny>,
}

impl Call {
    fn cancelled(&self) -> bool {
        self.token.get().is_cancelled()
    }

    /// Whether `other` can join this call's read batch: a read of the same layer, in the
    /// same axes.
    fn batches_with(&self, other: &Call) -> bool {
        let same_layer = std::ptr::addr_eq(Arc::as_ptr(&self.volume), Arc::as_ptr(&other.volume));
        same_layer
            && matches!(
                (&self.work, &other.work),
                (Work::Read(..), Work::Read(..)) | (Work::ReadNd(..), Work::ReadNd(..))
            )
    }
}

struct Queue {
    /// The process that queued these calls: a forked child starts with an empty queue, as
    /// the runners counted here are threads of its parent.
    pid: u32,
    calls: VecDeque<Call>,
    running: usize,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue {
    pid: 0,
    calls: VecDeque::new(),
    running: 0,
});

fn lock() -> std::sync::MutexGuard<'static, Queue> {
    let mut queue = QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    let pid = std::process::id();
    if queue.pid != pid {
        // The parent's calls belong to its event loop; their callbacks never run here.
        std::mem::forget(std::mem::take(&mut queue.calls));
        queue.running = 0;
        queue.pid = pid;
    }
    queue
}

/// Queues `call` and returns at once; a runner thread settles it later.
pub(super) fn submit(call: Call) {
    let start_runner = {
        let mut queue = lock();
        queue.calls.push_back(call);
        let start = queue.running < MAX_RUNNING;
        if start {
            queue.running += 1;
        }
        start
    };
    if start_runner {
        // A blocking-pool thread of the IO runtime: the engine's blocking calls may wait on
        // the runtime from there, and idle threads go away after a few seconds.
        drop(runtime::io().spawn_blocking(run_queue));
    }
}

/// The next calls to run together: the oldest call, and when it is a read, the queued reads
/// of its layer that fit in [`BATCH_BYTES`] with it. None (and one runner fewer) when the
/// queue is empty.
fn next_batch() -> Option<Vec<Call>> {
    let mut queue = lock();
    let Some(first) = queue.calls.pop_front() else {
        queue.running -= 1;
        return None;
    };
    let Some(mut bytes) = first.work.read_bytes() else {
        return Some(vec![first]);
    };
    let mut batch = vec![first];
    let mut kept = VecDeque::with_capacity(queue.calls.len());
    for call in std::mem::take(&mut queue.calls) {
        let fits = call
            .work
            .read_bytes()
            .is_some_and(|n| bytes.saturating_add(n) <= BATCH_BYTES);
        if fits && batch[0].batches_with(&call) {
            bytes += call.work.read_bytes().unwrap_or(0);
            batch.push(call);
        } else {
            kept.push_back(call);
        }
    }
    queue.calls = kept;
    Some(batch)
}

/// A runner: runs batches until the queue is empty. It takes each batch holding the GIL:
/// a thread queueing many calls in a row (an event loop starting gathered reads) holds
/// the GIL meanwhile, so the batch waits for all of them rather than taking the first few.
fn run_queue() {
    loop {
        // `detached` already turns engine panics into errors; this catches the binding's own.
        let more = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Python::attach(|py| match next_batch() {
                Some(batch) => {
                    run_batch(py, batch);
                    true
                }
                None => false,
            })
        }));
        match more {
            Ok(true) => {}
            Ok(false) => return,
            // A bug of the binding's (or no interpreter left): this runner stops, and the
            // next call queued starts another.
            Err(_) => {
                let mut queue = lock();
                queue.running = queue.running.saturating_sub(1);
                return;
            }
        }
    }
}

fn run_batch(py: Python<'_>, batch: Vec<Call>) {
    let (cancelled, live): (Vec<Call>, Vec<Call>) = batch.into_iter().partition(Call::cancelled);
    for call in cancelled {
        settle(py, call, Err(to_pyerr(Error::Interrupted)));
    }
    if live.is_empty() {
        return;
    }
    if live.len() == 1 || !matches!(live[0].work, Work::Read(..) | Work::ReadNd(..)) {
        for call in live {
            let result = run_alone(py, &call);
            settle(py, call, result);
        }
        return;
    }
    match run_reads(py, &live) {
        Ok(arrays) => {
            let mut arrays = arrays.into_iter();
            for call in live {
                let n = match &call.work {
                    Work::Read(_, lens) | Work::ReadNd(_, lens) => lens.len(),
                    _ => 0,
                };
                let mine: Vec<_> = arrays.by_ref().take(n).collect();
                let list = PyList::new(py, mine).map(|l| l.into_any().unbind());
                settle(py, call, list);
            }
        }
        // One call's failure must not become the others': each runs again on its own, so
        // each gets its own result or error (failures are rare; the retry costs little).
        Err(_) => {
            for call in live {
                let result = run_alone(py, &call);
                settle(py, call, result);
            }
        }
    }
}

/// The reads of `calls` (all of one layer, in the same axes) as one engine read, stopped
/// once every call is cancelled; the arrays in the calls' order.
fn run_reads<'py>(py: Python<'py>, calls: &[Call]) -> PyResult<Vec<Bound<'py, PyArray1<u8>>>> {
    let tokens = calls.iter().map(|c| c.token.clone_ref(py)).collect();
    let before = bind_batch(tokens);
    let volume = &*calls[0].volume;
    let result = match &calls[0].work {
        Work::ReadNd(..) => {
            let (mut regions, mut lens) = (Vec::new(), Vec::new());
            for call in calls {
                if let Work::ReadNd(r, l) = &call.work {
                    regions.extend(r.iter().cloned());
                    lens.extend_from_slice(l);
                }
            }
            match volume.nd() {
                Some(nd) => read_nd(py, nd, regions, &lens),
                None => Err(to_pyerr(Error::internal(
                    "an N-d read of a layer without axes",
                ))),
            }
        }
        _ => {
            let (mut boxes, mut lens) = (Vec::new(), Vec::new());
            for call in calls {
                if let Work::Read(b, l) = &call.work {
                    boxes.extend(b.iter().cloned());
                    lens.extend_from_slice(l);
                }
            }
            read_boxes(py, volume, boxes, &lens)
        }
    };
    drop(bind_batch(before));
    result
}

/// One call on its own: the Python object its callback gets.
fn run_alone(py: Python<'_>, call: &Call) -> PyResult<Py<PyAny>> {
    let before = bind_batch(vec![call.token.clone_ref(py)]);
    let result = (|| -> PyResult<Py<PyAny>> {
        let volume = &*call.volume;
        match &call.work {
            Work::Read(boxes, lens) => {
                let arrays = read_boxes(py, volume, boxes.clone(), lens)?;
                Ok(PyList::new(py, arrays)?.into_any().unbind())
            }
            Work::ReadNd(regions, lens) => {
                let nd = volume.nd().ok_or_else(|| {
                    to_pyerr(Error::internal("an N-d read of a layer without axes"))
                })?;
                let arrays = read_nd(py, nd, regions.clone(), lens)?;
                Ok(PyList::new(py, arrays)?.into_any().unbind())
            }
            Work::Write { bbox, data, only } => {
                let data = data.bind(py).readonly();
                let data = data.as_slice()?;
                detached(py, || volume.write_from_only(bbox, data, only.as_deref()))?;
                Ok(py.None())
            }
            Work::WriteNd { region, data } => {
                let nd = volume.nd().ok_or_else(|| {
                    to_pyerr(Error::internal("an N-d write of a layer without axes"))
                })?;
                let data = data.bind(py).readonly();
                let data = data.as_slice()?;
                detached(py, || nd.write_region(region, data))?;
                Ok(py.None())
            }
        }
    })();
    drop(bind_batch(before));
    result
}

/// Hands a call's outcome to its callback. A callback that raises (its event loop closed,
/// say) has nobody left to tell: Python reports it as unraisable.
fn settle(py: Python<'_>, call: Call, result: PyResult<Py<PyAny>>) {
    let args = match result {
        Ok(value) => (value, py.None()),
        Err(e) => (py.None(), e.into_value(py).into_any()),
    };
    if let Err(e) = call.done.call1(py, args) {
        e.write_unraisable(py, Some(call.done.bind(py)));
    }
}
