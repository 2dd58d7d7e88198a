//! The engine from Rust alone (no Python): typed reads and writes on disk and in memory.

use bigarrays::{
    Bbox, BigArray, Compression, DType, Encoding, Error, LayerSpec, OpenOptions, ReadTarget,
    Volume, VolumeExt,
};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};

fn spec(dtype: DType, num_channels: usize) -> LayerSpec {
    LayerSpec {
        shape: [50, 40, 9],
        dtype,
        chunks: [16, 16, 4],
        voxel_offset: [-10, 0, 100],
        resolution: [4.0, 4.0, 40.0],
        num_channels,
        encoding: Encoding::raw(),
        layer_type: "image".into(),
        sharding: None,
    }
}

fn bbox(start: [i64; 3], stop: [i64; 3]) -> Bbox {
    Bbox::new(start, stop).expect("valid box")
}

#[test]
fn typed_round_trip_on_disk_in_every_compression() -> Result<(), Error> {
    for compression in Compression::PROBE_ORDER {
        let dir = tempfile::tempdir().map_err(|e| Error::InvalidArgument {
            reason: e.to_string(),
        })?;
        let url = dir.path().to_str().unwrap_or_default();
        let options = OpenOptions {
            compression: Some(compression),
            ..Default::default()
        };
        let a = BigArray::create(url, &spec(DType::U16, 2), false, options)?;
        let b = bbox([-7, 3, 101], [33, 39, 108]);
        let data = ArrayD::from_shape_fn(IxDyn(&[40, 36, 7, 2]).f(), |i| {
            (i[0] + 40 * i[1] + 7 * i[2] + 1000 * i[3]) as u16
        });
        a.write(&b, data.view())?;
        let reopened = BigArray::open(url, OpenOptions::default())?;
        assert_eq!(reopened.read::<u16>(&b)?, data);
        // A box reaching past the bounds reads zeros there.
        let wide = reopened.read::<u16>(&bbox([-12, 3, 101], [-6, 4, 102]))?;
        assert_eq!(wide.shape(), &[6, 1, 1, 2]);
        assert_eq!(wide[[4, 0, 0, 0]], 0);
        assert_eq!(wide[[5, 0, 0, 1]], data[[0, 0, 0, 1]]);
    }
    Ok(())
}

#[test]
fn mismatches_are_errors_not_panics() -> Result<(), Error> {
    let a = BigArray::create(
        "memory://engine-mismatch",
        &spec(DType::F32, 1),
        true,
        OpenOptions::default(),
    )?;
    let b = bbox([0, 0, 100], [2, 2, 101]);
    assert!(matches!(
        a.read::<u8>(&b),
        Err(Error::InvalidArgument { .. })
    ));
    let wrong_shape = ArrayD::<f32>::zeros(IxDyn(&[3, 2, 1]));
    assert!(matches!(
        a.write(&b, wrong_shape.view()),
        Err(Error::InvalidArgument { .. })
    ));
    let outside = bbox([39, 0, 100], [41, 2, 101]);
    let values = ArrayD::<f32>::zeros(IxDyn(&[2, 2, 1]));
    assert!(matches!(
        a.write(&outside, values.view()),
        Err(Error::OutOfBounds { .. })
    ));
    let mut short = vec![0u8; 3];
    assert!(a.read_into(&b, &mut short).is_err());
    Ok(())
}

#[test]
fn c_ordered_input_is_written_in_fortran_order() -> Result<(), Error> {
    let a = BigArray::create(
        "memory://engine-order",
        &spec(DType::I32, 1),
        true,
        OpenOptions::default(),
    )?;
    let b = bbox([0, 0, 100], [3, 4, 102]);
    let c_order = ArrayD::from_shape_fn(IxDyn(&[3, 4, 2]), |i| {
        (i[0] * 100 + i[1] * 10 + i[2]) as i32
    });
    a.write(&b, c_order.view())?;
    assert_eq!(a.read::<i32>(&b)?, c_order);
    Ok(())
}

#[test]
fn byte_ranges_on_disk_and_in_memory() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::InvalidArgument {
        reason: e.to_string(),
    })?;
    let disk = dir.path().to_str().unwrap_or_default().to_string();
    for url in [disk.as_str(), "memory://ranges"] {
        let opened = bigarrays::store::open_url(url, true)?;
        let store = opened.writer("")?;
        let io = bigarrays::runtime::io();
        let value = bytes::Bytes::from((0u8..=255).collect::<Vec<u8>>());
        io.block_on(store.put("shard", value.clone()))?;
        let parts = io
            .block_on(store.get_ranges("shard", &[0..4, 10..12, 200..256]))?
            .unwrap_or_default();
        assert_eq!(
            parts,
            vec![
                value.slice(0..4),
                value.slice(10..12),
                value.slice(200..256)
            ]
        );
        let one = io
            .block_on(store.get_range("shard", 5..7))?
            .map(|r| r.bytes);
        assert_eq!(one, Some(value.slice(5..7)));
        assert_eq!(io.block_on(store.get_range("absent", 0..1))?, None);
    }
    Ok(())
}

