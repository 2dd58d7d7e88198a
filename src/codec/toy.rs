//! A toy encoding (test only, not a product feature): the whole of what a new encoding
//! takes, to show the seam. Each voxel byte is XORed with the `toy_key` option, after a
//! one-byte header holding the key. A real codec would be this file plus
//! `&toy::Kind,` in [`super::registry::REGISTRY`]; the test below appends it to a copy of
//! the registry instead, so that the product never lists it.

use std::borrow::Cow;

use super::registry::{self, int_option};
use super::{ChunkLayout, Codec, CodecKind, Compression, DecodeError, FieldError, ScaleJson};
use crate::dtype::DType;
use crate::error::Result;

/// The registry entry.
pub struct Kind;

impl CodecKind for Kind {
    fn names(&self) -> &'static [&'static str] {
        &["toy"]
    }
    fn option_keys(&self) -> &'static [&'static str] {
        &["toy_key"]
    }
    fn parse(&self, _: &'static str, scale: &ScaleJson) -> Result<Box<dyn Codec>, FieldError> {
        Ok(Box::new(Toy {
            key: int_option(scale, "toy_key", 255, 0x5a)?,
        }))
    }
}

/// The toy codec with its option.
#[derive(Debug)]
pub struct Toy {
    key: u8,
}

/// Why a stored toy chunk is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ToyDecodeError {
    #[error("toy chunk of {got} bytes, the chunk needs {expected} plus a header")]
    Length { got: usize, expected: usize },
}

impl Codec for Toy {
    fn name(&self) -> &str {
        "toy"
    }
    fn options(&self) -> ScaleJson {
        ScaleJson::from_iter([("toy_key".into(), self.key.into())])
    }
    fn check(&self, dtype: DType, _: usize) -> Result<(), FieldError> {
        match dtype {
            DType::U8 => Ok(()),
            other => Err(FieldError::new(
                "data_type",
                format!("toy holds uint8 only, not {other}"),
            )),
        }
    }
    fn default_compression(&self) -> Compression {
        Compression::None
    }
    fn decode(
        &self,
        bytes: &[u8],
        layout: &ChunkLayout,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        let expected = layout.raw_len();
        let [key, body @ ..] = bytes else {
            return Err(Box::new(ToyDecodeError::Length { got: 0, expected }));
        };
        if body.len() != expected {
            let got = bytes.len();
            return Err(Box::new(ToyDecodeError::Length { got, expected }));
        }
        let voxels: Vec<u8> = body.iter().map(|b| b ^ key).collect();
        f(&voxels);
        Ok(())
    }
    fn encode<'a>(&self, voxels: &'a [u8], _: &ChunkLayout) -> Result<Cow<'a, [u8]>> {
        let mut out = vec![self.key];
        out.extend(voxels.iter().map(|b| b ^ self.key));
        Ok(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, CodecKind, REGISTRY};
    use crate::error::Error;

    #[test]
    fn a_new_encoding_is_one_file_plus_one_registry_line() {
        // The one registry line, on a copy of the registry.
        let with_toy: Vec<&dyn CodecKind> = REGISTRY.iter().copied().chain([&Kind as _]).collect();
        let scale = ScaleJson::from_iter([("toy_key".into(), 7.into())]);
        let toy = registry::parse_in(&with_toy, "TOY", &scale).unwrap();
        assert_eq!(toy.name(), "toy");
        assert_eq!(toy.codec().options(), scale);
        // Bad options name their key; the shipped registry does not know the toy.
        let bad = ScaleJson::from_iter([("toy_key".into(), "x".into())]);
        assert_eq!(
            registry::parse_in(&with_toy, "toy", &bad)
                .unwrap_err()
                .field,
            "toy_key"
        );
        assert!(!registry::parse_in(REGISTRY, "toy", &scale)
            .unwrap()
            .codec()
            .supported());

        // The dispatch never names it: check, encode, decode, errors.
        let layout = ChunkLayout {
            shape: [4, 3, 2],
            channels: 2,
            dtype: DType::U8,
        };
        assert!(codec::check(&toy, DType::U8, 2).is_ok());
        assert_eq!(
            codec::check(&toy, DType::U16, 1).unwrap_err().0,
            "data_type"
        );
        let voxels: Vec<u8> = (0..layout.raw_len() as u8).collect();
        for compression in Compression::PROBE_ORDER {
            let stored =
                codec::encode(&toy, &voxels, &layout, compression, Default::default()).unwrap();
            let back = codec::decode_as(&toy, "k", &stored, compression, &layout, |v| v.to_vec());
            assert_eq!(back.unwrap(), voxels);
        }
        match codec::decode(&toy, "the/key", &[1, 2, 3], &layout, |_| ()) {
            Err(e @ Error::ChunkDecode { .. }) => {
                assert!(e.to_string().contains("the/key"), "{e}");
                let source = std::error::Error::source(&e).expect("the toy's error");
                assert!(source.downcast_ref::<ToyDecodeError>().is_some());
            }
            other => panic!("{other:?}"),
        }
    }
}
