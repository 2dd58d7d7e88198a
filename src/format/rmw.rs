//! The read-modify-write protocol every format's writer shares: objects a write covers in
//! part are read, repainted and put only if they are still the version read (where the
//! store has conditional puts); those another writer replaced in between are read and made
//! again after a short pause, so overlapping writers lose nothing.

use crate::error::{Error, Result};
use crate::{interrupt, runtime};

/// Times a partly covered object (chunk or shard) is read, painted and put again when other
/// writers keep replacing it first (stores with conditional puts).
const MAX_RMW_ROUNDS: u32 = 32;

/// The objects whose conditional put failed in read-modify-write round `round` (`outcomes`:
/// index and whether it was stored), to be read and made again after a short pause,
/// different in every writer; `None` when all were stored. Gives up after
/// [`MAX_RMW_ROUNDS`] with an error naming the first (`url_of` an index).
pub(crate) fn conflicts_after(
    round: u32,
    outcomes: Vec<(usize, bool)>,
    url_of: impl Fn(usize) -> String,
) -> Result<Option<Vec<usize>>> {
    let again: Vec<usize> = outcomes
        .into_iter()
        .filter(|&(_, stored)| !stored)
        .map(|(i, _)| i)
        .collect();
    let Some(&first) = again.first() else {
        return Ok(None);
    };
    if round >= MAX_RMW_ROUNDS {
        return Err(Error::store(
            &url_of(first),
            format!(
                "other writers replaced this object (and {} more) between our read and \
                 our write {MAX_RMW_ROUNDS} times in a row; the rest of the write was stored",
                again.len() - 1
            ),
        ));
    }
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros() % 1000);
    let pause = (1u64 << round.min(7)) * 1000 + u64::from(jitter);
    std::thread::sleep(std::time::Duration::from_micros(pause));
    Ok(Some(again))
}

/// Runs a store future to completion from a thread outside the IO runtime; an interrupted
/// one is dropped (see [`interrupt::block_on`]).
pub(crate) fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    interrupt::block_on(&runtime::io(), future)
}