/// Reads `boxes` into zeroed buffers (as large Python reads are), where chunks wholly inside
/// one box are decoded in place, and into uninitialised-style ones, where every chunk is
/// decoded and then copied.
type Buffers = Vec<Vec<u8>>;

fn read_both_ways(a: &BigArray, boxes: &[Bbox]) -> Result<(Buffers, Buffers), Error> {
    let voxel = a.dtype().itemsize() * a.num_channels();
    let len = |b: &Bbox| b.num_voxels().unwrap_or(0) * voxel;
    let mut copied: Buffers = boxes.iter().map(|b| vec![0xa5; len(b)]).collect();
    let mut targets: Vec<ReadTarget<'_>> = boxes
        .iter()
        .zip(copied.iter_mut())
        .map(|(b, v)| ReadTarget::new(*b, v))
        .collect();
    a.read_many(&mut targets)?;
    let mut in_place: Buffers = boxes.iter().map(|b| vec![0; len(b)]).collect();
    let mut targets: Vec<ReadTarget<'_>> = boxes
        .iter()
        .zip(in_place.iter_mut())
        .map(|(b, v)| ReadTarget::zeroed(*b, v))
        .collect();
    a.read_many(&mut targets)?;
    Ok((in_place, copied))
}

#[test]
fn decoding_in_place_matches_decoding_then_copying() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::InvalidArgument {
        reason: e.to_string(),
    })?;
    let url = dir.path().to_str().unwrap_or_default();
    let mut s = spec(DType::U64, 2);
    s.encoding = Encoding::compressed_segmentation([8, 4, 3])?;
    let a = BigArray::create(url, &s, false, OpenOptions::default())?;
    let bounds = a.bounds();
    let shape = bounds.shape().map(|n| n as usize);
    let data = ArrayD::from_shape_fn(IxDyn(&[shape[0], shape[1], shape[2], 2]).f(), |i| {
        ((i[0] / 3 + 7 * (i[1] / 5) + 13 * i[2] + 100 * i[3]) as u64 * 2_654_435_761) % 97
    });
    a.write(&bounds, data.view())?;
    // The whole layer (edge chunks clipped by the bounds), boxes sharing chunks, a box
    // holding whole chunks and reaching past the bounds.
    let boxes = [
        bounds,
        bbox([-10, 0, 100], [30, 20, 106]),
        bbox([-4, 3, 101], [22, 40, 109]),
        bbox([-20, -16, 96], [38, 48, 112]),
    ];
    let (in_place, copied) = read_both_ways(&a, &boxes)?;
    assert_eq!(in_place, copied);
    let whole: Vec<u8> = data
        .as_slice_memory_order()
        .unwrap_or_default()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(whole, in_place[0]);

    // A corrupt chunk decoded in place is an error naming it, as it is when copied.
    let key = dir.path().join("4_4_40").join("6-22_16-32_104-108.gz");
    std::fs::write(&key, [1u8, 0, 0, 0, 9, 9]).map_err(|e| Error::InvalidArgument {
        reason: e.to_string(),
    })?;
    for in_place in [true, false] {
        let mut out = vec![0u8; boxes[0].num_voxels().unwrap_or(0) * 16];
        let result = if in_place {
            a.read_many(&mut [ReadTarget::zeroed(boxes[0], &mut out)])
        } else {
            a.read_into(&boxes[0], &mut out)
        };
        match result {
            Err(e @ Error::ChunkDecode { .. }) => {
                assert!(e.to_string().contains("6-22_16-32_104-108"))
            }
            other => panic!("{other:?}"),
        }
    }
    Ok(())
}

