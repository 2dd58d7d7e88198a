//! OME-Zarr (OME-NGFF) multiscale images: the `multiscales` metadata of an image group, in the
//! layout of NGFF 0.4 (Zarr v2: `attributes["multiscales"]`, a version in each entry) and 0.5
//! (Zarr v3: `attributes["ome"]["multiscales"]`, the version in `attributes["ome"]`).
//!
//! Scales and translations are physical and kept exactly as written: ome-zarr-py puts
//! half-voxel translations on coarser levels (pixel centres), which must survive a round trip.

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// One OME-NGFF multiscale image: its axes and its levels, finest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Multiscale {
    /// The NGFF version (`"0.4"`, `"0.5"`); decides the layout `write_attributes` uses.
    pub version: String,
    /// The image's name.
    pub name: Option<String>,
    /// The axes, slowest first (t, c, z, y, x order in valid NGFF).
    pub axes: Vec<Axis>,
    /// The levels, finest first.
    pub datasets: Vec<MultiscaleDataset>,
    /// `type`: how the levels were downsampled (`"gaussian"`, `"local_mean"`, ...).
    pub kind: Option<String>,
    /// `metadata`: free-form details of the downsampling.
    pub metadata: Option<Value>,
    /// The multiscale-level `coordinateTransformations`' scale, applied after each
    /// dataset's own transformations.
    pub scale: Option<Vec<f64>>,
    /// The multiscale-level translation (only with a multiscale-level scale).
    pub translation: Option<Vec<f64>>,
}

/// One axis of a multiscale image.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// `name`: `"x"`, `"c"`, ...
    pub name: String,
    /// `type`: `"space"`, `"time"`, `"channel"` or another.
    pub kind: Option<String>,
    /// `unit`: `"micrometer"`, `"second"`, ...
    pub unit: Option<String>,
}

/// One level of a multiscale image.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiscaleDataset {
    /// The array's path, relative to the image group.
    pub path: String,
    /// The physical size of one voxel along each axis.
    pub scale: Vec<f64>,
    /// The physical position of voxel 0 along each axis, where given.
    pub translation: Option<Vec<f64>>,
}

/// Errors name the field inside the group's attributes (`ome.multiscales[0].axes`).
fn bad(url: &str, field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::metadata(url, "attributes", field, reason)
}

/// Whether `version` uses the 0.4 layout (`multiscales` at the top of the attributes).
/// (also for pre-releases such as `"0.4-dev"`). Versions from 0.5 on use `ome`.
fn legacy_layout(version: &str) -> bool {
    ["0.1", "0.2", "0.3", "0.4"].iter().any(|v| {
        version
            .strip_prefix(v)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '-']))
    })
}

impl Multiscale {
    /// The multiscales in a group's attributes: `None` when there are none, an error naming
    /// the field when they are malformed.
    pub fn from_attributes(
        url: &str,
        attributes: &Map<String, Value>,
    ) -> Result<Option<Vec<Multiscale>>> {
        if let Some(ome) = attributes.get("ome").and_then(Value::as_object) {
            if let Some(list) = ome.get("multiscales") {
                let version = ome
                    .get("version")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(url, "ome.version", "missing or not a string"))?;
                return parse_list(url, "ome.multiscales", list, Some(version)).map(Some);
            }
        }
        match attributes.get("multiscales") {
            None => Ok(None),
            Some(list) => parse_list(url, "multiscales", list, None).map(Some),
        }
    }

    /// Writes (or replaces) the multiscales into group attributes, in the layout of `version`
    /// (of the first multiscale): 0.4 and older as `multiscales` with a version in each entry,
    /// 0.5 and newer under `ome` (whose other keys, such as `omero`, are kept). The other
    /// layout's multiscales are removed, so the attributes never hold two that disagree.
    pub fn write_attributes(multiscales: &[Multiscale], attributes: &mut Map<String, Value>) {
        let legacy = multiscales
            .first()
            .is_none_or(|m| legacy_layout(&m.version));
        let list: Vec<Value> = multiscales.iter().map(|m| m.to_json(legacy)).collect();
        if legacy {
            if let Some(Value::Object(ome)) = attributes.get_mut("ome") {
                ome.remove("multiscales");
            }
            attributes.insert("multiscales".into(), Value::Array(list));
        } else {
            attributes.remove("multiscales");
            let ome = attributes
                .entry("ome")
                .or_insert_with(|| Value::Object(Map::new()));
            if !ome.is_object() {
                *ome = Value::Object(Map::new());
            }
            if let Value::Object(ome) = ome {
                ome.insert("version".into(), json!(multiscales[0].version));
                ome.insert("multiscales".into(), Value::Array(list));
            }
        }
    }

    fn to_json(&self, with_version: bool) -> Value {
        let mut obj = Map::new();
        if with_version {
            obj.insert("version".into(), json!(self.version));
        }
        if let Some(name) = &self.name {
            obj.insert("name".into(), json!(name));
        }
        let axes = self.axes.iter().map(|a| {
            let mut axis = Map::new();
            axis.insert("name".into(), json!(a.name));
            if let Some(kind) = &a.kind {
                axis.insert("type".into(), json!(kind));
            }
            if let Some(unit) = &a.unit {
                axis.insert("unit".into(), json!(unit));
            }
            Value::Object(axis)
        });
        obj.insert("axes".into(), Value::Array(axes.collect()));
        let datasets = self.datasets.iter().map(|d| {
            json!({
                "path": d.path,
                "coordinateTransformations": transforms_json(&d.scale, d.translation.as_deref()),
            })
        });
        obj.insert("datasets".into(), Value::Array(datasets.collect()));
        if let Some(scale) = &self.scale {
            obj.insert(
                "coordinateTransformations".into(),
                transforms_json(scale, self.translation.as_deref()),
            );
        }
        if let Some(kind) = &self.kind {
            obj.insert("type".into(), json!(kind));
        }
        if let Some(metadata) = &self.metadata {
            obj.insert("metadata".into(), metadata.clone());
        }
        Value::Object(obj)
    }
}

