//! Reading the metadata file of an HDF5 layout (H5s's `config.json`, the aligned layout's
//! `registry.txt`): bounded in size, text, with errors naming the file.

use std::path::Path;

use crate::error::{Error, Result};

/// The text of the metadata file `file` of the layer at `layer`. A file that is not there
/// means no layer (`LayerNotFound`, naming `layer`); one above `max_bytes` or not UTF-8 is
/// bad metadata (an `InfoError` naming the file), not a failing store.
pub fn read_text(layer: &Path, file: &Path, max_bytes: u64) -> Result<String> {
    let url = file.display().to_string();
    let meta = std::fs::metadata(file).map_err(|_| Error::LayerNotFound {
        url: layer.display().to_string(),
    })?;
    if meta.len() > max_bytes {
        let name = file
            .file_name()
            .unwrap_or(file.as_os_str())
            .to_string_lossy();
        return Err(Error::info(
            &url,
            "(file)",
            format!("{name} is implausibly large"),
        ));
    }
    let bytes = std::fs::read(file).map_err(|e| Error::store(&url, e))?;
    String::from_utf8(bytes)
        .map_err(|e| Error::info(&url, "(file)", format!("not UTF-8 text: {e}")))
}
