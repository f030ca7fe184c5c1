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
}

impl KeyCodec for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self> {
        String::from_utf8(decode_bytes(input)?)
            .map_err(|e| Error::KeyDecode(format!("string key is not UTF-8: {e}")))
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
        fn tuples_roundtrip_and_order(a in (any::<i64>(), ".{0,8}"), b in (any::<i64>(), ".{0,8}")) {
            let (a, b) = ((a.0, a.1.to_string()), (b.0, b.1.to_string()));
            roundtrip(&a);
            prop_assert_eq!(a.cmp(&b), a.to_key_bytes().cmp(&b.to_key_bytes()));
        }
    }
}
