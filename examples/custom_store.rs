//! A store of your own: a map in memory behind [`ReadStore`] and [`Store`], checked against
//! the store contract (`bigarrays::store::conformance`), then holding a Precomputed layer.
//!
//! `cargo run --example custom_store`

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bigarrays::store::{conformance, Listed, Object, PutMode, PutOptions, Ranged};
use bigarrays::{Bbox, BigArray, DType, Encoding, Error, LayerSpec, OpenOptions, ReadStore, Store};
use bigarrays::{Volume, VolumeExt};
use bytes::Bytes;
use ndarray::{ArrayD, IxDyn, ShapeBuilder};

/// Every key with its value. No per-object metadata and no versions, so the store says it
/// keeps neither, and refuses conditional puts rather than pretend they are atomic.
#[derive(Debug, Default)]
struct MapStore {
    map: Mutex<BTreeMap<String, Bytes>>,
}

impl MapStore {
    fn map(&self) -> Result<MutexGuard<'_, BTreeMap<String, Bytes>>, Error> {
        // A panic while the lock was held leaves the map as it was: nothing is half-written.
        Ok(self.map.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The part of `bytes` in `range`, short (or empty) past the end.
fn slice(bytes: &Bytes, range: &Range<u64>) -> Bytes {
    let len = bytes.len() as u64;
    let start = range.start.min(len) as usize;
    let end = range.end.clamp(range.start.min(len), len) as usize;
    bytes.slice(start..end)
}

#[async_trait]
impl ReadStore for MapStore {
    fn url_of(&self, key: &str) -> String {
        format!("map://{key}")
    }

    async fn get(&self, key: &str) -> Result<Option<Object>, Error> {
        Ok(self.map()?.get(key).map(|bytes| Object {
            bytes: bytes.clone(),
            content_encoding: None,
            version: None,
        }))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Ranged>, Error> {
        Ok(self.map()?.get(key).map(|bytes| Ranged {
            bytes: slice(bytes, &range),
            size: bytes.len() as u64,
            e_tag: None,
        }))
    }

    async fn get_ranges(
        &self,
        key: &str,
        ranges: &[Range<u64>],
    ) -> Result<Option<Vec<Bytes>>, Error> {
        Ok(self
            .map()?
            .get(key)
            .map(|bytes| ranges.iter().map(|r| slice(bytes, r)).collect()))
    }

    async fn get_range_if(
        &self,
        key: &str,
        range: Range<u64>,
        _tag: Option<&str>,
    ) -> Result<Option<Bytes>, Error> {
        // No ETags here, so whatever is there (as the contract says).
        Ok(self.map()?.get(key).map(|bytes| slice(bytes, &range)))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, Error> {
        Ok(self.map()?.get(key).map(|bytes| bytes.len() as u64))
    }

    async fn list(&self, dir: &str) -> Result<Vec<Listed>, Error> {
        let prefix = format!("{dir}/");
        Ok(self
            .map()?
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, bytes)| Listed {
                key: key.clone(),
                size: bytes.len() as u64,
            })
            .collect())
    }
}

#[async_trait]
impl Store for MapStore {
    fn conditional_puts(&self) -> bool {
        false
    }

    async fn put_opts(&self, key: &str, value: Bytes, options: PutOptions) -> Result<bool, Error> {
        if options.mode != PutMode::Overwrite {
            return Err(Error::InvalidArgument {
                reason: format!("{}: this store has no conditional puts", self.url_of(key)),
            });
        }
        if options.content_encoding.is_some() {
            return Err(Error::InvalidArgument {
                reason: format!("{}: this store keeps no Content-Encoding", self.url_of(key)),
            });
        }
        self.map()?.insert(key.to_string(), value);
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<(), Error> {
        self.map()?.remove(key);
        Ok(())
    }

    async fn delete_dir(&self, dir: &str) -> Result<(), Error> {
        let prefix = format!("{dir}/");
        self.map()?.retain(|key, _| !key.starts_with(&prefix));
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store: Arc<dyn Store> = Arc::new(MapStore::default());

    // The contract the engine relies on, checked on this store before it holds a layer.
    let ran = futures::executor::block_on(conformance::run(&*store, "conformance"))?;
    println!("conformance checks passed: {}", ran.join(", "));

    let spec = LayerSpec {
        shape: [128, 128, 16],
        dtype: DType::U8,
        chunks: [64, 64, 16],
        voxel_offset: [0, 0, 0],
        resolution: [8.0, 8.0, 40.0],
        num_channels: 1,
        encoding: Encoding::raw(),
        layer_type: "image".into(),
        sharding: None,
    };
    let layer = BigArray::create_in(store.clone(), &spec, false, OpenOptions::default())?;
    let bbox = Bbox::new([0, 0, 0], [100, 70, 16])?;
    let shape: Vec<usize> = bbox.shape().iter().map(|&n| n as usize).collect();
    let data = ArrayD::from_shape_fn(IxDyn(&shape).f(), |i| (i[0] ^ i[1] ^ i[2]) as u8);
    layer.write(&bbox, data.view())?;

    let opened = BigArray::open_store(store, OpenOptions::default())?;
    let back = opened.read::<u8>(&bbox)?;
    assert_eq!(back, data);
    println!(
        "{}: {} of {:?} read back",
        opened.url(),
        opened.dtype(),
        bbox.shape()
    );
    Ok(())
}
