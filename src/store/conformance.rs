//! The store contract as executable checks: [`run`] exercises any [`Store`] the way the
//! engine relies on it (absent keys, ranges past the end, listing beside sibling prefixes,
//! put modes and their races where the store says they are atomic, metadata where it says it
//! keeps it). `cargo test` runs it on the memory and local stores; the Python tests run it
//! on S3 (moto) and on a Python mapping through `_core._store_conformance`.

use std::fmt;

use bytes::Bytes;

use super::{Listed, PutMode, PutOptions, Store};
use crate::error::Error;

/// Why a store failed the suite.
#[derive(Debug)]
pub enum Failure {
    /// The store answered in a way the contract does not allow.
    Contract(String),
    /// The store failed where it should have answered.
    Store(Error),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Contract(what) => write!(f, "store contract broken: {what}"),
            Failure::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Failure {}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e)
    }
}

/// Fails with `what` unless `ok`.
fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::Contract(what()))
    }
}

/// Fails unless `got` is an error (a refusal the contract asks for).
fn refused<T: fmt::Debug>(got: crate::error::Result<T>, what: &str) -> Result<(), Failure> {
    match got {
        Err(_) => Ok(()),
        Ok(v) => Err(Failure::Contract(format!(
            "{what}: answered {v:?}, not an error"
        ))),
    }
}

fn value(n: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect::<Vec<u8>>(),
    )
}

/// Runs every check on `store` under the directory `dir` (which should be empty; it is
/// removed at the end), returning the names of the checks that ran: which depend on what
/// the store declares ([`Store::conditional_puts`], [`super::ReadStore::keeps_metadata`]).
pub async fn run(store: &dyn Store, dir: &str) -> Result<Vec<&'static str>, Failure> {
    let mut ran = vec![
        absent(store, dir).await?,
        put_get_and_ranges(store, dir).await?,
        listing(store, dir).await?,
        deleting(store, dir).await?,
        put_modes(store, dir).await?,
        metadata(store, dir).await?,
    ];
    if store.conditional_puts() {
        ran.push(races(store, dir).await?);
    }
    if store.local_file(&format!("{dir}/x")).is_some() {
        ran.push(leftovers(store, dir).await?);
    }
    store.delete_dir(dir).await?;
    let left = store.list(dir).await?;
    check(left.is_empty(), || format!("delete_dir left {left:?}"))?;
    Ok(ran)
}

/// Every read of an absent key answers `None`, not an error.
async fn absent(store: &dyn Store, dir: &str) -> Result<&'static str, Failure> {
    let key = format!("{dir}/absent");
    check(store.get(&key).await?.is_none(), || "get".into())?;
    check(store.get_bytes(&key).await?.is_none(), || {
        "get_bytes".into()
    })?;
    check(store.size(&key).await?.is_none(), || "size".into())?;
    check(store.get_range(&key, 0..4).await?.is_none(), || {
        "get_range".into()
    })?;
    check(
        store.get_ranges(&key, &[0..4, 8..9]).await?.is_none(),
        || "get_ranges".into(),
    )?;
    check(
        store.get_range_if(&key, 0..4, None).await?.is_none(),
        || "get_range_if".into(),
    )?;
    let listed = store.list(&format!("{dir}/nothing")).await?;
    check(listed.is_empty(), || format!("list of nothing: {listed:?}"))?;
    Ok("absent")
}

