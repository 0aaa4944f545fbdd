//! `decodingStrategy` and `nullBytePolicy` of `data[].remoteRef`,
//! `dataFrom[].extract` and `dataFrom[].find`, as External Secrets v2.9.0
//! applies them (`runtime/decoding`, `validateFetchedSecretValue`): after
//! the key rules, decode each value, then refuse NUL bytes when asked.
//!
//! Base64 is Go's `encoding/base64` (Std / URL): padding required, `\r`
//! and `\n` skipped anywhere, non-zero trailing bits accepted.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::rewrite::SecretMap;
use crate::secret::SecretBytes;

pub use super::api::{DecodingStrategy, NullBytePolicy};

/// Why a value was refused. Names the key and the field, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodingError {
    #[error("{path}: the value of key {key:?} is not valid {encoding}")]
    Invalid {
        path: String,
        key: String,
        encoding: &'static str,
    },
    #[error(
        "{path}: the value of key {key:?} holds NUL bytes (nullBytePolicy Fail); use a text-safe format such as PEM or base64, or leave nullBytePolicy unset for binary data"
    )]
    NullBytes { path: String, key: String },
}

fn engine(alphabet: &alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    )
}

fn go_base64(alphabet: &alphabet::Alphabet, value: &[u8]) -> Option<Vec<u8>> {
    // Go's decoder skips line breaks (and only those).
    let stripped: zeroize::Zeroizing<Vec<u8>> = zeroize::Zeroizing::new(
        value
            .iter()
            .copied()
            .filter(|b| *b != b'\r' && *b != b'\n')
            .collect(),
    );
    engine(alphabet).decode(stripped.as_slice()).ok()
}

/// ESO `Decode` of one value. `path` is the strategy's field path.
pub fn decode(
    strategy: DecodingStrategy,
    key: &str,
    value: SecretBytes,
    path: &str,
) -> Result<SecretBytes, DecodingError> {
    let fail = |encoding| DecodingError::Invalid {
        path: path.to_owned(),
        key: key.to_owned(),
        encoding,
    };
    Ok(match strategy {
        DecodingStrategy::None => value,
        DecodingStrategy::Base64 => SecretBytes::new(
            go_base64(&alphabet::STANDARD, value.expose()).ok_or_else(|| fail("base64"))?,
        ),
        DecodingStrategy::Base64Url => SecretBytes::new(
            go_base64(&alphabet::URL_SAFE, value.expose()).ok_or_else(|| fail("base64url"))?,
        ),
        DecodingStrategy::Auto => match go_base64(&alphabet::STANDARD, value.expose())
            .or_else(|| go_base64(&alphabet::URL_SAFE, value.expose()))
        {
            Some(bytes) => SecretBytes::new(bytes),
            None => value,
        },
    })
}

/// ESO `DecodeMap`: every value; the first failing key (in key order) is
/// reported.
pub fn decode_map(
    strategy: DecodingStrategy,
    map: SecretMap,
    path: &str,
) -> Result<SecretMap, DecodingError> {
    map.into_iter()
        .map(|(k, v)| {
            let v = decode(strategy, &k, v, path)?;
            Ok((k, v))
        })
        .collect()
}

/// The null-byte rule for one value.
pub fn check_null_bytes(
    policy: NullBytePolicy,
    key: &str,
    value: &SecretBytes,
    path: &str,
) -> Result<(), DecodingError> {
    if policy == NullBytePolicy::Fail && value.expose().contains(&0) {
        return Err(DecodingError::NullBytes {
            path: path.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(())
}

/// The null-byte rule for a map; the first failing key in key order is
/// reported (as ESO sorts them).
pub fn check_null_bytes_map(
    policy: NullBytePolicy,
    map: &SecretMap,
    path: &str,
) -> Result<(), DecodingError> {
    map.iter()
        .try_for_each(|(k, v)| check_null_bytes(policy, k, v, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: DecodingStrategy, v: &[u8]) -> Result<Vec<u8>, DecodingError> {
        decode(
            s,
            "k",
            SecretBytes::new(v.to_vec()),
            "spec.data[0].remoteRef.decodingStrategy",
        )
        .map(|b| b.expose().to_vec())
    }

    #[test]
    fn go_base64_rules() {
        assert_eq!(
            dec(DecodingStrategy::Base64, b"YmFy\r\nYmFy").expect("ok"),
            b"barbar"
        );
        assert_eq!(
            dec(DecodingStrategy::Base64, b"YR==").expect("trailing bits"),
            b"a"
        );
        assert!(dec(DecodingStrategy::Base64, b"YmE").is_err());
        assert!(dec(DecodingStrategy::Base64, b"Ym Fy").is_err());
        assert_eq!(dec(DecodingStrategy::Base64, b"").expect("empty"), b"");
        assert!(dec(DecodingStrategy::Base64, b"Zm9vJV8_YmFy").is_err());
        assert_eq!(
            dec(DecodingStrategy::Auto, b"Zm9vJV8_YmFy").expect("url"),
            b"foo%_?bar"
        );
        assert_eq!(
            dec(DecodingStrategy::Auto, b"not base64!").expect("as is"),
            b"not base64!"
        );
    }

    #[test]
    fn errors_name_key_and_path_not_value() {
        let err = dec(DecodingStrategy::Base64Url, b"hunter2").expect_err("invalid");
        let text = err.to_string();
        assert_eq!(
            text,
            "spec.data[0].remoteRef.decodingStrategy: the value of key \"k\" is not valid base64url"
        );
        let mut map = SecretMap::new();
        map.insert("b".into(), SecretBytes::new(b"x\0y".to_vec()));
        map.insert("a".into(), SecretBytes::new(b"\0".to_vec()));
        let err = check_null_bytes_map(
            NullBytePolicy::Fail,
            &map,
            "spec.dataFrom[0].find.nullBytePolicy",
        )
        .expect_err("nul");
        assert!(matches!(err, DecodingError::NullBytes { ref key, .. } if key == "a"));
        assert!(check_null_bytes_map(NullBytePolicy::Ignore, &map, "x").is_ok());
    }
}
