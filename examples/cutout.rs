//! Creates a layer, writes a box into it and reads a cutout back, from Rust alone.
//!
//! `cargo run --example cutout [DIR]` (default: a memory store, gone when the process ends).

use bigarrays::{Bbox, BigArray, DType, Encoding, LayerSpec, OpenOptions, Volume, VolumeExt};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};

fn main() -> Result<(), bigarrays::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://example".into());
    let spec = LayerSpec {
        shape: [256, 256, 64],
        dtype: DType::U16,
        chunks: [64, 64, 16],
        voxel_offset: [0, 0, 0],
        resolution: [4.0, 4.0, 40.0],
        num_channels: 1,
        encoding: Encoding::raw(),
        layer_type: "image".into(),
        sharding: None,
    };
    let layer = BigArray::create(&url, &spec, true, OpenOptions::default())?;

    // Arrays are Fortran-ordered [x, y, z] (plus c for multi-channel layers).
    let bbox = Bbox::new([10, 20, 5], [100, 90, 21])?;
    let shape: Vec<usize> = bbox.shape().iter().map(|&n| n as usize).collect();
    let data = ArrayD::from_shape_fn(IxDyn(&shape).f(), |i| (i[0] + i[1] + i[2]) as u16);
    layer.write(&bbox, data.view())?;

    // Any format opens the same way and answers through the `Volume` trait.
    let opened = bigarrays::open(&url, &OpenOptions::default())?;
    let cut = opened.read::<u16>(&Bbox::new([50, 50, 10], [52, 52, 12])?)?;
    println!(
        "{} ({}, {} chunks of {:?}): {:?}",
        opened.url(),
        opened.format(),
        opened.dtype(),
        opened.chunk_shape(),
        cut.iter().collect::<Vec<_>>()
    );
    Ok(())
}