/// What is put comes back whole, in ranges, and sized; ranges past the end come back short
/// from `get_range` and are refused by `get_ranges`.
async fn put_get_and_ranges(store: &dyn Store, dir: &str) -> Result<&'static str, Failure> {
    let key = format!("{dir}/value");
    let first = value(256, 1);
    store.put(&key, first.clone()).await?;
    let got = store.get(&key).await?;
    check(got.as_ref().map(|o| &o.bytes) == Some(&first), || {
        format!("get after put: {got:?}")
    })?;
    let encoding = got.and_then(|o| o.content_encoding);
    check(encoding.is_none(), || {
        format!("a put without Content-Encoding reads back {encoding:?}")
    })?;
    let second = value(300, 2);
    store.put(&key, second.clone()).await?;
    let got = store.get_bytes(&key).await?;
    check(got.as_ref() == Some(&second), || {
        "get after overwrite".into()
    })?;
    check(store.size(&key).await? == Some(300), || "size".into())?;
    // A local file, where the store names one, holds exactly the value.
    if let Some(path) = store.local_file(&key) {
        let on_disk = std::fs::read(&path).map_err(|e| Error::store_caused(&key, e))?;
        check(on_disk == second, || {
            format!("local_file {path:?} does not hold the value")
        })?;
    }

    let part = store.get_range(&key, 10..20).await?;
    check(
        part.as_ref()
            .is_some_and(|r| r.bytes == second.slice(10..20) && r.size == 300),
        || format!("get_range 10..20: {part:?}"),
    )?;
    let tail = store.get_range(&key, 290..400).await?;
    check(
        tail.as_ref()
            .is_some_and(|r| r.bytes == second.slice(290..300) && r.size == 300),
        || format!("get_range past the end: {tail:?}"),
    )?;
    let beyond = store.get_range(&key, 400..500).await?;
    check(
        beyond
            .as_ref()
            .is_some_and(|r| r.bytes.is_empty() && r.size == 300),
        || format!("get_range starting past the end: {beyond:?}"),
    )?;
    let parts = store.get_ranges(&key, &[0..4, 100..110, 296..300]).await?;
    let want = vec![
        second.slice(0..4),
        second.slice(100..110),
        second.slice(296..300),
    ];
    check(parts.as_ref() == Some(&want), || {
        format!("get_ranges: {parts:?}")
    })?;
    // Past the end: short (memory, S3) or an error (local files, mappings); never more.
    match store.get_ranges(&key, &[0..4, 290..301]).await {
        Err(_) => {}
        Ok(got) => check(
            got.as_ref()
                .is_some_and(|p| p.len() == 2 && p[1] == second.slice(290..300)),
            || format!("get_ranges past the end: {got:?}"),
        )?,
    }

    // A range read of a version that is no longer there: `Changed` where the store keeps
    // ETags that tell the two apart, the bytes of the new one where it keeps none.
    let tag = part.and_then(|r| r.e_tag);
    let inside = store.get_range_if(&key, 0..8, tag.as_deref()).await?;
    check(inside.as_ref() == Some(&second.slice(0..8)), || {
        format!("get_range_if of the current version: {inside:?}")
    })?;
    let third = value(64, 3);
    store.put(&key, third.clone()).await?;
    let fresh = store.get_range(&key, 0..1).await?.and_then(|r| r.e_tag);
    match store.get_range_if(&key, 0..8, tag.as_deref()).await {
        Err(Error::Changed { .. }) => {}
        Ok(Some(bytes)) if tag.is_none() || tag == fresh => {
            check(bytes == third.slice(0..8), || {
                "get_range_if untagged".into()
            })?
        }
        other => {
            return Err(Failure::Contract(format!(
                "get_range_if of a replaced version (tag {tag:?}, now {fresh:?}): {other:?}"
            )))
        }
    }
    Ok("put_get_and_ranges")
}

/// Listing a directory finds what is under it at any depth, and nothing beside it.
async fn listing(store: &dyn Store, dir: &str) -> Result<&'static str, Failure> {
    let puts = [
        ("em/a", 3),
        ("em/b/c", 5),
        ("em_2/d", 7),
        ("em2", 11),
        ("emx", 13),
    ];
    for (key, n) in puts {
        store.put(&format!("{dir}/{key}"), value(n, 4)).await?;
    }
    let mut listed = store.list(&format!("{dir}/em")).await?;
    listed.sort_by(|a, b| a.key.cmp(&b.key));
    let want = vec![
        Listed {
            key: format!("{dir}/em/a"),
            size: 3,
        },
        Listed {
            key: format!("{dir}/em/b/c"),
            size: 5,
        },
    ];
    check(listed == want, || format!("list em: {listed:?}"))?;
    let size = store.size(&format!("{dir}/em")).await?;
    check(size.is_none(), || format!("size of a directory: {size:?}"))?;
    store.delete_dir(&format!("{dir}/em")).await?;
    let left = store.list(&format!("{dir}/em")).await?;
    check(left.is_empty(), || {
        format!("list after delete_dir: {left:?}")
    })?;
    for (key, n) in &puts[2..] {
        let size = store.size(&format!("{dir}/{key}")).await?;
        check(size == Some(*n as u64), || {
            format!("delete_dir em removed its sibling {key}")
        })?;
    }
    store.delete_dir(&format!("{dir}/never")).await?;
    Ok("listing")
}

