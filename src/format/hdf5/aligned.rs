//! BigArrays.jl's AlignedBigArray (read-only): aligned 2D sections listed in
//! `registry.txt`, one line per z section (line n, 1-based, is z = n - 1). Fields are
//! `name [zero] xoff yoff xdim ydim tf`; section `<dir>/<name>.h5` holds a 2D dataset `img`
//! of h5py shape `(ydim, xdim)` covering x `[xoff, xoff + xdim)`, y `[yoff, yoff + ydim)`.
//! (The original computed the y upper bound as `xoff + ydim`; we use `yoff + ydim`.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::dataset::{H5Dataset, OutBuf};
use super::metadata_file;
use super::open_files::OpenFiles;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::Bbox;
use crate::store::local_path;
use crate::volume::{read_each, ReadTarget, Volume};
use crate::{interrupt, runtime};

/// `registry.txt` files larger than this are refused.
const MAX_REGISTRY_BYTES: u64 = 64 << 20;

/// One line of the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The section's file name without `.h5`, relative to the layer directory.
    pub name: String,
    /// `[xoff, yoff]`: the section's lowest x and y.
    pub offset: [i64; 2],
    /// `[xdim, ydim]`: the section's extent in x and y.
    pub size: [u64; 2],
}

impl Section {
    fn bbox(&self, z: i64) -> Result<Bbox> {
        Bbox::new(
            [self.offset[0], self.offset[1], z],
            [
                self.offset[0] + self.size[0] as i64,
                self.offset[1] + self.size[1] as i64,
                z + 1,
            ],
        )
    }
}

/// Parses `registry.txt`: 6 fields `name xoff yoff xdim ydim tf`, or 7 with an unused
/// second field. Blank lines are sections that do not exist (zeros).
pub fn parse_registry(url: &str, text: &str) -> Result<Vec<Option<Section>>> {
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let numbers = match fields.len() {
                0 => return Ok(None),
                6 => &fields[1..5],
                7 => &fields[2..6],
                k => {
                    return Err(Error::info(
                        url,
                        format!("line {}", n + 1),
                        format!("has {k} fields, expected 6 or 7"),
                    ))
                }
            };
            let bad =
                |what: &str| Error::info(url, format!("line {}", n + 1), format!("bad {what}"));
            let int = |s: &str, what: &str| -> Result<i64> {
                // Offsets and sizes are integers, sometimes written as floats ("12.0").
                s.parse::<i64>()
                    .ok()
                    .or_else(|| {
                        s.parse::<f64>()
                            .ok()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                            .map(|f| f as i64)
                    })
                    .ok_or_else(|| bad(what))
            };
            let (xoff, yoff) = (int(numbers[0], "xoff")?, int(numbers[1], "yoff")?);
            let (xdim, ydim) = (int(numbers[2], "xdim")?, int(numbers[3], "ydim")?);
            if xdim < 0 || ydim < 0 {
                return Err(bad("size (negative)"));
            }
            // Below 2^62 each, so that offset + size fits in i64.
            if [xoff, yoff, xdim, ydim]
                .iter()
                .any(|v| v.unsigned_abs() >= 1 << 62)
            {
                return Err(bad("offset or size (beyond ±2^62)"));
            }
            // Sections are `<dir>/<name>.h5`: a name with a path separator could name a file
            // outside the layer's directory.
            let name = fields[0];
            if name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
                return Err(bad("section name (not a plain file name)"));
            }
            Ok(Some(Section {
                name: fields[0].to_string(),
                offset: [xoff, yoff],
                size: [xdim as u64, ydim as u64],
            }))
        })
        .collect()
}

/// An aligned-sections layer on local disk.
#[derive(Debug)]
pub struct AlignedArray {
    dir: PathBuf,
    sections: Vec<Option<Section>>,
    bounds: Bbox,
    dtype: DType,
    fill_missing: bool,
    /// Open section files with their chunk indexes.
    open: OpenFiles<H5Dataset>,
}

impl AlignedArray {
    /// Opens `path`: a directory holding `registry.txt`, or the registry file itself.
    pub fn open(path: &str, fill_missing: bool) -> Result<Self> {
        let path = local_path::path_of(path)?;
        let (dir, registry) = if path.is_dir() {
            (path.clone(), path.join("registry.txt"))
        } else {
            (
                path.parent().map(Path::to_path_buf).unwrap_or_default(),
                path.clone(),
            )
        };
        let url = registry.display().to_string();
        let text = metadata_file::read_text(&path, &registry, MAX_REGISTRY_BYTES)?;
        let sections = parse_registry(&url, &text)?;
        let (mut lo, mut hi) = ([i64::MAX; 2], [i64::MIN; 2]);
        for s in sections.iter().flatten() {
            for i in 0..2 {
                lo[i] = lo[i].min(s.offset[i]);
                hi[i] = hi[i].max(s.offset[i] + s.size[i] as i64);
            }
        }
        if lo[0] == i64::MAX {
            (lo, hi) = ([0, 0], [0, 0]);
        }
        let bounds = Bbox::new([lo[0], lo[1], 0], [hi[0], hi[1], sections.len() as i64])?;
        Ok(AlignedArray {
            dir,
            sections,
            bounds,
            // Sections are uint8 images; a section file says otherwise when opened.
            dtype: DType::U8,
            fill_missing,
            open: OpenFiles::default(),
        })
    }

