//! How arguments and results cross the worker pipe: serde with postcard (compact, maintained,
//! not self-describing), plus a bulk path for byte and number vectors.
//!
//! serde hands a `Vec<u8>` or `Vec<f64>` to the serializer one element at a time; `#[unsync]`
//! wraps arguments and results whose type is written `Vec<u8>`, `Vec<f64>`, `Vec<i32>`, ... in
//! [`Bulk`], which sends them as one block of bytes (1 MiB: tens of µs instead of ms). Inside
//! your own types, use `#[serde(with = "serde_bytes")]` for the same effect.
//!
//! Postcard is not self-describing: `#[serde(flatten)]`, `#[serde(untagged)]` and
//! `serde_json::Value` do not round-trip. Wrap such values in a `String` of JSON.

use serde::de::{DeserializeOwned, Deserializer, Error as _, Visitor};
use serde::ser::{Serialize, Serializer};

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CodecError {
    message: String,
    decoding: bool,
}

impl CodecError {
    fn encoding(message: impl std::fmt::Display) -> CodecError {
        CodecError {
            message: message.to_string(),
            decoding: false,
        }
    }

    fn decoding(message: impl std::fmt::Display) -> CodecError {
        CodecError {
            message: message.to_string(),
            decoding: true,
        }
    }

    /// A streaming function asked for one result (only a confused peer does).
    pub(crate) fn not_a_call() -> CodecError {
        CodecError::decoding("a streaming function was called for one result")
    }

    /// Whether [`decode`] failed (rather than [`encode`]).
    pub(crate) fn is_decoding(&self) -> bool {
        self.decoding
    }
}

/// Append `value`'s encoding to `out`.
pub fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let buffer = std::mem::take(out);
    *out = postcard::to_extend(value, buffer).map_err(CodecError::encoding)?;
    Ok(())
}

/// Decode a value that must use all of `bytes`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes).map_err(CodecError::decoding)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(CodecError::decoding(format_args!(
            "{} bytes left over after decoding",
            rest.len()
        )))
    }
}

/// A byte or number vector sent as one block instead of element by element.
///
/// ```
/// # use unsync::__private::{Bulk, decode, encode};
/// let mut wire = Vec::new();
/// encode(&Bulk(&vec![1.5_f64, -2.0]), &mut wire).unwrap();
/// let back: Bulk<Vec<f64>> = decode(&wire).unwrap();
/// assert_eq!(back.0, [1.5, -2.0]);
/// ```
#[derive(Debug, PartialEq)]
pub struct Bulk<T>(pub T);

/// Element types with a fixed little-endian byte layout.
pub trait BulkElement: bytemuck::Pod + Send + 'static {}

macro_rules! bulk_elements {
    ($($t:ty),*) => { $(impl BulkElement for $t {})* };
}
bulk_elements!(u8, i8, u16, i16, u32, i32, u64, i64, u128, i128, f32, f64);

impl<E: BulkElement> Serialize for Bulk<&Vec<E>> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_block(self.0, serializer)
    }
}

impl<E: BulkElement> Serialize for Bulk<Vec<E>> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_block(&self.0, serializer)
    }
}

fn serialize_block<E: BulkElement, S: Serializer>(
    values: &[E],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if cfg!(target_endian = "little") {
        serializer.serialize_bytes(bytemuck::cast_slice(values))
    } else {
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(values));
        for v in values {
            let mut le = bytemuck::bytes_of(v).to_vec();
            le.reverse();
            bytes.extend_from_slice(&le);
        }
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de, E: BulkElement> serde::Deserialize<'de> for Bulk<Vec<E>> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Block<E>(std::marker::PhantomData<E>);
        impl<E: BulkElement> Visitor<'_> for Block<E> {
            type Value = Vec<E>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a block of bytes")
            }
            fn visit_bytes<Err: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<E>, Err> {
                let size = std::mem::size_of::<E>();
                if bytes.len() % size != 0 {
                    return Err(Err::invalid_length(bytes.len(), &self));
                }
                if cfg!(target_endian = "little") {
                    Ok(bytemuck::pod_collect_to_vec(bytes))
                } else {
                    Ok(bytes
                        .chunks_exact(size)
                        .map(|chunk| {
                            let mut be = chunk.to_vec();
                            be.reverse();
                            bytemuck::pod_read_unaligned(&be)
                        })
                        .collect())
                }
            }
        }
        deserializer
            .deserialize_bytes(Block(std::marker::PhantomData))
            .map(Bulk)
            .map_err(|e: D::Error| D::Error::custom(e))
    }
}

impl<E> From<Bulk<Vec<E>>> for Vec<E> {
    fn from(bulk: Bulk<Vec<E>>) -> Vec<E> {
        bulk.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_is_one_block_and_round_trips() {
        let values: Vec<u8> = (0..=255).collect();
        let mut bulk = Vec::new();
        encode(&Bulk(&values), &mut bulk).unwrap();
        assert_eq!(bulk.len(), 2 + 256, "varint length + raw bytes");
        let back: Bulk<Vec<u8>> = decode(&bulk).unwrap();
        assert_eq!(back.0, values);

        let floats = vec![0.1_f64, f64::MAX, -0.0, f64::NAN];
        let mut wire = Vec::new();
        encode(&(7_u32, Bulk(&floats)), &mut wire).unwrap();
        let (n, back): (u32, Bulk<Vec<f64>>) = decode(&wire).unwrap();
        assert_eq!(n, 7);
        assert_eq!(back.0.len(), 4);
        assert_eq!(back.0[..3], floats[..3]);
        assert!(back.0[3].is_nan());
    }

    #[test]
    fn ragged_blocks_and_leftovers_are_errors() {
        let mut wire = Vec::new();
        encode(&Bulk(&vec![1_u8, 2, 3]), &mut wire).unwrap();
        assert!(decode::<Bulk<Vec<u16>>>(&wire).is_err());
        wire.push(0);
        assert!(decode::<Bulk<Vec<u8>>>(&wire).is_err());
    }
}
