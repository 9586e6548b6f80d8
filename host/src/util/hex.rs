//! Lower-case hex encoding: content hashes as names, bytes in messages.

use std::fmt::Write;

/// The bytes as lower-case hex, two digits each.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(out, "{b:02x}").expect("writing to a String cannot fail");
    }
    out
}

/// The hex SHA-256 of `bytes`: fixed-length, key-safe, stable names.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    encode(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_lower_case_digits_per_byte() {
        assert_eq!(encode(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn sha256_is_the_known_digest() {
        assert_eq!(
            sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