    /// The layer directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The registry's sections by z (index `z`), `None` where a line is empty.
    pub fn sections(&self) -> &[Option<Section>] {
        &self.sections
    }

    fn section_path(&self, s: &Section) -> PathBuf {
        self.dir.join(format!("{}.h5", s.name))
    }

    fn dataset(&self, s: &Section) -> Result<Option<Arc<H5Dataset>>> {
        self.open.get_or_open(&self.section_path(s), |path| {
            let ds = H5Dataset::open(path, "img")?;
            let shape = ds.shape();
            if ds.dtype() != self.dtype || shape[2] != 1 || shape[3] != 1 {
                return Err(Error::decode(
                    &ds.label(),
                    format!(
                        "expected a 2D {} image, found {} of shape {:?}",
                        self.dtype,
                        ds.dtype(),
                        shape
                    ),
                ));
            }
            Ok(ds)
        })
    }

    /// Reads `bbox` into `out` (Fortran `[x, y, z]`); everything outside the sections reads 0.
    fn read_box(&self, bbox: &Bbox, out: &mut [u8]) -> Result<()> {
        interrupt::begin();
        let shape = bbox.shape();
        out.fill(0);
        let buf = OutBuf::new(
            out,
            [shape[0], shape[1], shape[2], 1],
            self.dtype.itemsize(),
        )?;
        let z0 = bbox.start[2].max(0);
        let z1 = bbox.stop[2].min(self.sections.len() as i64);
        interrupt::install(&runtime::cpu(), |cancel| {
            (z0..z1).into_par_iter().try_for_each(|z| {
                interrupt::cancelled(cancel)?;
                let Some(section) = &self.sections[z as usize] else {
                    return Ok(());
                };
                let Some(part) = section.bbox(z)?.intersect(bbox) else {
                    return Ok(());
                };
                let Some(ds) = self.dataset(section)? else {
                    if !self.fill_missing {
                        return Err(Error::MissingChunk {
                            key: self.section_path(section).display().to_string(),
                        });
                    }
                    return Ok(());
                };
                let dshape = ds.shape();
                let src = [0, 1].map(|i| (part.start[i] - section.offset[i]) as u64);
                let e = part.shape();
                // The file may be smaller than the registry says; the rest stays 0.
                let ext = [0, 1].map(|i| e[i].min(dshape[i].saturating_sub(src[i])));
                let dst_at = [0, 1, 2].map(|i| (part.start[i] - bbox.start[i]) as u64);
                ds.read(
                    [src[0], src[1], 0, 0],
                    [ext[0], ext[1], 1, 1],
                    buf,
                    [dst_at[0], dst_at[1], dst_at[2], 0],
                    cancel,
                )
            })
        })
    }
}

impl Volume for AlignedArray {
    fn format(&self) -> &'static str {
        "aligned"
    }

    fn url(&self) -> String {
        local_path::url_of_relative(&self.dir)
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn num_channels(&self) -> usize {
        1
    }

    fn bounds(&self) -> Bbox {
        self.bounds
    }

    /// One section.
    fn chunk_shape(&self) -> [u64; 3] {
        let s = self.bounds.shape();
        [s[0], s[1], 1]
    }

    /// A summary: each section's name, offset and size (`null` for gaps).
    fn metadata_json(&self) -> String {
        let sections: Vec<_> = self
            .sections
            .iter()
            .map(|s| {
                s.as_ref().map(
                    |s| serde_json::json!({"name": s.name, "offset": s.offset, "size": s.size}),
                )
            })
            .collect();
        serde_json::json!({"format": "aligned", "sections": sections}).to_string()
    }

    fn read_many(&self, targets: &mut [ReadTarget<'_>]) -> Result<()> {
        read_each(targets, |bbox, out| self.read_box(bbox, out))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_six_and_seven_fields() {
        let text = "1,2_a 10 20 300 400 tf\n\n1,3_b 0 -5 7 300 400 x\n";
        let s = parse_registry("r", text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            Some(Section {
                name: "1,2_a".into(),
                offset: [10, 20],
                size: [300, 400]
            })
        );
        assert_eq!(s[1], None);
        assert_eq!(
            s[2].as_ref().map(|s| (s.offset, s.size)),
            Some(([-5, 7], [300, 400]))
        );
        let err = parse_registry("r", "a 1 2 3\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
