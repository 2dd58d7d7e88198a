//! Fill values: the JSON of v3 `fill_value` and v2 `fill_value`, held as one element's
//! little-endian bytes (complex: real part, then imaginary part).
//!
//! v3 writes numbers, `true`/`false`, `"NaN"`, `"Infinity"`, `"-Infinity"`, the raw bits of a
//! float as a hex string (`"0x7fc00001"`, which keeps NaN payloads), and complex values as
//! `[re, im]`. v2 writes the same but no hex strings, and `null` for "no fill value", which
//! zarr-python reads as zeros.

use half::f16;
use serde_json::{json, Number, Value};

use super::doc::Doc;
use crate::dtype::DType;
use crate::error::Result;

/// Which metadata version's spellings to accept or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V2,
    V3,
}

const FIELD: &str = "fill_value";

/// Parses `value` as a fill value of `dtype`: little-endian bytes, `dtype.itemsize()` long.
pub(crate) fn parse(doc: &Doc, dtype: DType, value: &Value, version: Version) -> Result<Vec<u8>> {
    if value.is_null() && version == Version::V2 {
        return Ok(vec![0; dtype.itemsize()]);
    }
    let bad = |reason: String| doc.bad(FIELD, format!("{value} for {dtype}: {reason}"));
    match dtype {
        DType::C64 | DType::C128 => {
            let parts = value
                .as_array()
                .filter(|a| a.len() == 2)
                .ok_or_else(|| bad("a complex fill value is a list [real, imaginary]".into()))?;
            let component = if dtype == DType::C64 {
                DType::F32
            } else {
                DType::F64
            };
            let mut bytes = parse_scalar(component, &parts[0], version).map_err(&bad)?;
            bytes.extend(parse_scalar(component, &parts[1], version).map_err(&bad)?);
            Ok(bytes)
        }
        _ => parse_scalar(dtype, value, version).map_err(bad),
    }
}

/// One real scalar; the error is the reason only (the caller names the field and value).
fn parse_scalar(dtype: DType, value: &Value, version: Version) -> Result<Vec<u8>, String> {
    match dtype {
        DType::Bool => match value {
            Value::Bool(b) => Ok(vec![u8::from(*b)]),
            // zarr-python 2 wrote 0 as the default fill value of boolean arrays.
            Value::Number(n)
                if version == Version::V2 && (n.as_u64() == Some(0) || n.as_u64() == Some(1)) =>
            {
                Ok(vec![n.as_u64().unwrap_or(0) as u8])
            }
            _ => Err("not true or false".into()),
        },
        DType::F16 | DType::F32 | DType::F64 => parse_float(dtype, value, version),
        _ => parse_int(dtype, value, version),
    }
}

fn parse_int(dtype: DType, value: &Value, version: Version) -> Result<Vec<u8>, String> {
    let Value::Number(n) = value else {
        return Err("not an integer".into());
    };
    // v2 files written through NumPy can carry integral floats ("fill_value": 0.0).
    let as_float = || {
        n.as_f64()
            .filter(|f| version == Version::V2 && f.fract() == 0.0 && f.abs() < 2f64.powi(63))
            .map(|f| f as i128)
    };
    let v: i128 = match (n.as_i64(), n.as_u64()) {
        (Some(i), _) => i128::from(i),
        (None, Some(u)) => i128::from(u),
        _ => as_float().ok_or("not an integer")?,
    };
    let out_of_range = || format!("outside the range of {dtype}");
    macro_rules! le {
        ($t:ty) => {
            <$t>::try_from(v)
                .map(|x| x.to_le_bytes().to_vec())
                .map_err(|_| out_of_range())
        };
    }
    match dtype {
        DType::U8 => le!(u8),
        DType::I8 => le!(i8),
        DType::U16 => le!(u16),
        DType::I16 => le!(i16),
        DType::U32 => le!(u32),
        DType::I32 => le!(i32),
        DType::U64 => le!(u64),
        DType::I64 => le!(i64),
        _ => Err(format!("{dtype} is not an integer type")),
    }
}

fn parse_float(dtype: DType, value: &Value, version: Version) -> Result<Vec<u8>, String> {
    let size = dtype.itemsize();
    let f = match value {
        Value::Number(n) => {
            let f = n.as_f64().ok_or("not a number")?;
            let bytes = float_bytes(dtype, f);
            if float_value(dtype, &bytes).is_infinite() {
                return Err(format!("outside the range of {dtype}"));
            }
            return Ok(bytes);
        }
        Value::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            hex if hex.starts_with("0x") && version == Version::V3 => {
                let digits = &hex[2..];
                // from_str_radix alone would also take a sign ("0x+7fc0000").
                let hex_digits =
                    digits.len() == 2 * size && digits.bytes().all(|b| b.is_ascii_hexdigit());
                let bits = u64::from_str_radix(digits, 16)
                    .ok()
                    .filter(|_| hex_digits)
                    .ok_or_else(|| format!("not a hex string of {} digits", 2 * size))?;
                return Ok(bits.to_le_bytes()[..size].to_vec());
            }
            _ => return Err("not a number, \"NaN\", \"Infinity\" or \"-Infinity\"".into()),
        },
        _ => return Err("not a number".into()),
    };
    Ok(float_bytes(dtype, f))
}