fn transforms_json(scale: &[f64], translation: Option<&[f64]>) -> Value {
    let mut list = vec![json!({"type": "scale", "scale": scale})];
    if let Some(t) = translation {
        list.push(json!({"type": "translation", "translation": t}));
    }
    Value::Array(list)
}

fn parse_list(
    url: &str,
    field: &str,
    list: &Value,
    version: Option<&str>,
) -> Result<Vec<Multiscale>> {
    let list = list
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad(url, field, "not a non-empty list"))?;
    list.iter()
        .enumerate()
        .map(|(i, m)| parse_one(url, &format!("{field}[{i}]"), m, version))
        .collect()
}

fn opt_string(
    url: &str,
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(url, format!("{field}.{key}"), "not a string")),
    }
}

fn parse_one(url: &str, field: &str, value: &Value, version: Option<&str>) -> Result<Multiscale> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad(url, field, "not an object"))?;
    let version = match version {
        Some(v) => v.to_string(),
        // ome-zarr-py and neuroglancer read 0.4 entries that leave the version out.
        None => opt_string(url, obj, "version", field)?.unwrap_or_else(|| "0.4".into()),
    };
    let axes_field = format!("{field}.axes");
    let axes = obj
        .get("axes")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad(url, &axes_field, "not a non-empty list"))?;
    let axes = axes
        .iter()
        .enumerate()
        .map(|(i, a)| parse_axis(url, &format!("{axes_field}[{i}]"), a))
        .collect::<Result<Vec<_>>>()?;
    for (i, a) in axes.iter().enumerate() {
        if axes[..i].iter().any(|b| b.name == a.name) {
            return Err(bad(
                url,
                &axes_field,
                format!("the axis name {:?} is repeated", a.name),
            ));
        }
    }
    let rank = axes.len();
    let datasets_field = format!("{field}.datasets");
    let datasets = obj
        .get("datasets")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| bad(url, &datasets_field, "not a non-empty list"))?;
    let datasets = datasets
        .iter()
        .enumerate()
        .map(|(i, d)| parse_dataset(url, &format!("{datasets_field}[{i}]"), d, rank))
        .collect::<Result<Vec<_>>>()?;
    let (scale, translation) = match obj.get("coordinateTransformations") {
        None | Some(Value::Null) => (None, None),
        Some(t) => {
            let (s, t) =
                parse_transforms(url, &format!("{field}.coordinateTransformations"), t, rank)?;
            (Some(s), t)
        }
    };
    Ok(Multiscale {
        version,
        name: opt_string(url, obj, "name", field)?,
        axes,
        datasets,
        kind: opt_string(url, obj, "type", field)?,
        metadata: obj.get("metadata").cloned(),
        scale,
        translation,
    })
}