#[test]
fn reads_into_views_in_any_memory_order() -> Result<(), Error> {
    let a = BigArray::create(
        "memory://engine-views",
        &spec(DType::U16, 2),
        true,
        OpenOptions::default(),
    )?;
    let b = bbox([-7, 3, 101], [33, 39, 108]);
    let data = ArrayD::from_shape_fn(IxDyn(&[40, 36, 7, 2]).f(), |i| {
        (i[0] + 40 * i[1] + 7 * i[2] + 1000 * i[3]) as u16
    });
    a.write(&b, data.view())?;
    let mut fortran = ArrayD::<u16>::zeros(IxDyn(&[40, 36, 7, 2]).f());
    a.read_into_view(&b, fortran.view_mut())?;
    assert_eq!(fortran, data);
    let mut c_order = ArrayD::<u16>::zeros(IxDyn(&[40, 36, 7, 2]));
    a.read_into_view(&b, c_order.view_mut())?;
    assert_eq!(c_order, data);
    // A strided view of a larger array: every other x.
    let mut wide = ArrayD::<u16>::zeros(IxDyn(&[80, 36, 7, 2]).f());
    a.read_into_view(
        &b,
        wide.slice_each_axis_mut(|ax| match ax.axis.index() {
            0 => ndarray::Slice::new(0, None, 2),
            _ => ndarray::Slice::from(..),
        }),
    )?;
    assert_eq!(
        wide.slice_each_axis(|ax| match ax.axis.index() {
            0 => ndarray::Slice::new(0, None, 2),
            _ => ndarray::Slice::from(..),
        }),
        data
    );
    assert_eq!(wide[[1, 0, 0, 0]], 0);
    assert!(a
        .read_into_view(&b, ArrayD::<u16>::zeros(IxDyn(&[40, 36, 7])).view_mut())
        .is_err());
    assert!(a
        .read_into_view(&b, ArrayD::<u8>::zeros(IxDyn(&[40, 36, 7, 2])).view_mut())
        .is_err());
    Ok(())
}

#[test]
fn async_reads_and_writes_run_inside_a_callers_runtime() -> Result<(), Error> {
    let a = BigArray::create(
        "memory://engine-async",
        &spec(DType::U16, 1),
        true,
        OpenOptions::default(),
    )?;
    let b = bbox([-7, 3, 101], [33, 39, 108]);
    let data = ArrayD::from_shape_fn(IxDyn(&[40, 36, 7]).f(), |i| (i[0] * i[1] + i[2]) as u16);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| Error::InvalidArgument {
            reason: e.to_string(),
        })?;
    // On the caller's tokio runtime, where the blocking methods would panic.
    let back = runtime.block_on(async {
        a.write_async(b, data.clone()).await?;
        a.read_async::<u16>(b).await
    })?;
    assert_eq!(back, data);
    // On another executor, and with errors carried back.
    let read = futures::executor::block_on(a.read_async::<u16>(b))?;
    assert_eq!(read, data);
    let wrong = futures::executor::block_on(a.read_async::<u8>(b));
    assert!(
        matches!(wrong, Err(Error::InvalidArgument { .. })),
        "{wrong:?}"
    );
    Ok(())
}

/// 8 writers each paint their own x-band, 4 voxels wide, of the same 2 chunks (of one
/// shard, when sharded), over and over: every write is a read-modify-write of objects the
/// others are rewriting too.
fn overlapping_writers(url: &str, sharding: Option<serde_json::Value>) -> Result<(), Error> {
    let mut s = spec(DType::U8, 1);
    s.shape = [32, 64, 4];
    s.chunks = [32, 32, 4];
    s.voxel_offset = [0, 0, 0];
    s.sharding = sharding;
    let a = BigArray::create(url, &s, true, OpenOptions::default())?;
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..8i64)
            .map(|t| {
                let a = &a;
                scope.spawn(move || -> Result<(), Error> {
                    let b = bbox([4 * t, 0, 0], [4 * t + 4, 64, 4]);
                    for round in 1..=10u8 {
                        let band = ArrayD::from_elem(IxDyn(&[4, 64, 4]).f(), round * 10 + t as u8);
                        a.write(&b, band.view())?;
                    }
                    Ok(())
                })
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().unwrap_or_else(|_| panic!("a writer panicked")))
    })?;
    let all = a.read::<u8>(&a.bounds())?;
    for ((x, _, _), v) in all
        .view()
        .into_dimensionality::<ndarray::Ix3>()
        .unwrap()
        .indexed_iter()
    {
        assert_eq!(*v, 100 + (x / 4) as u8, "x = {x}");
    }
    Ok(())
}

#[test]
fn overlapping_partial_writes_lose_nothing_where_puts_are_conditional() -> Result<(), Error> {
    overlapping_writers("memory://engine-overlapping-writers", None)?;
    // Each writer covers a part of each chunk; in the sharded layer each chunk is whole
    // once, so the writers also rewrite the shard around each other's chunks.
    overlapping_writers(
        "memory://engine-overlapping-shard-writers",
        Some(serde_json::json!({
            "@type": "neuroglancer_uint64_sharded_v1",
            "preshift_bits": 1,
            "hash": "identity",
            "minishard_bits": 0,
            "shard_bits": 0,
            "minishard_index_encoding": "raw",
            "data_encoding": "raw"
        })),
    )
}

