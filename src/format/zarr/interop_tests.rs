//! Parses every metadata file that zarr-python 3, TensorStore and ome-zarr-py wrote into
//! `tests/data/zarr_metadata/` (see its `generate.py`) and checks the result against what the
//! peer itself reported (`expected.json`), then writes it back and parses that again.

use std::fs;
use std::path::Path;

use serde_json::{Map, Value};

use super::group::GroupMetadata;
use super::metadata::{ArrayMetadata, ZarrFormat};
use super::ome::Multiscale;

/// Cases whose files we do not write back byte for byte, and why.
const NOT_BYTE_EXACT: &[(&str, &str)] = &[
    (
        "v2_blosc_auto",
        "numcodecs' shuffle -1 (auto) is written as the shuffle it resolves to",
    ),
    (
        "v2_fill_none",
        "a null fill value reads as zeros and is written as 0",
    ),
];

fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
    fs::read(dir.join(name)).ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_array(case: &str, dir: &Path, expected: &Value) {
    let url = dir.display().to_string();
    let (m, original) = match read(dir, "zarr.json") {
        Some(json) => (ArrayMetadata::parse_v3(&url, &json), json),
        None => {
            let zarray = read(dir, ".zarray").expect(".zarray");
            let zattrs = read(dir, ".zattrs");
            (
                ArrayMetadata::parse_v2(&url, &zarray, zattrs.as_deref()),
                zarray,
            )
        }
    };
    let m = m.unwrap_or_else(|e| panic!("{case}: {e}"));
    let format = if m.zarr_format == ZarrFormat::V3 {
        3
    } else {
        2
    };
    assert_eq!(expected["zarr_format"], format, "{case}");
    assert_eq!(serde_json::json!(m.shape), expected["shape"], "{case}");
    assert_eq!(
        serde_json::json!(m.chunk_shape),
        expected["chunk_shape"],
        "{case}"
    );
    assert_eq!(m.dtype.name(), expected["dtype"], "{case}");
    assert_eq!(hex(&m.fill_value), expected["fill_value_le_hex"], "{case}");
    let names: Vec<&str> = m.codecs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(serde_json::json!(names), expected["codecs"], "{case}");
    assert_eq!(
        Value::Object(m.attributes.clone()),
        expected["attributes"],
        "{case}"
    );
    if m.dtype.itemsize() > 1 {
        if let Some(bytes) = m.codecs.iter().find(|c| c.name == "bytes") {
            assert_eq!(bytes.configuration["endian"], expected["endian"], "{case}");
        }
    }

    let files = m.to_files().unwrap_or_else(|e| panic!("{case}: {e}"));
    let back = match m.zarr_format {
        ZarrFormat::V3 => ArrayMetadata::parse_v3(&url, &files[0].1),
        ZarrFormat::V2 => {
            let zattrs = files
                .iter()
                .find(|f| f.0 == ".zattrs")
                .map(|f| f.1.as_slice());
            ArrayMetadata::parse_v2(&url, &files[0].1, zattrs)
        }
    };
    assert_eq!(back.unwrap_or_else(|e| panic!("{case}: {e}")), m, "{case}");
    // zarr-python's own files come back byte for byte; TensorStore formats JSON its own way.
    let ours = &files[0].1;
    let exact = !case.starts_with("ts_") && !NOT_BYTE_EXACT.iter().any(|(c, _)| *c == case);
    if exact && ours != &original {
        panic!(
            "{case}: written metadata differs from the peer's:\n{}\n--- peer:\n{}",
            String::from_utf8_lossy(ours),
            String::from_utf8_lossy(&original)
        );
    }
}

fn check_group(case: &str, dir: &Path, expected: &Value) {
    let url = dir.display().to_string();
    let g = match read(dir, "zarr.json") {
        Some(json) => GroupMetadata::parse_v3(&url, &json),
        None => {
            let zgroup = read(dir, ".zgroup").expect(".zgroup");
            GroupMetadata::parse_v2(&url, &zgroup, read(dir, ".zattrs").as_deref())
        }
    }
    .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(
        Value::Object(g.attributes.clone()),
        expected["attributes"],
        "{case}"
    );
    let files = g.to_files().unwrap();
    let zattrs = files
        .iter()
        .find(|f| f.0 == ".zattrs")
        .map(|f| f.1.as_slice());
    let back = match g.zarr_format {
        ZarrFormat::V3 => GroupMetadata::parse_v3(&url, &files[0].1),
        ZarrFormat::V2 => GroupMetadata::parse_v2(&url, &files[0].1, zattrs),
    };
    assert_eq!(back.unwrap(), g, "{case}");

    let Some(ome) = expected.get("ome") else {
        return;
    };
    let ms = Multiscale::from_attributes(&url, &g.attributes)
        .unwrap_or_else(|e| panic!("{case}: {e}"))
        .unwrap_or_else(|| panic!("{case}: no multiscales found"));
    let m = &ms[0];
    assert_eq!(m.version, ome["version"], "{case}");
    let axes: Vec<&str> = m.axes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(serde_json::json!(axes), ome["axes"], "{case}");
    let units: Vec<_> = m.axes.iter().map(|a| a.unit.clone()).collect();
    assert_eq!(serde_json::json!(units), ome["units"], "{case}");
    let paths: Vec<&str> = m.datasets.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(serde_json::json!(paths), ome["paths"], "{case}");
    let scales: Vec<&Vec<f64>> = m.datasets.iter().map(|d| &d.scale).collect();
    assert_eq!(serde_json::json!(scales), ome["scales"], "{case}");
    let translations: Vec<_> = m.datasets.iter().map(|d| d.translation.clone()).collect();
    assert_eq!(
        serde_json::json!(translations),
        ome["translations"],
        "{case}"
    );

    // Written into attributes without them, the multiscales read back the same.
    let mut fresh = Map::new();
    Multiscale::write_attributes(&ms, &mut fresh);
    assert_eq!(
        Multiscale::from_attributes(&url, &fresh).unwrap(),
        Some(ms),
        "{case}"
    );
}

#[test]
fn peer_written_metadata_parses_as_the_peer_reports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/zarr_metadata");
    if !root.exists() {
        // The published crate leaves the fixtures out (Cargo.toml `exclude`).
        eprintln!(
            "skipped: {} is not in this copy of the crate",
            root.display()
        );
        return;
    }
    let mut cases = 0;
    for entry in fs::read_dir(&root).expect("tests/data/zarr_metadata") {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        let expected: Value =
            serde_json::from_slice(&fs::read(dir.join("expected.json")).unwrap()).unwrap();
        match expected["node"].as_str() {
            Some("array") => check_array(&case, &dir, &expected),
            Some("group") => check_group(&case, &dir, &expected),
            other => panic!("{case}: node {other:?}"),
        }
        cases += 1;
    }
    assert!(
        cases >= 80,
        "only {cases} cases: regenerate with generate.py"
    );
}
