//! Query-string decoding with the semantics of Go's `url.ParseQuery`, which Traefik uses.
//!
//! Pairs are separated by `&`; a pair containing `;` is dropped; key and value are split
//! at the first `=` (no `=` means an empty value); both are percent-decoded with `+` as a
//! space, and a pair with an invalid `%` escape is dropped. Nothing here allocates unless
//! a value containing `%` or `+` has to be handed to a regex.

use std::borrow::Cow;

/// The raw (still encoded) `(key, value)` pairs that Go would keep.
pub(crate) fn raw_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.contains(';'))
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Decoded bytes of a component, or `Err(())` at an invalid escape.
struct Decode<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for Decode<'_> {
    type Item = Result<u8, ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(match b {
            b'+' => Ok(b' '),
            b'%' => {
                let hex = |i: usize| self.bytes.get(i).and_then(|&c| (c as char).to_digit(16));
                match (hex(self.pos), hex(self.pos + 1)) {
                    (Some(hi), Some(lo)) => {
                        self.pos += 2;
                        // Two hex digits always fit in a byte.
                        Ok(u8::try_from(hi * 16 + lo).unwrap_or(u8::MAX))
                    }
                    _ => Err(()),
                }
            }
            b => Ok(b),
        })
    }
}

fn decode_iter(raw: &str) -> Decode<'_> {
    Decode {
        bytes: raw.as_bytes(),
        pos: 0,
    }
}

/// Whether `raw` is a valid encoded component that decodes to exactly `expected`.
pub(crate) fn decoded_eq(raw: &str, expected: &[u8]) -> bool {
    let mut want = expected.iter();
    for got in decode_iter(raw) {
        match (got, want.next()) {
            (Ok(g), Some(&w)) if g == w => {}
            _ => return false,
        }
    }
    want.next().is_none()
}

/// The decoded component, borrowed when there is nothing to decode; `None` if invalid.
pub(crate) fn decode(raw: &str) -> Option<Cow<'_, [u8]>> {
    if !raw.contains(['%', '+']) {
        return Some(Cow::Borrowed(raw.as_bytes()));
    }
    decode_iter(raw)
        .collect::<Result<Vec<u8>, ()>>()
        .ok()
        .map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_like_go() {
        let pairs: Vec<_> = raw_pairs("a=1&&b&c=&d=x=y&e;f=2&=z").collect();
        assert_eq!(
            pairs,
            vec![("a", "1"), ("b", ""), ("c", ""), ("d", "x=y"), ("", "z")]
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(decode("a+b%20c%2b").as_deref(), Some(&b"a b c+"[..]));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%C3%A9").as_deref(), Some("é".as_bytes()));
        assert!(matches!(decode("plain"), Some(Cow::Borrowed(_))));
        assert!(decoded_eq("a%2Fb+c", b"a/b c"));
        assert!(!decoded_eq("a%2Fb+c", b"a/b c "));
        assert!(!decoded_eq("a%2Fb+cd", b"a/b c"));
        assert!(!decoded_eq("a%2", b"a"));
        assert!(decoded_eq("", b""));
    }
}
