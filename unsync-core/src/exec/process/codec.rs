//! How arguments and results cross the worker pipe: serde with postcard (compact, maintained,
//! not self-describing), plus a bulk path for byte and number vectors.
//!
//! serde hands a `Vec<u8>` or `Vec<f64>` to the serializer one element at a time; `#[unsync]`
//! wraps arguments and results whose type is written `Vec<u8>`, `Vec<f64>`, `Vec<i32>`, ... in
//! [`Bulk`], which sends them as one block of bytes (1 MiB: tens of µs instead of ms), and on
//! Linux a block of 64 KiB or more through shared memory (see `shared`). Inside your own types,
//! `#[serde(with = "unsync::bulk")]` ([`bulk`]) does the same for a field.
//!
//! Postcard is not self-describing: `#[serde(flatten)]`, `#[serde(untagged)]` and
//! `serde_json::Value` do not round-trip. Wrap such values in a `String` of JSON.

use std::marker::PhantomData;

use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, Error as _, SeqAccess, Unexpected,
    VariantAccess as _, Visitor,
};
use serde::ser::{Serialize, Serializer};

use super::shared;

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

/// Decode `T` in the parent, where the decoding thread must not unwind (the pool's I/O thread,
/// or a caller reading answers inside the pool): a panic in `T`'s `Deserialize` (user code)
/// becomes a decoding failure, its message said.
pub(crate) fn decode_in_parent<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match std::panic::catch_unwind(|| decode::<T>(bytes)) {
        Ok(decoded) => decoded.map_err(|e| e.to_string()),
        Err(panic) => Err(format!(
            "its Deserialize panicked: {}",
            crate::error::panic_message(&*panic)
        )),
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

/// A block crosses as `Inline(bytes)`, or as `Shared(offset, len)` when it went into shared
/// memory (see `shared`).
const VARIANTS: &[&str] = &["Inline", "Shared"];

fn serialize_block<E: BulkElement, S: Serializer>(
    values: &[E],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let swapped;
    let bytes: &[u8] = if cfg!(target_endian = "little") {
        bytemuck::cast_slice(values)
    } else {
        swapped = values
            .iter()
            .flat_map(|v| bytemuck::bytes_of(v).iter().rev().copied())
            .collect::<Vec<u8>>();
        &swapped
    };
    if bytes.len() >= shared::MIN_BLOCK {
        if let Some(offset) = shared::put(bytes) {
            use serde::ser::SerializeTupleVariant;
            let mut shared = serializer.serialize_tuple_variant("Bulk", 1, "Shared", 2)?;
            shared.serialize_field(&offset)?;
            shared.serialize_field(&(bytes.len() as u64))?;
            return shared.end();
        }
    }
    serializer.serialize_newtype_variant("Bulk", 0, "Inline", &InlineBytes(bytes))
}

struct InlineBytes<'a>(&'a [u8]);

impl Serialize for InlineBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de, E: BulkElement> serde::Deserialize<'de> for Bulk<Vec<E>> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_enum("Bulk", VARIANTS, BlockVisitor(PhantomData))
            .map(Bulk)
    }
}

struct BlockVisitor<E>(PhantomData<E>);

impl<'de, E: BulkElement> Visitor<'de> for BlockVisitor<E> {
    type Value = Vec<E>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a block of numbers")
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Vec<E>, A::Error> {
        let (shared, variant): (bool, _) = data.variant_seed(VariantSeed)?;
        if shared {
            variant.tuple_variant(2, SharedVisitor(PhantomData))
        } else {
            variant.newtype_variant_seed(InlineSeed(PhantomData))
        }
    }
}

/// Which variant: `false` for `Inline`, `true` for `Shared`.
struct VariantSeed;

impl<'de> DeserializeSeed<'de> for VariantSeed {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl Visitor<'_> for VariantSeed {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("`Inline` or `Shared`")
    }
    fn visit_u64<Err: serde::de::Error>(self, index: u64) -> Result<bool, Err> {
        match index {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Err::invalid_value(Unexpected::Unsigned(index), &self)),
        }
    }
    fn visit_str<Err: serde::de::Error>(self, name: &str) -> Result<bool, Err> {
        match name {
            "Inline" => Ok(false),
            "Shared" => Ok(true),
            _ => Err(Err::unknown_variant(name, VARIANTS)),
        }
    }
}

