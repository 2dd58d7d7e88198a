//! Voxel data types: their names in `info`, their sizes, and the typed-element trait that
//! Rust callers use for `read::<T>` / `write::<T>`.

use std::fmt;

/// A voxel data type. Values are stored little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `bool`: one byte per voxel.
    Bool,
    /// `uint8`.
    U8,
    /// `int8`.
    I8,
    /// `uint16`.
    U16,
    /// `int16`.
    I16,
    /// `uint32`.
    U32,
    /// `int32`.
    I32,
    /// `uint64`.
    U64,
    /// `int64`.
    I64,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
    /// `float16` (IEEE half precision; Zarr only, Precomputed has none).
    F16,
    /// `complex64`: two `float32`, real part first (Zarr only).
    C64,
    /// `complex128`: two `float64`, real part first (Zarr only).
    C128,
}

impl DType {
    /// Every supported type, for error messages and tests.
    pub const ALL: [DType; 14] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::U16,
        DType::I16,
        DType::U32,
        DType::I32,
        DType::U64,
        DType::I64,
        DType::F32,
        DType::F64,
        DType::F16,
        DType::C64,
        DType::C128,
    ];

    /// The types a Precomputed `info` may name (neuroglancer's, plus `bool` and `float64`
    /// that CloudVolume writes): every type but the Zarr-only ones at the end of `ALL`.
    pub const PRECOMPUTED: &'static [DType] = DType::ALL.split_at(11).0;

    /// The `data_type` spelling in `info` (also NumPy's name).
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::U16 => "uint16",
            DType::I16 => "int16",
            DType::U32 => "uint32",
            DType::I32 => "int32",
            DType::U64 => "uint64",
            DType::I64 => "int64",
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::C64 => "complex64",
            DType::C128 => "complex128",
        }
    }

    /// Bytes of one scalar component: the item size, or half of it for complex types (byte
    /// order applies per component).
    pub fn component_size(self) -> usize {
        match self {
            DType::C64 | DType::C128 => self.itemsize() / 2,
            _ => self.itemsize(),
        }
    }

    /// Bytes per voxel per channel.
    pub fn itemsize(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::U16 | DType::I16 | DType::F16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 | DType::C64 => 8,
            DType::C128 => 16,
        }
    }

    /// Parses a `data_type` name, case-insensitively as neuroglancer does.
    pub fn parse(name: &str) -> Option<DType> {
        let lower = name.to_ascii_lowercase();
        DType::ALL.into_iter().find(|d| d.name() == lower)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Rust element type that matches one [`DType`] bit for bit.
pub trait Element: bytemuck::Pod + Default + Send + Sync {
    /// The layer data type this element reads and writes.
    const DTYPE: DType;
}

macro_rules! element {
    ($($t:ty => $d:ident),* $(,)?) => {
        $(impl Element for $t { const DTYPE: DType = DType::$d; })*
    };
}

element!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
         u64 => U64, i64 => I64, f32 => F32, f64 => F64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()), Some(d));
            assert_eq!(DType::parse(&d.name().to_uppercase()), Some(d));
        }
        assert_eq!(DType::parse("complex256"), None);
    }
}
