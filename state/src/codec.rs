//! Order-preserving, self-delimiting key encoding.
//!
//! Every persistent key is built from these encodings, so two invariants
//! hold for all implementations and are checked by property tests:
//! 1. `decode(encode(x)) == x` and decoding consumes exactly what encoding
//!    wrote (encodings are self-delimiting, so they concatenate: tuples work);
//! 2. `a < b` implies `encode(a) < encode(b)` bytewise (range scans by key
//!    order are meaningful).
//!
//! Byte strings end in `0x00`; a `0x00` inside is written `0x00 0xFF`. Signed
//! integers are big-endian with the sign bit flipped; unsigned ones are plain
//! big-endian.

use crate::{Error, Result};

/// A type that can be a key of persistent state.
pub trait KeyCodec: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode_key(&self, out: &mut Vec<u8>);
    /// Decodes one value from the front of `input`, advancing it.
    fn decode_key(input: &mut &[u8]) -> Result<Self>;

    /// Convenience: the encoding in a fresh vector.
    fn to_key_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_key(&mut v);
        v
    }

    /// Appends the parts this type's encoding is made of, for tools that
    /// handle stored keys without the type (re-sharding a checkpoint), and
    /// returns whether it could. The default, for a type that does not say,
    /// is `false`: such keys cannot be re-sharded.
    fn shape(_out: &mut Vec<KeyPart>) -> bool {
        false
    }
}

/// One part of a key's encoding ([`KeyCodec::shape`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// An escaped, terminated byte string ([`encode_bytes`]).
    Bytes,
    /// An unsigned integer of this many bytes, big-endian.
    Unsigned(u8),
    /// A signed integer of this many bytes, big-endian with the sign bit
    /// flipped.
    Signed(u8),
}

/// The shape of a key type's encoding, written beside a partition's state
/// so that a checkpoint can be re-sharded without the job's code: the parts
/// in order, as `bytes`, `u<bits>` or `i<bits>` joined by commas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyShape(Vec<KeyPart>);

impl KeyShape {
    /// The shape of `K`, if it says.
    pub fn of<K: KeyCodec>() -> Option<Self> {
        let mut parts = Vec::new();
        (K::shape(&mut parts) && !parts.is_empty()).then_some(Self(parts))
    }

    /// Parses what [`Display`](std::fmt::Display) writes.
    pub fn parse(text: &str) -> Result<Self> {
        let part = |p: &str| -> Result<KeyPart> {
            let width = |bits: &str| -> Option<u8> {
                match bits.parse::<u8>().ok()? {
                    b @ (8 | 16 | 32 | 64) => Some(b / 8),
                    _ => None,
                }
            };
            let found = match p {
                "bytes" => Some(KeyPart::Bytes),
                _ => match p.split_at_checked(1) {
                    Some(("u", bits)) => width(bits).map(KeyPart::Unsigned),
                    Some(("i", bits)) => width(bits).map(KeyPart::Signed),
                    _ => None,
                },
            };
            found.ok_or_else(|| {
                Error::KeyDecode(format!("unknown key part {p:?} in key shape {text:?}"))
            })
        };
        let parts = text.split(',').map(part).collect::<Result<Vec<_>>>()?;
        Ok(Self(parts))
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[KeyPart] {
        &self.0
    }

    /// Splits one key's encoding off the front of `input`.
    pub fn split<'a>(&self, input: &mut &'a [u8]) -> Result<&'a [u8]> {
        let whole = *input;
        for part in &self.0 {
            match part {
                KeyPart::Bytes => {
                    decode_bytes(input)?;
                }
                KeyPart::Unsigned(n) | KeyPart::Signed(n) => {
                    let n = usize::from(*n);
                    if input.len() < n {
                        return Err(Error::KeyDecode(format!(
                            "expected {n} bytes, found {}",
                            input.len()
                        )));
                    }
                    *input = &input[n..];
                }
            }
        }
        Ok(&whole[..whole.len() - input.len()])
    }

    /// The bytes a one-part key is written as in a Kafka record's key (what
    /// `RecordKey` gives for strings, byte strings and integers), from its
    /// encoding: Kafka's partitioner hashes these.
    pub fn record_key(&self, encoded: &[u8]) -> Result<Vec<u8>> {
        let mut input = encoded;
        let bytes = match self.0.as_slice() {
            [KeyPart::Bytes] => decode_bytes(&mut input)?,
            [KeyPart::Unsigned(n)] => {
                let n = usize::from(*n);
                input
                    .get(..n)
                    .ok_or_else(|| Error::KeyDecode("key too short".into()))?
                    .to_vec()
            }
            [KeyPart::Signed(n)] => {
                let n = usize::from(*n);
                let mut raw = input
                    .get(..n)
                    .ok_or_else(|| Error::KeyDecode("key too short".into()))?
                    .to_vec();
                raw[0] ^= 0x80;
                raw
            }
            _ => {
                return Err(Error::KeyDecode(format!(
                    "a key of shape {self} has no one Kafka record key"
                )));
            }
        };
        Ok(bytes)
    }
}