/// Deleting removes a key; deleting an absent key is no error.
async fn deleting(store: &dyn Store, dir: &str) -> Result<&'static str, Failure> {
    let key = format!("{dir}/doomed");
    store.put(&key, value(8, 5)).await?;
    store.delete(&key).await?;
    check(store.get(&key).await?.is_none(), || {
        "get after delete".into()
    })?;
    store.delete(&key).await?;
    store.delete(&format!("{dir}/never/was")).await?;
    Ok("deleting")
}

/// Conditional puts hold to their conditions where the store declares them, and are
/// refused (never silently made unconditional) where it does not.
async fn put_modes(store: &dyn Store, dir: &str) -> Result<&'static str, Failure> {
    let key = format!("{dir}/cas");
    let put = |mode: PutMode, bytes: Bytes| {
        let key = key.clone();
        async move {
            let options = PutOptions {
                mode,
                content_encoding: None,
            };
            store.put_opts(&key, bytes, options).await
        }
    };
    if !store.conditional_puts() {
        refused(put(PutMode::IfAbsent, value(4, 6)).await, "IfAbsent")?;
        check(store.get(&key).await?.is_none(), || {
            "a refused IfAbsent stored its value".into()
        })?;
        store.put(&key, value(4, 6)).await?;
        let version = store.get(&key).await?.and_then(|o| o.version);
        check(version.is_none(), || {
            format!("a store without conditional puts named a version: {version:?}")
        })?;
        let stale = super::Version {
            e_tag: Some("x".into()),
            version: None,
        };
        refused(
            put(PutMode::IfVersion(stale), value(4, 7)).await,
            "IfVersion",
        )?;
        return Ok("put_modes_refused");
    }
    let first = value(40, 8);
    check(put(PutMode::IfAbsent, first.clone()).await?, || {
        "IfAbsent on an absent key".into()
    })?;
    check(!put(PutMode::IfAbsent, value(41, 9)).await?, || {
        "IfAbsent on a present key stored".into()
    })?;
    let got = store.get(&key).await?;
    check(got.as_ref().is_some_and(|o| o.bytes == first), || {
        "a failed IfAbsent changed the value".into()
    })?;
    let Some(v1) = got.and_then(|o| o.version) else {
        return Err(Failure::Contract(
            "a store with conditional puts named no version".into(),
        ));
    };
    let second = value(42, 10);
    check(
        put(PutMode::IfVersion(v1.clone()), second.clone()).await?,
        || "IfVersion of the current version".into(),
    )?;
    check(!put(PutMode::IfVersion(v1), value(43, 11)).await?, || {
        "IfVersion of a replaced version stored".into()
    })?;
    let got = store.get_bytes(&key).await?;
    check(got.as_ref() == Some(&second), || {
        "a failed IfVersion changed the value".into()
    })?;
    Ok("put_modes")
}

/// Two writers racing with the same condition: exactly one wins.
async fn races(store: &dyn Store, dir: &str) -> Result<&'static str, Failure> {
    let key = format!("{dir}/race");
    let put = |mode: PutMode, bytes: Bytes| {
        let key = key.clone();
        async move {
            let options = PutOptions {
                mode,
                content_encoding: None,
            };
            store.put_opts(&key, bytes, options).await
        }
    };
    let (a, b) = futures::join!(
        put(PutMode::IfAbsent, value(50, 12)),
        put(PutMode::IfAbsent, value(51, 13))
    );
    check(a? ^ b?, || "two IfAbsent puts: not exactly one won".into())?;
    let Some(v) = store.get(&key).await?.and_then(|o| o.version) else {
        return Err(Failure::Contract("no version after a race".into()));
    };
    let (a, b) = futures::join!(
        put(PutMode::IfVersion(v.clone()), value(52, 14)),
        put(PutMode::IfVersion(v), value(53, 15))
    );
    check(a? ^ b?, || "two IfVersion puts: not exactly one won".into())?;
    Ok("races")
}