fn parse_axis(url: &str, field: &str, value: &Value) -> Result<Axis> {
    let (name, kind, unit) = match value {
        // NGFF 0.3 lists axes by name only.
        Value::String(name) => (name.clone(), None, None),
        Value::Object(obj) => (
            obj.get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(url, format!("{field}.name"), "missing or not a string"))?
                .to_string(),
            opt_string(url, obj, "type", field)?,
            opt_string(url, obj, "unit", field)?,
        ),
        _ => return Err(bad(url, field, "not an axis object")),
    };
    if name.is_empty() {
        return Err(bad(url, format!("{field}.name"), "empty"));
    }
    Ok(Axis { name, kind, unit })
}

fn parse_dataset(url: &str, field: &str, value: &Value, rank: usize) -> Result<MultiscaleDataset> {
    let obj = value
        .as_object()
        .ok_or_else(|| bad(url, field, "not an object"))?;
    let path = obj
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            bad(
                url,
                format!("{field}.path"),
                "missing or not a non-empty string",
            )
        })?
        .to_string();
    let (scale, translation) = match obj.get("coordinateTransformations") {
        // Before NGFF 0.4 levels carried no transformations: unit voxels.
        None => (vec![1.0; rank], None),
        Some(t) => parse_transforms(url, &format!("{field}.coordinateTransformations"), t, rank)?,
    };
    Ok(MultiscaleDataset {
        path,
        scale,
        translation,
    })
}

