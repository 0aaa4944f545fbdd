//! Byte-level helpers with Go's (External Secrets') meaning: the JSON a
//! whole Secret is pushed as, `ReverseUnicode` key conversion, the
//! `property` path of a Secrets Manager push and its edit of a JSON
//! object, and JSON equality as Go's `reflect.DeepEqual` of decoded maps
//! sees it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine;
use serde_json::Value;

use super::api::PushConversionStrategy;

/// A JSON string as Go's `encoding/json` writes it with HTML escaping off
/// (External Secrets' `JSONMarshal`): invalid UTF-8 becomes `\ufffd`,
/// U+2028 and U+2029 are escaped, control characters too.
pub(crate) fn push_go_string(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\u{2028}' | '\u{2029}' => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        if !chunk.invalid().is_empty() {
            out.push_str("\\ufffd");
        }
    }
    out.push('"');
}

/// A whole Secret as one JSON object, keys in byte order (Go sorts map
/// keys): values as text (`map[string]string`), or base64 of the bytes
/// (`map[string][]byte`, Parameter Store without `encodeAsDecoded`).
pub(crate) fn secret_json(data: &BTreeMap<String, Vec<u8>>, base64_values: bool) -> Vec<u8> {
    let mut out = String::with_capacity(
        2 + data
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>(),
    );
    out.push('{');
    for (i, (k, v)) in data.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_go_string(&mut out, k.as_bytes());
        out.push(':');
        if base64_values {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(v));
            out.push('"');
        } else {
            push_go_string(&mut out, v);
        }
    }
    out.push('}');
    out.into_bytes()
}

/// One key under a push `conversionStrategy` (ESO `ReverseKey`):
/// `_U` + 4 or 5 hex digits + `_` becomes that character (a surrogate
/// becomes U+FFFD, as Go's `%c` prints it); leftmost first, no overlap.
pub(crate) fn reverse_key(strategy: PushConversionStrategy, key: &str) -> String {
    if strategy == PushConversionStrategy::None {
        return key.to_owned();
    }
    let b = key.as_bytes();
    let mut out = String::with_capacity(key.len());
    let mut i = 0;
    let mut copied = 0;
    while i + 7 <= b.len() {
        if b[i] == b'_' && b[i + 1] == b'U' {
            let hex = b[i + 2..]
                .iter()
                .take(5)
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            // Greedy {4,5}, then `_`; with 5 digits not followed by `_`,
            // 4 digits followed by `_` cannot match (the 5th is a digit).
            let end = if hex == 5 && b.get(i + 7) == Some(&b'_') {
                Some(i + 7)
            } else if hex >= 4 && b.get(i + 6) == Some(&b'_') {
                Some(i + 6)
            } else {
                None
            };
            if let Some(end) = end {
                let digits = &key[i + 2..end];
                let code = u32::from_str_radix(digits, 16).unwrap_or(0xfffd);
                out.push_str(&key[copied..i]);
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                i = end + 1;
                copied = i;
                continue;
            }
        }
        i += 1;
    }
    out.push_str(&key[copied..]);
    out
}

/// Every key of `data` under `strategy`, each with its original key; two
/// keys converting to one is an error naming that key.
pub(crate) fn reverse_keys(
    strategy: PushConversionStrategy,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<BTreeMap<String, (&str, &[u8])>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in data {
        let key = reverse_key(strategy, k);
        if let Some((first, _)) = out.insert(key.clone(), (k.as_str(), v.as_slice())) {
            return Err(format!(
                "secret name collision during conversion: keys {first:?} and {k:?} both become {key:?}"
            ));
        }
    }
    Ok(out)
}

/// The longest `property` accepted, and its most segments.
pub const MAX_PROPERTY_BYTES: usize = 1024;
pub const MAX_PROPERTY_DEPTH: usize = 32;