struct InlineSeed<E>(PhantomData<E>);

impl<'de, E: BulkElement> DeserializeSeed<'de> for InlineSeed<E> {
    type Value = Vec<E>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<E>, D::Error> {
        deserializer.deserialize_bytes(self)
    }
}

impl<E: BulkElement> Visitor<'_> for InlineSeed<E> {
    type Value = Vec<E>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a block of bytes")
    }
    fn visit_bytes<Err: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<E>, Err> {
        let size = std::mem::size_of::<E>();
        if bytes.len() % size != 0 {
            return Err(Err::invalid_length(bytes.len(), &self));
        }
        Ok(from_le_bytes(bytes))
    }
}

struct SharedVisitor<E>(PhantomData<E>);

impl<'de, E: BulkElement> Visitor<'de> for SharedVisitor<E> {
    type Value = Vec<E>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a shared block's offset and length")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<E>, A::Error> {
        let missing = || A::Error::invalid_length(0, &self);
        let offset: u64 = seq.next_element()?.ok_or_else(missing)?;
        let len: u64 = seq.next_element()?.ok_or_else(missing)?;
        let values: Vec<E> = shared::take(offset, len).map_err(A::Error::custom)?;
        if cfg!(target_endian = "little") {
            Ok(values)
        } else {
            Ok(from_le_bytes(bytemuck::cast_slice(&values)))
        }
    }
}

/// `E`s from their little-endian bytes (a whole number of them).
fn from_le_bytes<E: BulkElement>(bytes: &[u8]) -> Vec<E> {
    if cfg!(target_endian = "little") {
        bytemuck::pod_collect_to_vec(bytes)
    } else {
        bytes
            .chunks_exact(std::mem::size_of::<E>())
            .map(|chunk| {
                let mut be = chunk.to_vec();
                be.reverse();
                bytemuck::pod_read_unaligned(&be)
            })
            .collect()
    }
}

/// `#[serde(with = "unsync::bulk")]` for a `Vec` of numbers (`u8`, `f64`, any primitive number)
/// inside your own types: it crosses to and from `cpu_bound` workers as one block, through
/// shared memory when large (see the crate docs, *Worker processes*), as a bare `Vec<u8>` or
/// `Vec<f64>` argument does.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Image {
///     width: u32,
///     #[serde(with = "unsync::bulk")]
///     pixels: Vec<u8>,
/// }
///
/// #[unsync::unsync(cpu_bound)]
/// fn brighten(image: Image) -> Image {
///     let pixels = image.pixels.iter().map(|p| p.saturating_add(10)).collect();
///     Image { pixels, ..image }
/// }
///
/// let image = brighten(Image { width: 2, pixels: vec![0, 250] }).result();
/// assert_eq!((image.width, image.pixels), (2, vec![10, 255]));
/// ```
///
/// With other serde formats (JSON, ...) the field reads and writes as `Inline` and its bytes.
pub mod bulk {
    use serde::{Deserializer, Serializer};

    use super::{BlockVisitor, BulkElement, VARIANTS, serialize_block};

    /// Serialize `values` as one block.
    pub fn serialize<E: BulkElement, S: Serializer>(
        values: &[E],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serialize_block(values, serializer)
    }

    /// Deserialize a block written by [`serialize`].
    pub fn deserialize<'de, E: BulkElement, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<E>, D::Error> {
        deserializer.deserialize_enum("Bulk", VARIANTS, BlockVisitor(std::marker::PhantomData))
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
        assert_eq!(bulk.len(), 3 + 256, "variant, varint length, raw bytes");
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
    fn the_bulk_field_attribute_writes_what_bulk_writes() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Image {
            width: u32,
            #[serde(with = "super::bulk")]
            pixels: Vec<u16>,
        }
        let pixels: Vec<u16> = (0..1000).collect();
        let (mut field, mut bulk) = (Vec::new(), Vec::new());
        encode(
            &Image {
                width: 3,
                pixels: pixels.clone(),
            },
            &mut field,
        )
        .unwrap();
        encode(&(3_u32, Bulk(&pixels)), &mut bulk).unwrap();
        assert_eq!(field, bulk);
        let back: Image = decode(&field).unwrap();
        assert_eq!((back.width, back.pixels), (3, pixels));
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
