//! Learning the stored sizes of many objects (chunks, shards) without fetching them, for
//! every format: each key probed (a file's metadata, a HEAD request), or, where a remote
//! store is asked about much of a layer, one listing of the keys' directory instead (a
//! listing answers 1000 keys per request; a probe answers one).

use std::collections::HashMap;
use std::future::Future;

use futures::{StreamExt, TryStreamExt};

use super::rmw::block_on;
use crate::error::Result;
use crate::interrupt;
use crate::store::{self, Handle};

/// Sizes are listed rather than probed when asked about at least this many keys and an
/// eighth of the layer's objects or more.
const LIST_MIN_KEYS: usize = 64;

/// How [`stored_sizes`] learns sizes.
pub(crate) struct SizeQuery<'a, P> {
    /// The store holding the objects.
    pub store: &'a Handle,
    /// How many objects the layer (scale, array) may hold: listing pays when the keys are
    /// a large share of them.
    pub total: u64,
    /// Requests in flight when probing.
    pub concurrency: usize,
    /// The size of one key's object, `None` when absent (a plain size request, or one that
    /// tries the key's variants).
    pub probe: P,
    /// The key a listed key stands for (a chunk's key without its transport suffix), so
    /// that variants of one object count once, with the largest size.
    pub listed_as: fn(&str) -> &str,
}

/// The stored size of each of `keys` (`None`: absent), as `query` says to learn them.
pub(crate) fn stored_sizes<P, F>(
    query: SizeQuery<'_, P>,
    keys: &[String],
) -> Result<Vec<Option<u64>>>
where
    P: Fn(String) -> F,
    F: Future<Output = Result<Option<u64>>>,
{
    let many = keys.len() >= LIST_MIN_KEYS && keys.len() as u64 * 8 >= query.total;
    if many && query.store.is_remote() {
        if let Some(dir) = common_dir(keys) {
            // Stores that cannot list (HTTP servers, buckets that allow reads but not
            // listings) are probed instead; a failing store fails there too.
            if let Ok(sizes) = listed_sizes(query.store, dir, keys, query.listed_as) {
                return Ok(sizes);
            }
        }
    }
    let probe = &query.probe;
    block_on(
        futures::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                // `block_on` polls this on the calling thread, and a Python mapping answers
                // there synchronously, so its timer cannot fire between answers: check
                // here, before each.
                interrupt::check()?;
                probe(key).await
            })
            .buffered(query.concurrency.max(1))
            .try_collect::<Vec<_>>(),
    )
}

/// The directory every key lies in (`a/b` of `a/b/c` and `a/b/d/e`), if they share one.
fn common_dir(keys: &[String]) -> Option<&str> {
    let first = keys.first()?;
    let mut len = first.rfind('/')?;
    for key in &keys[1..] {
        while !(key.len() > len
            && key.as_bytes()[len] == b'/'
            && key.as_bytes()[..len] == first.as_bytes()[..len])
        {
            len = first[..len].rfind('/')?;
        }
    }
    Some(&first[..len]).filter(|d| !d.is_empty())
}

/// Sizes of `keys` from one listing of `dir`.
fn listed_sizes(
    store: &Handle,
    dir: &str,
    keys: &[String],
    listed_as: fn(&str) -> &str,
) -> Result<Vec<Option<u64>>> {
    let at: HashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (&k[..], i)).collect();
    let mut sizes = vec![None; keys.len()];
    for store::Listed { key, size } in block_on(store.list(dir))? {
        if let Some(&i) = at.get(listed_as(&key)) {
            sizes[i] = Some(sizes[i].map_or(size, |s: u64| s.max(size)));
        }
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::common_dir;

    #[test]
    fn the_common_directory_of_keys() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(common_dir(&keys(&["s/0-1_0-1", "s/1-2_0-1"])), Some("s"));
        assert_eq!(
            common_dir(&keys(&["0/c/0/0", "0/c/1/0", "0/c/0/1"])),
            Some("0/c")
        );
        assert_eq!(common_dir(&keys(&["0/c/0/0", "0/cc/1"])), Some("0"));
        assert_eq!(common_dir(&keys(&["0.0", "0.1"])), None);
        assert_eq!(common_dir(&keys(&["a/b", "ab/c"])), None);
    }
}