/// A `property` as sjson reads it: keys split on `.`, `\` escapes the
/// next character. Parts sjson would read as something other than an
/// object key are refused: digits only and `-1` (array indexes), a
/// leading `:` (sjson's forced key), and `| # @ * ?` (gjson queries,
/// which sjson cannot set).
pub(crate) fn property_path(property: &str) -> Result<Vec<String>, String> {
    if property.is_empty() {
        return Err("must not be empty".into());
    }
    if property.len() > MAX_PROPERTY_BYTES {
        return Err(format!(
            "is {} bytes, over the limit of {MAX_PROPERTY_BYTES}",
            property.len()
        ));
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = property.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => current.push(next),
                None => return Err("ends with a lone '\\'".into()),
            },
            '.' => parts.push(std::mem::take(&mut current)),
            '|' | '#' | '@' | '*' | '?' => {
                return Err(format!(
                    "holds {c:?}, a query character the property cannot set"
                ));
            }
            c => current.push(c),
        }
    }
    parts.push(current);
    if parts.len() > MAX_PROPERTY_DEPTH {
        return Err(format!("has more than {MAX_PROPERTY_DEPTH} parts"));
    }
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        if part.is_empty() {
            return Err("has an empty part (two dots, or a dot at an end)".into());
        }
        if part.bytes().all(|b| b.is_ascii_digit()) || part == "-1" {
            return Err(format!(
                "part {part:?} would be an array index, not an object key"
            ));
        }
        if part.starts_with(':') {
            return Err(format!("part {part:?} starts with ':'"));
        }
        out.push(part);
    }
    Ok(out)
}

/// Why a property edit failed: the existing value is not a JSON object
/// (or a part of the path is not one); the text names the path only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotObject(pub String);

/// Refuses JSON text holding a number serde would not keep exactly
/// (an integer beyond 64 bits, more than 17 significant digits): a
/// property edit rewrites the whole text, and other fields must come out
/// as they went in.
fn numbers_kept(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &text[start..i];
                let integer = !token.contains(['.', 'e', 'E']);
                if integer {
                    if token.parse::<i64>().is_err() && token.parse::<u64>().is_err() {
                        return false;
                    }
                } else {
                    let mantissa = token.split(['e', 'E']).next().unwrap_or("");
                    let digits = mantissa
                        .bytes()
                        .filter(u8::is_ascii_digit)
                        .skip_while(|d| *d == b'0')
                        .count();
                    if digits > 17 {
                        return false;
                    }
                }
            }
            _ => i += 1,
        }
    }
    true
}

/// `property` set to `value` (text) in the JSON object `existing` (empty
/// or absent: a new object), intermediate objects created. `Ok(None)`:
/// the property already holds exactly that string, nothing to write.
pub(crate) fn set_property(
    existing: Option<&[u8]>,
    path: &[String],
    value: &str,
) -> Result<Option<Vec<u8>>, NotObject> {
    let text = existing.unwrap_or_default();
    let mut root = if text.iter().all(u8::is_ascii_whitespace) {
        Value::Object(serde_json::Map::new())
    } else {
        let s = std::str::from_utf8(text).map_err(|_| NotObject("not UTF-8 text".into()))?;
        if !numbers_kept(s) {
            return Err(NotObject(
                "holds a number that could not be written back exactly".into(),
            ));
        }
        match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err(NotObject("valid JSON, but not an object".into())),
            Err(_) => return Err(NotObject("not valid JSON".into())),
        }
    };
    let (leaf, parents) = path
        .split_last()
        .ok_or_else(|| NotObject("empty path".into()))?;
    let mut node = &mut root;
    for (depth, part) in parents.iter().enumerate() {
        let Value::Object(map) = node else {
            return Err(NotObject(format!(
                "{:?} is not an object",
                path[..depth].join(".")
            )));
        };
        node = map
            .entry(part.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    let Value::Object(map) = node else {
        return Err(NotObject(format!(
            "{:?} is not an object",
            parents.join(".")
        )));
    };
    if map.get(leaf).and_then(Value::as_str) == Some(value) {
        return Ok(None);
    }
    map.insert(leaf.clone(), Value::String(value.to_owned()));
    Ok(Some(serde_json::to_vec(&root).unwrap_or_default()))
}

/// `property` removed from the JSON object `existing`. `Ok(None)`: it is
/// not there, nothing to write.
pub(crate) fn remove_property(
    existing: &[u8],
    path: &[String],
) -> Result<Option<Vec<u8>>, NotObject> {
    let s = std::str::from_utf8(existing).map_err(|_| NotObject("not UTF-8 text".into()))?;
    if !numbers_kept(s) {
        return Err(NotObject(
            "holds a number that could not be written back exactly".into(),
        ));
    }
    let mut root: Value = match serde_json::from_str(s) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(NotObject("not a JSON object".into())),
    };
    let (leaf, parents) = path
        .split_last()
        .ok_or_else(|| NotObject("empty path".into()))?;
    let mut node = &mut root;
    for part in parents {
        match node.get_mut(part.as_str()) {
            Some(next @ Value::Object(_)) => node = next,
            _ => return Ok(None),
        }
    }
    match node.as_object_mut().and_then(|m| m.remove(leaf.as_str())) {
        Some(_) => Ok(Some(serde_json::to_vec(&root).unwrap_or_default())),
        None => Ok(None),
    }
}

