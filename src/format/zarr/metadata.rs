//! Zarr array metadata (v2 `.zarray`, v3 `zarr.json`). Filled in by the metadata increment.
