//! `transpose`: the array-to-array codec that stores the chunk with its axes permuted
//! (`order`: the stored array's axis `i` is the chunk's axis `order[i]`, NumPy's
//! `transpose`). Consecutive transposes compose into one permutation, applied by a tiled
//! copy (see `nd::permute`).

use serde_json::Value;

use super::{config, CodecSpec};
use crate::error::Result;

/// The `transpose` codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transpose {
    pub(super) order: Vec<usize>,
}

impl Transpose {
    /// Parses `order` for a chunk of rank `rank`: a permutation of `0..rank` (or zarr-python
    /// 2's "C" and "F", the identity and the reversal).
    pub(super) fn parse(spec: &CodecSpec, rank: usize) -> Result<Self> {
        let v = spec
            .configuration
            .get("order")
            .ok_or_else(|| config::bad(spec, "order", "is required"))?;
        let order: Vec<usize> = match v {
            Value::String(s) if s == "C" => (0..rank).collect(),
            Value::String(s) if s == "F" => (0..rank).rev().collect(),
            Value::Array(a) => a
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| config::bad(spec, "order", format!("{v} is not a list of axes")))?,
            _ => return Err(config::bad(spec, "order", format!("is {v}, not a list"))),
        };
        let mut seen = vec![false; rank];
        let ok = order.len() == rank
            && order
                .iter()
                .all(|&d| d < rank && !std::mem::replace(&mut seen[d], true));
        if !ok {
            return Err(config::bad(
                spec,
                "order",
                format!("{v} is not a permutation of the chunk's {rank} axes"),
            ));
        }
        Ok(Transpose { order })
    }

    pub(super) fn spec(&self) -> CodecSpec {
        CodecSpec::new("transpose", [("order", Value::from(self.order.clone()))])
    }
}

/// The permutation `p` that undoes `order` (`p[order[i]] = i`).
pub(super) fn inverse(order: &[usize]) -> Vec<usize> {
    let mut p = vec![0; order.len()];
    for (i, &o) in order.iter().enumerate() {
        p[o] = i;
    }
    p
}