/// Go's `reflect.DeepEqual` of two `map[string]any` decoded by
/// `encoding/json`: numbers compare as float64.
pub(crate) fn go_json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| go_json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| go_json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_unicode_like_go() {
        let r = |k| reverse_key(PushConversionStrategy::ReverseUnicode, k);
        assert_eq!(
            r("some-array_U005b_0_U005d_.entity"),
            "some-array[0].entity"
        );
        assert_eq!(r("some_U002D_key"), "some-key");
        assert_eq!(r("_U1F600_"), "\u{1F600}");
        assert_eq!(r("_U00e9_x"), "éx");
        // Surrogates print as U+FFFD.
        assert_eq!(r("_Ud800_"), "\u{fffd}");
        // Not a sequence: too few digits, no closing underscore.
        assert_eq!(r("_U12_"), "_U12_");
        assert_eq!(r("_U12345x"), "_U12345x");
        assert_eq!(r("_U123456_"), "_U123456_");
        // Adjacent sequences, leftmost first.
        assert_eq!(r("_U0041__U0042_"), "AB");
        assert_eq!(
            reverse_key(PushConversionStrategy::None, "_U0041_"),
            "_U0041_"
        );
    }

    #[test]
    fn secret_json_as_go_marshals() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("b".to_owned(), b"<&>\n\"".to_vec()),
            ("a".to_owned(), vec![0xff, b'x']),
        ]
        .into();
        assert_eq!(
            String::from_utf8(secret_json(&data, false)).unwrap(),
            r#"{"a":"\ufffdx","b":"<&>\n\""}"#
        );
        assert_eq!(
            String::from_utf8(secret_json(&data, true)).unwrap(),
            r#"{"a":"/3g=","b":"PCY+CiI="}"#
        );
    }

    #[test]
    fn property_paths() {
        assert_eq!(property_path("a.b").unwrap(), vec!["a", "b"]);
        assert_eq!(property_path(r"a\.b").unwrap(), vec!["a.b"]);
        for bad in [
            "", "a..b", ".a", "a.", "0", "a.12", "-1", ":x", "a*", "a|b", "x\\",
        ] {
            assert!(property_path(bad).is_err(), "{bad:?}");
        }
        assert!(property_path(&"a.".repeat(40)).is_err());
    }

    #[test]
    fn property_edits() {
        let p = |s| property_path(s).unwrap();
        let out = set_property(Some(br#"{"fake-property":"fake-value"}"#), &p("other"), "v")
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            serde_json::json!({"fake-property": "fake-value", "other": "v"})
        );
        // Same value: nothing to write, whatever the spacing.
        assert_eq!(
            set_property(Some(br#"{ "a" : "v" }"#), &p("a"), "v"),
            Ok(None)
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&set_property(None, &p("x.y"), "v").unwrap().unwrap())
                .unwrap(),
            serde_json::json!({"x": {"y": "v"}})
        );
        assert!(set_property(Some(b"non-json-secret"), &p("a"), "v").is_err());
        assert!(set_property(Some(b"[1]"), &p("a"), "v").is_err());
        assert!(set_property(Some(br#"{"a":"s"}"#), &p("a.b"), "v").is_err());
        assert!(set_property(Some(br#"{"n":123456789012345678901234}"#), &p("a"), "v").is_err());
        assert!(set_property(Some(br#"{"n":1.5e3,"m":-2}"#), &p("a"), "v").is_ok());
        assert_eq!(
            remove_property(br#"{"a":"1","b":"2"}"#, &p("a"))
                .unwrap()
                .unwrap(),
            br#"{"b":"2"}"#
        );
        assert_eq!(remove_property(br#"{"b":"2"}"#, &p("a")), Ok(None));
    }

    #[test]
    fn deep_equal_numbers_as_floats() {
        let a: Value = serde_json::from_str(r#"{"v":1,"l":[1.0,"x"]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"l":[1,"x"],"v":1.0}"#).unwrap();
        assert!(go_json_equal(&a, &b));
        assert!(!go_json_equal(
            &a,
            &serde_json::json!({"v": 2, "l": [1, "x"]})
        ));
    }
}
