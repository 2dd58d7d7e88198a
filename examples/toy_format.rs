//! A new format is one type implementing [`Volume`]: this toy one computes its voxels
//! instead of storing them (the value of voxel `(x, y, z)` is `x + y + z`, as `u32`). It gets
//! the typed reads, `read_into_view` and the async API from [`VolumeExt`] for free, and the
//! Python binding would take it as it takes the others (`Arc<dyn Volume>`).
//!
//! A real format lives in its own folder under `src/format/` and is added to
//! `open::detect` / `open::open` (see docs/ARCHITECTURE.md).

use std::any::Any;

use bigarrays::{Bbox, DType, ReadTarget, Volume, VolumeExt};

#[derive(Debug)]
struct Ramp {
    size: [u64; 3],
}

impl Volume for Ramp {
    fn format(&self) -> &'static str {
        "ramp"
    }

    fn url(&self) -> String {
        "ramp://".into()
    }

    fn dtype(&self) -> DType {
        DType::U32
    }

    fn num_channels(&self) -> usize {
        1
    }

    fn bounds(&self) -> Bbox {
        Bbox::new([0; 3], self.size.map(|n| n as i64)).expect("a valid box")
    }

    fn chunk_shape(&self) -> [u64; 3] {
        self.size
    }

    fn metadata_json(&self) -> String {
        format!("{{\"format\": \"ramp\", \"size\": {:?}}}", self.size)
    }

    fn read_many(&self, targets: &mut [ReadTarget<'_>]) -> bigarrays::Result<()> {
        let bounds = self.bounds();
        for target in targets {
            let bbox = *target.bbox();
            let out = target.initialized();
            let mut at = 0;
            // Fortran order: x varies fastest.
            for z in bbox.start[2]..bbox.stop[2] {
                for y in bbox.start[1]..bbox.stop[1] {
                    for x in bbox.start[0]..bbox.stop[0] {
                        let inside = [x, y, z]
                            .iter()
                            .enumerate()
                            .all(|(i, &v)| bounds.start[i] <= v && v < bounds.stop[i]);
                        let v = if inside { (x + y + z) as u32 } else { 0 };
                        out[at..at + 4].copy_from_slice(&v.to_le_bytes());
                        at += 4;
                    }
                }
            }
        }
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn main() -> bigarrays::Result<()> {
    let ramp = Ramp { size: [8, 8, 8] };
    let cut = ramp.read::<u32>(&Bbox::new([6, 6, 6], [10, 7, 7])?)?;
    // Voxels past the bounds read as 0, as in every format.
    assert_eq!(cut.iter().copied().collect::<Vec<_>>(), vec![18, 19, 0, 0]);
    println!(
        "{}: {:?}",
        ramp.metadata_json(),
        cut.iter().collect::<Vec<_>>()
    );
    Ok(())
}