/// The little-endian bytes of `f` as a float of `dtype`; NaN gets the canonical quiet NaN
/// that NumPy produces.
fn float_bytes(dtype: DType, f: f64) -> Vec<u8> {
    match dtype {
        DType::F16 => f16::from_f64(f).to_le_bytes().to_vec(),
        DType::F32 => (f as f32).to_le_bytes().to_vec(),
        _ => f.to_le_bytes().to_vec(),
    }
}

/// The value of one float of `dtype` (at most 8 little-endian bytes).
fn float_value(dtype: DType, bytes: &[u8]) -> f64 {
    match dtype {
        DType::F16 => f16::from_le_bytes([bytes[0], bytes[1]]).to_f64(),
        DType::F32 => f64::from(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        _ => {
            let mut b = [0; 8];
            b.copy_from_slice(&bytes[..8]);
            f64::from_le_bytes(b)
        }
    }
}

/// The bits of a float as a `u64` (little-endian bytes, up to 8).
fn bits(bytes: &[u8]) -> u64 {
    let mut b = [0; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

/// The JSON of a fill value, as zarr-python writes it for `version`. `bytes` must be
/// `dtype.itemsize()` long (callers hold parsed or checked fill values).
pub(crate) fn to_json(dtype: DType, bytes: &[u8], version: Version) -> Value {
    match dtype {
        DType::C64 => json!([
            scalar_json(DType::F32, &bytes[..4], version),
            scalar_json(DType::F32, &bytes[4..8], version)
        ]),
        DType::C128 => json!([
            scalar_json(DType::F64, &bytes[..8], version),
            scalar_json(DType::F64, &bytes[8..16], version)
        ]),
        _ => scalar_json(dtype, bytes, version),
    }
}

fn scalar_json(dtype: DType, bytes: &[u8], version: Version) -> Value {
    let signed = |n: i64| Value::from(n);
    match dtype {
        DType::Bool => Value::Bool(bytes[0] != 0),
        DType::U8 => Value::from(bytes[0]),
        DType::I8 => signed(i64::from(bytes[0] as i8)),
        DType::U16 => Value::from(u16::from_le_bytes([bytes[0], bytes[1]])),
        DType::I16 => signed(i64::from(i16::from_le_bytes([bytes[0], bytes[1]]))),
        DType::U32 => Value::from(bits(bytes) as u32),
        DType::I32 => signed(i64::from(bits(bytes) as u32 as i32)),
        DType::U64 => Value::from(bits(bytes)),
        DType::I64 => signed(bits(bytes) as i64),
        DType::F16 | DType::F32 | DType::F64 => {
            let f = float_value(dtype, bytes);
            if f.is_nan() {
                // The canonical NaN is "NaN"; other payloads survive only as v3 hex bits.
                let canonical = float_bytes(dtype, f64::NAN) == bytes;
                if canonical || version == Version::V2 {
                    json!("NaN")
                } else {
                    json!(format!(
                        "0x{:0width$x}",
                        bits(bytes),
                        width = 2 * bytes.len()
                    ))
                }
            } else if f.is_infinite() {
                json!(if f > 0.0 { "Infinity" } else { "-Infinity" })
            } else {
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
        }
        // Complex types are split into components by `to_json`.
        DType::C64 | DType::C128 => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    const DOC: Doc = Doc {
        url: "mem://a",
        file: "zarr.json",
    };

    fn v3(dtype: DType, value: Value) -> Result<Vec<u8>> {
        parse(&DOC, dtype, &value, Version::V3)
    }

    fn v2(dtype: DType, value: Value) -> Result<Vec<u8>> {
        parse(&DOC, dtype, &value, Version::V2)
    }

    #[test]
    fn special_floats_and_hex_bits() {
        assert_eq!(
            v3(DType::F32, json!("NaN")).unwrap(),
            0x7fc0_0000u32.to_le_bytes()
        );
        assert_eq!(
            v3(DType::F32, json!("0x7fc00001")).unwrap(),
            0x7fc0_0001u32.to_le_bytes()
        );
        assert_eq!(
            v3(DType::F16, json!("NaN")).unwrap(),
            0x7e00u16.to_le_bytes()
        );
        assert_eq!(
            v3(DType::F16, json!("0x3c00")).unwrap(),
            0x3c00u16.to_le_bytes()
        );
        assert_eq!(v3(DType::F16, json!(1.0)).unwrap(), 0x3c00u16.to_le_bytes());
        assert_eq!(
            v3(DType::F64, json!("-Infinity")).unwrap(),
            f64::NEG_INFINITY.to_le_bytes()
        );
        assert_eq!(
            v3(DType::F64, json!("0x7ff8000000000000")).unwrap(),
            f64::NAN.to_le_bytes()
        );
        assert_eq!(
            v2(DType::F32, json!("Infinity")).unwrap(),
            f32::INFINITY.to_le_bytes()
        );
        assert_eq!(
            v3(DType::F32, json!(-0.0)).unwrap(),
            (-0.0f32).to_le_bytes()
        );
        assert_eq!(v3(DType::F64, json!(7)).unwrap(), 7f64.to_le_bytes());
        for bad in [
            json!("0x7fc0"),
            json!("0x7fc0000g"),
            json!("nan"),
            json!(true),
            json!([1]),
        ] {
            assert!(matches!(v3(DType::F32, bad), Err(Error::Info { .. })));
        }
        // Hex bits are v3 only; a finite number too large for the type is refused.
        assert!(v2(DType::F32, json!("0x7fc00001")).is_err());
        let e = v3(DType::F16, json!(1e6)).unwrap_err();
        assert!(e.to_string().contains("fill_value"), "{e}");
        assert!(v3(DType::F32, json!(1e300)).is_err());
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(v3(DType::U8, json!(255)).unwrap(), [255]);
        assert_eq!(v3(DType::I8, json!(-128)).unwrap(), [0x80]);
        assert_eq!(
            v3(DType::U64, json!(u64::MAX)).unwrap(),
            u64::MAX.to_le_bytes()
        );
        assert_eq!(
            v3(DType::I64, json!(i64::MIN)).unwrap(),
            i64::MIN.to_le_bytes()
        );
        for (d, bad) in [
            (DType::U8, json!(256)),
            (DType::U8, json!(-1)),
            (DType::I16, json!(40000)),
            (DType::U32, json!(1.5)),
            (DType::I32, json!("NaN")),
            (DType::U16, json!(3.0)),
        ] {
            let e = v3(d, bad.clone()).unwrap_err();
            assert!(
                e.to_string().contains("fill_value") && e.to_string().contains(d.name()),
                "{bad}: {e}"
            );
        }
        assert_eq!(v2(DType::U16, json!(3.0)).unwrap(), 3u16.to_le_bytes());
        assert!(v2(DType::U16, json!(3.5)).is_err());
    }

    #[test]
    fn booleans_complex_and_null() {
        assert_eq!(v3(DType::Bool, json!(true)).unwrap(), [1]);
        assert!(v3(DType::Bool, json!(0)).is_err());
        assert_eq!(v2(DType::Bool, json!(0)).unwrap(), [0]);
        assert!(v2(DType::Bool, json!(2)).is_err());
        let c = v3(DType::C64, json!([1.0, "NaN"])).unwrap();
        assert_eq!(&c[..4], 1f32.to_le_bytes());
        assert_eq!(&c[4..], f32::NAN.to_le_bytes());
        assert!(v3(DType::C128, json!([1.0])).is_err());
        assert!(v3(DType::C128, json!(1.0)).is_err());
        assert_eq!(v2(DType::F64, Value::Null).unwrap(), [0; 8]);
        assert!(v3(DType::F64, Value::Null).is_err());
    }

    #[test]
    fn json_round_trips() {
        let cases = [
            (DType::F32, json!("NaN")),
            (DType::F32, json!("0x7fc00001")),
            (DType::F16, json!(-2.5)),
            (DType::F64, json!("Infinity")),
            (DType::F64, json!(0.1)),
            (DType::I64, json!(i64::MIN)),
            (DType::U64, json!(u64::MAX)),
            (DType::I8, json!(-3)),
            (DType::Bool, json!(false)),
            (DType::C128, json!([1.5, "-Infinity"])),
        ];
        for (d, value) in cases {
            let bytes = v3(d, value.clone()).unwrap();
            assert_eq!(bytes.len(), d.itemsize());
            assert_eq!(to_json(d, &bytes, Version::V3), value, "{d}");
        }
        let payload = v3(DType::F32, json!("0x7fc00001")).unwrap();
        assert_eq!(to_json(DType::F32, &payload, Version::V2), json!("NaN"));
    }
}