impl std::fmt::Display for KeyShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match part {
                KeyPart::Bytes => f.write_str("bytes")?,
                KeyPart::Unsigned(n) => write!(f, "u{}", u32::from(*n) * 8)?,
                KeyPart::Signed(n) => write!(f, "i{}", u32::from(*n) * 8)?,
            }
        }
        Ok(())
    }
}

/// Appends an escaped, terminated byte string.
pub fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    let mut rest = bytes;
    while let Some(i) = rest.iter().position(|&b| b == 0) {
        out.extend_from_slice(&rest[..=i]);
        out.push(0xFF);
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
    out.push(0);
}

/// Decodes a byte string written by [`encode_bytes`].
pub fn decode_bytes(input: &mut &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    let s = *input;
    loop {
        match s.get(i) {
            None => return Err(Error::KeyDecode("unterminated byte string".into())),
            Some(0) => match s.get(i + 1) {
                Some(0xFF) => {
                    out.push(0);
                    i += 2;
                }
                _ => {
                    *input = &s[i + 1..];
                    return Ok(out);
                }
            },
            Some(&b) => {
                out.push(b);
                i += 1;
            }
        }
    }
}

impl KeyCodec for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self, out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self> {
        decode_bytes(input)
    }
    fn shape(out: &mut Vec<KeyPart>) -> bool {
        out.push(KeyPart::Bytes);
        true
    }
}

impl KeyCodec for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self> {
        String::from_utf8(decode_bytes(input)?)
            .map_err(|e| Error::KeyDecode(format!("string key is not UTF-8: {e}")))
    }
    fn shape(out: &mut Vec<KeyPart>) -> bool {
        out.push(KeyPart::Bytes);
        true
    }
}

fn take<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    if input.len() < N {
        return Err(Error::KeyDecode(format!(
            "expected {N} bytes, found {}",
            input.len()
        )));
    }
    let (head, tail) = input.split_at(N);
    *input = tail;
    Ok(head.try_into().expect("split_at gave exactly N bytes"))
}

macro_rules! unsigned_codec {
    ($($t:ty),*) => {$(
        impl KeyCodec for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8]) -> Result<Self> {
                Ok(<$t>::from_be_bytes(take(input)?))
            }
            fn shape(out: &mut Vec<KeyPart>) -> bool {
                out.push(KeyPart::Unsigned(std::mem::size_of::<$t>() as u8));
                true
            }
        }
    )*};
}
unsigned_codec!(u8, u16, u32, u64);

macro_rules! signed_codec {
    ($($t:ty => $u:ty),*) => {$(
        impl KeyCodec for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8]) -> Result<Self> {
                let raw = <$u>::from_be_bytes(take(input)?);
                Ok((raw ^ (1 << (<$u>::BITS - 1))) as $t)
            }
            fn shape(out: &mut Vec<KeyPart>) -> bool {
                out.push(KeyPart::Signed(std::mem::size_of::<$t>() as u8));
                true
            }
        }
    )*};
}
signed_codec!(i32 => u32, i64 => u64);