#[test]
fn cutouts_ending_early_in_gzip_chunks_decode_only_what_they_read() -> Result<(), Error> {
    let cases = [
        (Compression::Gzip, 1),
        (Compression::Gzip, 2),
        (Compression::Zstd, 1),
    ];
    for (compression, channels) in cases {
        let dir = tempfile::tempdir().map_err(|e| Error::InvalidArgument {
            reason: e.to_string(),
        })?;
        let url = dir.path().to_str().unwrap_or_default();
        let options = OpenOptions {
            compression: Some(compression),
            ..Default::default()
        };
        let a = BigArray::create(url, &spec(DType::U16, channels), false, options)?;
        let bounds = a.bounds();
        let shape = bounds.shape().map(|n| n as usize);
        let mut dims = shape.to_vec();
        if channels > 1 {
            dims.push(channels);
        }
        let data = ArrayD::from_shape_fn(IxDyn(&dims).f(), |i| {
            let c = if channels > 1 { i[3] } else { 0 };
            (i[0] * 7 + i[1] * 13 + i[2] * 101 + c * 1009) as u16
        });
        a.write(&bounds, data.view())?;
        // Boxes ending in the first quarter of a chunk along z, along y, and one voxel.
        for (start, stop) in [
            ([-10, 0, 100], [40, 40, 101]),
            ([-3, 5, 104], [29, 17, 105]),
            ([0, 0, 100], [6, 3, 104]),
            ([7, 33, 108], [8, 34, 109]),
        ] {
            let b = bbox(start, stop);
            let got = a.read::<u16>(&b)?;
            let o: [usize; 3] = std::array::from_fn(|d| (start[d] - bounds.start[d]) as usize);
            let want = data.slice_each_axis(|ax| {
                let d = ax.axis.index();
                match d {
                    3 => ndarray::Slice::from(..),
                    _ => ndarray::Slice::from(o[d]..o[d] + (stop[d] - start[d]) as usize),
                }
            });
            assert_eq!(got, want, "{compression:?} × {channels} {b:?}");
        }
    }
    Ok(())
}

#[test]
fn stores_list_size_and_delete_directories_only() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::InvalidArgument {
        reason: e.to_string(),
    })?;
    let disk = dir.path().to_str().unwrap_or_default().to_string();
    for url in [disk.as_str(), "memory://list-and-delete"] {
        let opened = bigarrays::store::open_url(url, true)?;
        let store = opened.writer("")?;
        let io = bigarrays::runtime::io();
        for key in ["s/a", "s/deep/b", "s_2/c", "info"] {
            io.block_on(store.put(key, bytes::Bytes::from_static(b"12345")))?;
        }
        let mut listed: Vec<(String, u64)> = io
            .block_on(store.list("s"))?
            .into_iter()
            .map(|l| (l.key, l.size))
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            vec![("s/a".to_string(), 5), ("s/deep/b".to_string(), 5)]
        );
        assert_eq!(io.block_on(store.size("s/a"))?, Some(5));
        assert_eq!(io.block_on(store.size("s/none"))?, None);
        assert_eq!(io.block_on(store.size("s"))?, None); // a directory holds no value
        io.block_on(store.delete_dir("s"))?;
        io.block_on(store.delete_dir("absent"))?;
        assert!(io.block_on(store.list("s"))?.is_empty());
        // A name that merely starts with the directory's stays, and so does the info.
        assert_eq!(io.block_on(store.size("s_2/c"))?, Some(5));
        assert_eq!(io.block_on(store.size("info"))?, Some(5));
    }
    Ok(())
}

#[test]
fn chunk_sizes_tell_stored_chunks_without_reading_them() -> Result<(), Error> {
    for sharding in [None, Some(serde_json::json!("auto"))] {
        let url = format!("memory://chunk-sizes-{}", sharding.is_some());
        let mut s = spec(DType::U8, 1);
        s.sharding = sharding;
        let a = BigArray::create(&url, &s, true, OpenOptions::default())?;
        // Chunks are 16 × 16 × 4 from (-10, 0, 100): two written, one of them in part.
        let b = bbox([-10, 0, 100], [6, 16, 104]);
        a.write(&b, ArrayD::from_elem(IxDyn(&[16, 16, 4]).f(), 7u8).view())?;
        let c = bbox([6, 16, 104], [10, 20, 105]);
        a.write(&c, ArrayD::from_elem(IxDyn(&[4, 4, 1]).f(), 9u8).view())?;
        let sizes = a.chunk_sizes(&a.bounds())?;
        assert_eq!(sizes.len(), 4 * 3 * 3);
        let held: Vec<[u64; 3]> = sizes
            .iter()
            .filter(|(_, size)| size.is_some_and(|n| n > 0))
            .map(|(g, _)| *g)
            .collect();
        assert_eq!(held, vec![[0, 0, 0], [1, 1, 1]]);
        // A box asks only about the chunks it touches.
        let one = a.chunk_sizes(&bbox([-10, 0, 100], [-9, 1, 101]))?;
        assert!(matches!(one.as_slice(), [([0, 0, 0], Some(_))]));
    }
    Ok(())
}
