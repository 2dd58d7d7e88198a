//! A single HDF5 dataset as a layer (read-only), over the shared dataset reader.

use std::path::Path;

use super::dataset::{h5_error, H5Dataset, OutBuf};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::geometry::Bbox;
use crate::interrupt;
use crate::store::local_path;
use crate::volume::{read_each, ReadTarget, Volume};

/// The paths of the datasets in `group` and the groups below it (h5py's names, without the
/// leading `/`), sorted; at most 50, for a message.
fn dataset_names(group: &hdf5::Group) -> Vec<String> {
    const SHOWN: usize = 50;
    let mut names = Vec::new();
    let mut pending = vec![group.clone()];
    while let Some(g) = pending.pop() {
        if names.len() >= SHOWN {
            break;
        }
        for d in g.datasets().unwrap_or_default() {
            names.push(d.name().trim_start_matches('/').to_string());
        }
        pending.extend(g.groups().unwrap_or_default());
    }
    names.sort();
    names.truncate(SHOWN);
    names
}

/// A single HDF5 dataset as a layer: `BigArray("file.h5", dataset="img")`. Its h5py axes
/// are reversed into `(x, y, z)` (plus channels for a 4D dataset), origin 0; read-only.
#[derive(Debug)]
pub struct H5File {
    dataset: H5Dataset,
    bounds: Bbox,
}

impl H5File {
    /// Opens dataset `name` of the file at `path` (a path or `file://` URL).
    pub fn open(path: &str, name: &str) -> Result<Self> {
        let path = local_path::path_of(path)?;
        let not_found = |reason: String| Error::NotFound {
            url: path.display().to_string(),
            reason,
        };
        if !path.is_file() {
            return Err(not_found("no such file".into()));
        }
        // A missing dataset is the user's typo, not a corrupt file: say what the file has.
        let file =
            hdf5::File::open(&path).map_err(|e| h5_error(&path, "cannot open HDF5 file", e))?;
        if !file.link_exists(name) || file.group(name).is_ok() {
            let names = dataset_names(&file);
            let has = if names.is_empty() {
                "it has no datasets".to_string()
            } else {
                format!("it has: {}", names.join(", "))
            };
            return Err(not_found(format!("no dataset '{name}'; {has}")));
        }
        drop(file);
        let dataset = H5Dataset::open(&path, name)?;
        let s = dataset.shape();
        let bounds = Bbox::new([0; 3], [0, 1, 2].map(|i| s[i] as i64))?;
        Ok(H5File { dataset, bounds })
    }

    /// The dataset read.
    pub fn dataset(&self) -> &H5Dataset {
        &self.dataset
    }

    /// The HDF5 file's path.
    pub fn path(&self) -> &Path {
        self.dataset.path()
    }

    /// Reads `bbox` into `out` (Fortran `[x, y, z, c]`); outside the dataset reads 0.
    fn read_box(&self, bbox: &Bbox, out: &mut [u8]) -> Result<()> {
        interrupt::begin();
        let shape = bbox.shape();
        let channels = self.dataset.shape()[3];
        let covered = bbox.intersect(&self.bounds);
        if covered.as_ref() != Some(bbox) {
            out.fill(0);
        }
        let buf = OutBuf::new(
            out,
            [shape[0], shape[1], shape[2], channels],
            self.dataset.dtype().itemsize(),
        )?;
        let Some(part) = covered else {
            return Ok(());
        };
        let e = part.shape();
        let start = [0, 1, 2].map(|i| part.start[i] as u64);
        let at = [0, 1, 2].map(|i| (part.start[i] - bbox.start[i]) as u64);
        interrupt::install(&crate::runtime::cpu(), |cancel| {
            self.dataset.read(
                [start[0], start[1], start[2], 0],
                [e[0], e[1], e[2], channels],
                buf,
                [at[0], at[1], at[2], 0],
                cancel,
            )
        })
    }
}

impl Volume for H5File {
    fn format(&self) -> &'static str {
        "hdf5"
    }

    fn url(&self) -> String {
        local_path::url_of_relative(self.path())
    }

    fn dtype(&self) -> DType {
        self.dataset.dtype()
    }

    fn num_channels(&self) -> usize {
        self.dataset.shape()[3] as usize
    }

    /// The `(x, y, z)` extent, from the origin.
    fn bounds(&self) -> Bbox {
        self.bounds
    }

    /// The HDF5 chunk shape, or the whole dataset when it is contiguous.
    fn chunk_shape(&self) -> [u64; 3] {
        let c = self.dataset.chunk_shape().unwrap_or(self.dataset.shape());
        [c[0], c[1], c[2]]
    }

    /// A summary: the dataset's name, shape and chunks, and whether reads bypass the HDF5
    /// library (chunks read by file address).
    fn metadata_json(&self) -> String {
        serde_json::json!({
            "format": "hdf5",
            "dataset": self.dataset.label(),
            "shape": self.dataset.shape(),
            "chunks": self.dataset.chunk_shape(),
            "reads_by_address": self.dataset.reads_by_address(),
        })
        .to_string()
    }

    fn read_many(&self, targets: &mut [ReadTarget<'_>]) -> Result<()> {
        read_each(targets, |bbox, out| self.read_box(bbox, out))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