impl<A: KeyCodec, B: KeyCodec> KeyCodec for (A, B) {
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_key(out);
        self.1.encode_key(out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self> {
        Ok((A::decode_key(input)?, B::decode_key(input)?))
    }
    fn shape(out: &mut Vec<KeyPart>) -> bool {
        A::shape(out) && B::shape(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip<T: KeyCodec + PartialEq + std::fmt::Debug>(v: &T) {
        let mut bytes = v.to_key_bytes();
        bytes.extend_from_slice(b"trailing");
        let mut input = &bytes[..];
        let back = T::decode_key(&mut input).expect("decodes");
        assert_eq!(&back, v);
        assert_eq!(input, b"trailing", "decoding consumed exactly its bytes");
    }

    #[test]
    fn zero_bytes_are_escaped() {
        assert_eq!(vec![1u8, 0, 2].to_key_bytes(), vec![1, 0, 0xFF, 2, 0]);
        roundtrip(&vec![0u8, 0, 0xFF, 0]);
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert!(String::decode_key(&mut &b"abc"[..]).is_err());
        assert!(u64::decode_key(&mut &[1u8, 2][..]).is_err());
        assert!(String::decode_key(&mut &[0xC3u8, 0][..]).is_err());
    }

    proptest! {
        #[test]
        fn bytes_roundtrip_and_order(a in proptest::collection::vec(any::<u8>(), 0..40),
                                     b in proptest::collection::vec(any::<u8>(), 0..40)) {
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), a.to_key_bytes().cmp(&b.to_key_bytes()));
        }

        #[test]
        fn strings_roundtrip_and_order(a in ".{0,20}", b in ".{0,20}") {
            let (a, b) = (a.to_string(), b.to_string());
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), a.to_key_bytes().cmp(&b.to_key_bytes()));
        }

        #[test]
        fn integers_roundtrip_and_order(a in any::<i64>(), b in any::<i64>(), c in any::<u64>(), d in any::<u64>(),
                                         e in any::<i32>(), f in any::<i32>()) {
            roundtrip(&a);
            roundtrip(&c);
            roundtrip(&e);
            prop_assert_eq!(a.cmp(&b), a.to_key_bytes().cmp(&b.to_key_bytes()));
            prop_assert_eq!(c.cmp(&d), c.to_key_bytes().cmp(&d.to_key_bytes()));
            prop_assert_eq!(e.cmp(&f), e.to_key_bytes().cmp(&f.to_key_bytes()));
        }

        #[test]
        fn shapes_split_keys_without_their_type(a in (any::<i64>(), ".{0,8}"), b in any::<u32>(),
                                                c in proptest::collection::vec(any::<u8>(), 0..20),
                                                d in any::<i32>(), tail in ".{0,8}") {
            // A key's encoding followed by a timer name, as timer keys are.
            fn check<K: KeyCodec>(k: &K, tail: &str) -> std::result::Result<(), TestCaseError> {
                let shape = KeyShape::of::<K>().expect("has a shape");
                prop_assert_eq!(KeyShape::parse(&shape.to_string()).expect("parses"), shape.clone());
                let key = k.to_key_bytes();
                let mut bytes = key.clone();
                encode_bytes(tail.as_bytes(), &mut bytes);
                let mut input = &bytes[..];
                prop_assert_eq!(shape.split(&mut input).expect("splits"), &key[..]);
                prop_assert_eq!(decode_bytes(&mut input).expect("name"), tail.as_bytes().to_vec());
                Ok(())
            }
            check(&(a.0, a.1.to_string()), &tail)?;
            check(&b, &tail)?;
            check(&c, &tail)?;
            check(&d, &tail)?;
            // The record key: what RecordKey writes for these types.
            let s = a.1.to_string();
            prop_assert_eq!(KeyShape::of::<String>().expect("shape").record_key(&s.to_key_bytes()).expect("key"), s.as_bytes().to_vec());
            prop_assert_eq!(KeyShape::of::<u32>().expect("shape").record_key(&b.to_key_bytes()).expect("key"), b.to_be_bytes().to_vec());
            prop_assert_eq!(KeyShape::of::<i32>().expect("shape").record_key(&d.to_key_bytes()).expect("key"), d.to_be_bytes().to_vec());
            prop_assert_eq!(KeyShape::of::<i64>().expect("shape").record_key(&a.0.to_key_bytes()).expect("key"), a.0.to_be_bytes().to_vec());
            prop_assert!(KeyShape::of::<(i64, String)>().expect("shape").record_key(&(a.0, s).to_key_bytes()).is_err());
        }

        #[test]
        fn tuples_roundtrip_and_order(a in (any::<i64>(), ".{0,8}"), b in (any::<i64>(), ".{0,8}")) {
            let (a, b) = ((a.0, a.1.to_string()), (b.0, b.1.to_string()));
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), a.to_key_bytes().cmp(&b.to_key_bytes()));
        }
    }
}