/// Local directories: a killed writer's temporary files (`<key>#<n>`) are never listed nor
/// read as a key, and the next put of their key removes the old ones and keeps the young
/// ones (which may be a live writer's).
async fn leftovers(store: &dyn Store, dir: &str) -> Result<&'static str, Failure> {
    let key = format!("{dir}/left/key");
    let Some(path) = store.local_file(&key) else {
        return Ok("leftovers");
    };
    let io = |e: std::io::Error| Failure::Store(Error::store_caused(&key, e));
    let temporary = |n: u32| {
        let mut name = path.clone().into_os_string();
        name.push(format!("#{n}"));
        std::path::PathBuf::from(name)
    };
    std::fs::create_dir_all(path.parent().unwrap_or(&path)).map_err(io)?;
    for n in 1..=3 {
        std::fs::write(temporary(n), value(9, 17)).map_err(io)?;
    }
    let then = std::time::SystemTime::now()
        - super::TEMPORARY_MAX_AGE
        - std::time::Duration::from_secs(60);
    for n in [1, 3] {
        let file = std::fs::File::options()
            .write(true)
            .open(temporary(n))
            .map_err(io)?;
        file.set_modified(then).map_err(io)?;
    }
    let listed = store.list(&format!("{dir}/left")).await?;
    check(listed.is_empty(), || {
        format!("temporary files listed: {listed:?}")
    })?;
    check(store.get(&key).await?.is_none(), || {
        "a temporary file read as its key".into()
    })?;
    store.put(&key, value(10, 18)).await?;
    let (old, young) = (
        !temporary(1).exists() && !temporary(3).exists(),
        temporary(2).exists(),
    );
    check(old && young, || {
        format!("after a put: old ones removed {old}, the young one kept {young}")
    })?;
    let listed = store.list(&format!("{dir}/left")).await?;
    check(listed.len() == 1, || {
        format!("temporary files listed: {listed:?}")
    })?;
    Ok("leftovers")
}

/// A `Content-Encoding` is kept where the store keeps metadata, and refused elsewhere.
async fn metadata(store: &dyn Store, dir: &str) -> Result<&'static str, Failure> {
    let key = format!("{dir}/encoded");
    let options = PutOptions {
        mode: PutMode::Overwrite,
        content_encoding: Some("zstd"),
    };
    let bytes = value(20, 16);
    if !store.keeps_metadata() {
        refused(
            store.put_opts(&key, bytes, options).await,
            "a Content-Encoding where no metadata is kept",
        )?;
        return Ok("metadata_refused");
    }
    store.put_opts(&key, bytes.clone(), options).await?;
    let got = store.get(&key).await?;
    check(
        got.as_ref()
            .is_some_and(|o| o.bytes == bytes && o.content_encoding.as_deref() == Some("zstd")),
        || format!("Content-Encoding not kept: {got:?}"),
    )?;
    Ok("metadata")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::ObjectStoreBackend;

    fn conforms(store: &dyn Store) -> Vec<&'static str> {
        match crate::runtime::io().block_on(run(store, "conformance")) {
            Ok(ran) => ran,
            Err(failure) => panic!("{failure}"),
        }
    }

    #[test]
    fn memory_store_conforms() {
        let store = ObjectStoreBackend::from_url("memory://conformance", true).unwrap();
        let ran = conforms(&store);
        assert!(
            ran.contains(&"put_modes") && ran.contains(&"races"),
            "{ran:?}"
        );
        assert!(ran.contains(&"metadata_refused"), "{ran:?}");
    }

    #[test]
    fn local_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().to_str().unwrap();
        let store: Arc<dyn Store> = Arc::new(ObjectStoreBackend::from_url(url, true).unwrap());
        let ran = conforms(&*store);
        for check in ["put_modes", "races", "leftovers"] {
            assert!(ran.contains(&check), "{ran:?}");
        }
    }
}