/// A `coordinateTransformations` list: one `scale`, then at most one `translation`.
fn parse_transforms(
    url: &str,
    field: &str,
    value: &Value,
    rank: usize,
) -> Result<(Vec<f64>, Option<Vec<f64>>)> {
    let list = value
        .as_array()
        .ok_or_else(|| bad(url, field, "not a list"))?;
    let vector = |i: usize, t: &Map<String, Value>, key: &str| -> Result<Vec<f64>> {
        let f = format!("{field}[{i}].{key}");
        let Some(v) = t.get(key) else {
            let reason = if t.contains_key("path") {
                "given as a path to a file, which is not supported"
            } else {
                "missing"
            };
            return Err(Error::invalid(format!(
                "{url}: attributes field '{f}': {reason}"
            )));
        };
        let v: Vec<f64> = v
            .as_array()
            .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<_>>())
            .filter(|v: &Vec<f64>| v.iter().all(|x| x.is_finite()))
            .ok_or_else(|| bad(url, &f, "not a list of finite numbers"))?;
        if v.len() != rank {
            return Err(bad(url, &f, format!("{} values for {rank} axes", v.len())));
        }
        Ok(v)
    };
    let mut scale = None;
    let mut translation = None;
    for (i, t) in list.iter().enumerate() {
        let t = t
            .as_object()
            .ok_or_else(|| bad(url, format!("{field}[{i}]"), "not an object"))?;
        match t.get("type").and_then(Value::as_str) {
            Some("scale") if scale.is_none() && i == 0 => scale = Some(vector(i, t, "scale")?),
            Some("translation") if translation.is_none() && i == 1 => {
                translation = Some(vector(i, t, "translation")?)
            }
            Some("identity") if list.len() == 1 => scale = Some(vec![1.0; rank]),
            other => {
                return Err(bad(
                    url,
                    format!("{field}[{i}].type"),
                    format!("{other:?}: expected one \"scale\", then at most one \"translation\""),
                ))
            }
        }
    }
    let scale = scale.ok_or_else(|| bad(url, field, "no \"scale\" transformation"))?;
    Ok((scale, translation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn v04() -> Value {
        json!({"multiscales": [{
            "version": "0.4", "name": "img",
            "axes": [{"name": "c", "type": "channel"}, {"name": "z", "type": "space", "unit": "micrometer"},
                     {"name": "y", "type": "space", "unit": "micrometer"}, {"name": "x", "type": "space", "unit": "micrometer"}],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5, 0.25, 0.25]}]},
                {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0, 0.5, 0.5]},
                                                            {"type": "translation", "translation": [0.0, 0.25, 0.125, 0.125]}]}],
            "coordinateTransformations": [{"type": "scale", "scale": [1.0, 2.0, 1.0, 1.0]}],
            "type": "gaussian", "metadata": {"method": "skimage.transform.pyramid_gaussian"}
        }], "other": 1})
    }

    #[test]
    fn reads_and_writes_both_layouts() {
        let a = attrs(v04());
        let ms = Multiscale::from_attributes("mem://img", &a)
            .unwrap()
            .unwrap();
        assert_eq!(ms.len(), 1);
        let m = &ms[0];
        assert_eq!(m.version, "0.4");
        assert_eq!(m.name.as_deref(), Some("img"));
        assert_eq!(m.axes[1].unit.as_deref(), Some("micrometer"));
        assert_eq!(m.axes[0].kind.as_deref(), Some("channel"));
        assert_eq!(
            m.datasets[1].translation,
            Some(vec![0.0, 0.25, 0.125, 0.125])
        );
        assert_eq!(m.scale, Some(vec![1.0, 2.0, 1.0, 1.0]));
        assert_eq!(m.kind.as_deref(), Some("gaussian"));

        // 0.4 round trip: the attributes come back as they were.
        let mut out = attrs(json!({"other": 1}));
        Multiscale::write_attributes(&ms, &mut out);
        assert_eq!(Value::Object(out.clone()), v04());

        // 0.5: under "ome", keeping its other keys, and no top-level copy left behind.
        let mut m5 = ms.clone();
        m5[0].version = "0.5".into();
        out.insert("ome".into(), json!({"omero": {"channels": []}}));
        Multiscale::write_attributes(&m5, &mut out);
        assert!(!out.contains_key("multiscales"));
        assert_eq!(out["ome"]["version"], json!("0.5"));
        assert_eq!(out["ome"]["omero"], json!({"channels": []}));
        assert!(out["ome"]["multiscales"][0].get("version").is_none());
        let back = Multiscale::from_attributes("mem://img", &out)
            .unwrap()
            .unwrap();
        assert_eq!(back, m5);
        // And back to 0.4.
        Multiscale::write_attributes(&ms, &mut out);
        assert!(out["ome"].get("multiscales").is_none());
        assert_eq!(
            Multiscale::from_attributes("mem://img", &out)
                .unwrap()
                .unwrap(),
            ms
        );

        assert!(
            Multiscale::from_attributes("mem://img", &attrs(json!({"a": 1})))
                .unwrap()
                .is_none()
        );
        assert!(legacy_layout("0.4") && legacy_layout("0.3") && legacy_layout("0.4-dev"));
        assert!(!legacy_layout("0.5") && !legacy_layout("0.40") && !legacy_layout("0.5-dev"));
    }

    #[test]
    fn older_forms_are_read() {
        let a = attrs(json!({"multiscales": [{"axes": ["y", "x"], "datasets": [{"path": "0"}]}]}));
        let m = &Multiscale::from_attributes("u", &a).unwrap().unwrap()[0];
        assert_eq!(m.version, "0.4");
        assert_eq!(m.axes[1].name, "x");
        assert_eq!(m.datasets[0].scale, [1.0, 1.0]);
    }

    #[test]
    fn malformed_multiscales_name_the_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/multiscales", json!([]), "multiscales"),
            ("/multiscales/0/axes", json!([]), "multiscales[0].axes"),
            (
                "/multiscales/0/axes/1",
                json!({"type": "space"}),
                "multiscales[0].axes[1].name",
            ),
            ("/multiscales/0/axes/1/name", json!("x"), "repeated"),
            (
                "/multiscales/0/datasets",
                json!({}),
                "multiscales[0].datasets",
            ),
            (
                "/multiscales/0/datasets/0/path",
                json!(""),
                "datasets[0].path",
            ),
            (
                "/multiscales/0/datasets/0/coordinateTransformations/0/scale",
                json!([1.0, 2.0]),
                "2 values for 4 axes",
            ),
            (
                "/multiscales/0/datasets/0/coordinateTransformations/0/scale",
                json!([1.0, "a", 1.0, 1.0]),
                "datasets[0].coordinateTransformations[0].scale",
            ),
            (
                "/multiscales/0/datasets/1/coordinateTransformations/0/type",
                json!("translation"),
                "datasets[1].coordinateTransformations[0].type",
            ),
            ("/multiscales/0/name", json!(5), "multiscales[0].name"),
            (
                "/multiscales/0/coordinateTransformations",
                json!([]),
                "no \"scale\"",
            ),
        ];
        for (path, value, named) in cases {
            let mut doc = v04();
            *doc.pointer_mut(path).unwrap() = value;
            let e = Multiscale::from_attributes("mem://img", &attrs(doc)).unwrap_err();
            assert!(e.to_string().contains(named), "{path}: {e}");
            assert!(e.to_string().contains("mem://img"), "{e}");
        }
        let mut doc = v04();
        *doc.pointer_mut("/multiscales/0/datasets/0/coordinateTransformations/0")
            .unwrap() = json!({"type": "scale", "path": "scale.bin"});
        let e = Multiscale::from_attributes("u", &attrs(doc)).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
        let no_version = attrs(json!({"ome": {"multiscales": []}}));
        let e = Multiscale::from_attributes("u", &no_version).unwrap_err();
        assert!(e.to_string().contains("ome.version"), "{e}");
    }
}
