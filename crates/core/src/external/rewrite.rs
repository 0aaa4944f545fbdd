//! `dataFrom[].rewrite[]` and the key rules around it, as External
//! Secrets v2.9.0 applies them to the keys one `dataFrom` entry produced
//! (`runtime/esutils`): rewrites in order (`regexp`, `transform`,
//! `merge`), else `conversionStrategy`; then key validation. Values are
//! only read by `merge` (JSON objects).
//!
//! Intended differences from ESO, each because ESO's outcome is random or
//! fails later anyway:
//! - two keys rewritten to one key is an error (ESO keeps one of them at
//!   random: Go map order);
//! - a key character outside `[-._a-zA-Z0-9]` is converted / refused even
//!   when it is a Unicode letter or digit (ESO keeps it, then the API
//!   server refuses the Secret).

use std::collections::BTreeMap;

use serde_json::Value;

use super::go_regexp::GoRegex;
use crate::secret::SecretBytes;

/// The keys and values one `dataFrom` entry produced.
pub type SecretMap = BTreeMap<String, SecretBytes>;

// The rewrite types are the API's (one definition, with its schema).
pub use super::api::{
    ConflictPolicy, ConversionStrategy, MergeStrategy, PriorityPolicy, Rewrite, RewriteMerge,
    RewriteRegexp, RewriteTransform,
};

/// The longest Secret key (as ESO checks; the API server allows 253).
pub const MAX_KEY_LEN: usize = 253;

/// Why a rewrite or key rule failed. Paths name the field; messages hold
/// key names (never values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("{path}: {why}")]
    Regexp { path: String, why: String },
    #[error("{path}: one of regexp, transform or merge is required")]
    Empty { path: String },
    #[error("{path}: keys {first:?} and {second:?} both become {key:?}")]
    Collision {
        path: String,
        first: String,
        second: String,
        key: String,
    },
    #[error("{path}: {why}")]
    Transform { path: String, why: String },
    #[error("{path}: key {key:?} not found in the data to merge")]
    MergeKeyNotFound { path: String, key: String },
    #[error("{path}: the value of key {key:?} is not a JSON object")]
    MergeNotJson { path: String, key: String },
    #[error("{path}: keys found in more than one value (conflictPolicy Error): {keys}")]
    MergeConflicts { path: String, keys: String },
    #[error("{path}: required by strategy JSON")]
    MergeMissingInto { path: String },
    #[error("{path}: key {key:?} is {len} bytes, over {MAX_KEY_LEN}")]
    KeyTooLong {
        path: String,
        key: String,
        len: usize,
    },
    #[error(
        "{path}: key {key:?} holds {ch:?}; a Secret key holds only letters, digits, '-', '.' and '_'"
    )]
    KeyInvalid { path: String, key: String, ch: char },
}

/// Renders a `transform.template` for one key (`.value` = the key); the
/// template engine is wired in by the caller. Its error text must not
/// hold secret values (it only ever sees key names).
pub type TransformFn<'a> = &'a dyn Fn(&str, &str) -> Result<String, String>;

/// Applies `rewrites` in order (ESO `RewriteMap`). `at` is the path of
/// the `dataFrom` entry, e.g. `spec.dataFrom[0]`.
pub fn rewrite_map(
    rewrites: &[Rewrite],
    input: SecretMap,
    at: &str,
    transform: TransformFn<'_>,
) -> Result<SecretMap, RewriteError> {
    let mut map = input;
    for (i, op) in rewrites.iter().enumerate() {
        let path = format!("{at}.rewrite[{i}]");
        // ESO takes merge, then regexp, then transform when several are
        // set (the CRD allows only one).
        map = if let Some(m) = &op.merge {
            merge(m, map, &format!("{path}.merge"))?
        } else if let Some(r) = &op.regexp {
            regexp(r, map, &format!("{path}.regexp"))?
        } else if let Some(t) = &op.transform {
            rename(map, &format!("{path}.transform.template"), |k| {
                transform(&t.template, k)
            })?
        } else {
            return Err(RewriteError::Empty { path });
        };
    }
    Ok(map)
}

fn regexp(op: &RewriteRegexp, map: SecretMap, path: &str) -> Result<SecretMap, RewriteError> {
    let re = GoRegex::new(&op.source).map_err(|why| RewriteError::Regexp {
        path: format!("{path}.source"),
        why,
    })?;
    rename(map, path, |k| Ok(re.replace_all(k, &op.target)))
}

/// Renames every key; two keys landing on one is an error.
fn rename(
    map: SecretMap,
    path: &str,
    f: impl Fn(&str) -> Result<String, String>,
) -> Result<SecretMap, RewriteError> {
    let mut out = SecretMap::new();
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in map {
        let new = f(&key).map_err(|why| RewriteError::Transform {
            path: path.to_owned(),
            why,
        })?;
        if let Some(first) = from.get(&new) {
            return Err(RewriteError::Collision {
                path: path.to_owned(),
                first: first.clone(),
                second: key,
                key: new,
            });
        }
        from.insert(new.clone(), key);
        out.insert(new, value);
    }
    Ok(out)
}

/// ESO `RewriteMerge`: every value is a JSON object; they are merged in
/// key order, `priority` keys last in their order.
fn merge(op: &RewriteMerge, map: SecretMap, path: &str) -> Result<SecretMap, RewriteError> {
    let mut order: Vec<(&str, Option<usize>)> = map
        .keys()
        .filter(|k| !op.priority.contains(k))
        .map(|k| (k.as_str(), None))
        .collect();
    order.extend(
        op.priority
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), Some(i))),
    );
    let mut merged: BTreeMap<String, Value> = BTreeMap::new();
    let mut conflicts: Vec<String> = Vec::new();
    for (key, priority_index) in order {
        let Some(value) = map.get(key) else {
            if op.priority_policy == PriorityPolicy::IgnoreNotFound {
                continue;
            }
            let at = priority_index.map_or(String::new(), |i| format!(".priority[{i}]"));
            return Err(RewriteError::MergeKeyNotFound {
                path: format!("{path}{at}"),
                key: key.to_owned(),
            });
        };
        let not_json = || RewriteError::MergeNotJson {
            path: path.to_owned(),
            key: key.to_owned(),
        };
        // Go's json.Unmarshal into a map accepts `null` as an empty map.
        let object = match serde_json::from_slice::<Value>(value.expose()) {
            Ok(Value::Object(o)) => o,
            Ok(Value::Null) => serde_json::Map::new(),
            _ => return Err(not_json()),
        };
        for (k, v) in object {
            if merged.contains_key(&k) {
                conflicts.push(k.clone());
            }
            merged.insert(k, v);
        }
    }
    if op.conflict_policy == ConflictPolicy::Error && !conflicts.is_empty() {
        conflicts.sort();
        conflicts.dedup();
        return Err(RewriteError::MergeConflicts {
            path: path.to_owned(),
            keys: conflicts.join(", "),
        });
    }
    match op.strategy {
        MergeStrategy::Extract => Ok(merged
            .into_iter()
            .map(|(k, v)| (k, SecretBytes::new(go_byte_value(&v))))
            .collect()),
        MergeStrategy::Json => {
            if op.into.is_empty() {
                return Err(RewriteError::MergeMissingInto {
                    path: format!("{path}.into"),
                });
            }
            let mut text = String::new();
            write_go_json_object(&mut text, merged.iter(), false);
            let mut out = map;
            out.insert(op.into.clone(), SecretBytes::from(text));
            Ok(out)
        }
    }
}

/// ESO `GetByteValue` of a decoded JSON value: strings as they are,
/// numbers as Go prints a float64, objects and arrays as `json.Marshal`
/// writes them, `null` as nothing.
pub fn go_byte_value(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Null => Vec::new(),
        Value::Bool(b) => b.to_string().into_bytes(),
        // strconv.FormatFloat(f, 'f', -1, 64): Rust's Display of f64 is
        // the same shortest fixed notation.
        Value::Number(n) => format!("{}", n.as_f64().unwrap_or(0.0)).into_bytes(),
        Value::Array(_) | Value::Object(_) => {
            let mut s = String::new();
            write_go_json(&mut s, v, true);
            s.into_bytes()
        }
    }
}

/// JSON as Go's `encoding/json` writes a `map[string]any` / `[]any`:
/// keys sorted, numbers as float64, HTML characters escaped when
/// `escape_html` (json.Marshal) and not otherwise (ESO's JSONMarshal).
fn write_go_json(out: &mut String, v: &Value, escape_html: bool) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => write_go_string(out, s, escape_html),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, item, escape_html);
            }
            out.push(']');
        }
        Value::Object(o) => {
            let sorted: BTreeMap<&String, &Value> = o.iter().collect();
            write_go_json_object(out, sorted.into_iter(), escape_html);
        }
    }
}

fn write_go_json_object<'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    escape_html: bool,
) {
    out.push('{');
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_go_string(out, k, escape_html);
        out.push(':');
        write_go_json(out, v, escape_html);
    }
    out.push('}');
}

/// Go's float64 JSON encoding: shortest digits, exponent form below 1e-6
/// and from 1e21 (`1e+21`, `1e-7`).
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => match exp.strip_prefix('-') {
                Some(neg) => format!("{mantissa}e-{neg}"),
                None => format!("{mantissa}e+{exp:0>2}"),
            },
            None => s,
        }
    } else {
        format!("{f}")
    }
}

fn write_go_string(out: &mut String, s: &str, escape_html: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' if escape_html => {
                out.push_str("\\u00");
                let b = c as u8;
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            c if (c as u32) < 0x20 => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn key_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
}

/// ESO `ConvertKeys`: applied to `extract` / `find` keys when the entry
/// has no `rewrite`. `at` names the strategy field for errors.
pub fn convert_keys(
    strategy: ConversionStrategy,
    map: SecretMap,
    at: &str,
) -> Result<SecretMap, RewriteError> {
    rename(map, at, |k| Ok(convert_key(strategy, k)))
}

/// One key under `strategy`.
pub fn convert_key(strategy: ConversionStrategy, key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        if key_char_ok(c) {
            out.push(c);
        } else {
            match strategy {
                ConversionStrategy::Default => out.push('_'),
                ConversionStrategy::Unicode => out.push_str(&format!("_U{:04x}_", c as u32)),
            }
        }
    }
    out
}

/// ESO `ValidateKeys`: an empty key is dropped (a value that did not
/// exist upstream), a long key or one with a character a Secret key may
/// not hold is an error.
pub fn validate_keys(map: SecretMap, at: &str) -> Result<SecretMap, RewriteError> {
    let mut out = SecretMap::new();
    for (key, value) in map {
        if key.is_empty() {
            continue;
        }
        if key.len() > MAX_KEY_LEN {
            let mut cut = MAX_KEY_LEN;
            while !key.is_char_boundary(cut) {
                cut -= 1;
            }
            return Err(RewriteError::KeyTooLong {
                path: at.to_owned(),
                len: key.len(),
                key: format!("{}...", &key[..cut]),
            });
        }
        if let Some(ch) = key.chars().find(|&c| !key_char_ok(c)) {
            return Err(RewriteError::KeyInvalid {
                path: at.to_owned(),
                key,
                ch,
            });
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// The key steps of one `dataFrom` `extract` / `find` entry, in ESO's
/// order: rewrites, or the conversion when there are none; then key
/// validation. (Decoding and the null-byte rule come after: see
/// [`super::decoding`].)
pub fn data_from_keys(
    rewrites: &[Rewrite],
    conversion: ConversionStrategy,
    map: SecretMap,
    at: &str,
    source: &str,
    transform: TransformFn<'_>,
) -> Result<SecretMap, RewriteError> {
    let map = if rewrites.is_empty() {
        convert_keys(
            conversion,
            map,
            &format!("{at}.{source}.conversionStrategy"),
        )?
    } else {
        rewrite_map(rewrites, map, at, transform)?
    };
    validate_keys(map, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> SecretMap {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretBytes::from(*v)))
            .collect()
    }

    fn no_transform(_: &str, _: &str) -> Result<String, String> {
        Err("no template engine".to_owned())
    }

    fn re(source: &str, target: &str) -> Rewrite {
        Rewrite {
            regexp: Some(RewriteRegexp {
                source: source.to_owned(),
                target: target.to_owned(),
            }),
            transform: None,
            merge: None,
        }
    }

    #[test]
    fn regexp_renames_and_refuses_collisions() {
        let out = rewrite_map(
            &[re("^db/", "")],
            map(&[("db/a", "1"), ("b", "2")]),
            "spec.dataFrom[0]",
            &no_transform,
        )
        .expect("rewrite");
        assert_eq!(out, map(&[("a", "1"), ("b", "2")]));
        let err = rewrite_map(
            &[re("^db/", "")],
            map(&[("db/a", "1"), ("a", "2")]),
            "spec.dataFrom[0]",
            &no_transform,
        )
        .expect_err("collision");
        assert_eq!(
            err.to_string(),
            r#"spec.dataFrom[0].rewrite[0].regexp: keys "a" and "db/a" both become "a""#
        );
    }

    #[test]
    fn bad_pattern_is_named_by_path() {
        let err = rewrite_map(
            &[re("ok", "x"), re("(", "x")],
            map(&[("k", "secret-value")]),
            "spec.dataFrom[2]",
            &no_transform,
        )
        .expect_err("bad pattern");
        let text = err.to_string();
        assert!(
            text.starts_with("spec.dataFrom[2].rewrite[1].regexp.source: not a regular expression"),
            "{text}"
        );
        assert!(!text.contains("secret-value"));
    }

    #[test]
    fn merge_errors_never_hold_values() {
        let op = Rewrite {
            regexp: None,
            transform: None,
            merge: Some(RewriteMerge::default()),
        };
        let err = rewrite_map(
            &[op],
            map(&[("k", "{\"a\": hunter2")]),
            "spec.dataFrom[0]",
            &no_transform,
        )
        .expect_err("not json");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("rewrite[0].merge"), "{err}");
    }

    #[test]
    fn go_json_numbers_and_escapes() {
        assert_eq!(go_float(123.0), "123");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(1.5e-7), "1.5e-7");
        assert_eq!(go_float(1e-100), "1e-100");
        assert_eq!(go_float(0.000001), "0.000001");
        assert_eq!(go_float(-0.5), "-0.5");
        let v: Value =
            serde_json::from_str(r#"{"b":[1,2.5,"<&>"],"a":"\u2028\u0001"}"#).expect("json");
        assert_eq!(
            String::from_utf8(go_byte_value(&v)).expect("utf8"),
            r#"{"a":"\u2028\u0001","b":[1,2.5,"\u003c\u0026\u003e"]}"#
        );
        assert_eq!(
            go_byte_value(&serde_json::json!(12345678901234567890u64)),
            b"12345678901234567000"
        );
        assert_eq!(go_byte_value(&Value::Null), b"");
        assert_eq!(go_byte_value(&serde_json::json!(true)), b"true");
    }

    #[test]
    fn conversion_and_validation() {
        assert_eq!(convert_key(ConversionStrategy::Default, "/a/b c"), "_a_b_c");
        assert_eq!(
            convert_key(ConversionStrategy::Unicode, "a/é"),
            "a_U002f__U00e9_"
        );
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let err =
            validate_keys(map(&[(long.as_str(), "v")]), "spec.dataFrom[0]").expect_err("too long");
        assert!(err.to_string().contains("254 bytes"), "{err}");
        let ok = validate_keys(map(&[("", "v"), ("a", "b")]), "x").expect("valid");
        assert_eq!(ok, map(&[("a", "b")]));
        let err = validate_keys(map(&[("a/b", "v")]), "spec.dataFrom[1]").expect_err("slash");
        assert!(
            err.to_string()
                .starts_with("spec.dataFrom[1]: key \"a/b\" holds '/'"),
            "{err}"
        );
    }

    #[test]
    fn data_from_converts_only_without_rewrite() {
        let out = data_from_keys(
            &[],
            ConversionStrategy::Default,
            map(&[("a/b", "1")]),
            "spec.dataFrom[0]",
            "extract",
            &no_transform,
        )
        .expect("converted");
        assert_eq!(out, map(&[("a_b", "1")]));
        let err = data_from_keys(
            &[re("x", "y")],
            ConversionStrategy::Default,
            map(&[("a/b", "1")]),
            "spec.dataFrom[0]",
            "extract",
            &no_transform,
        )
        .expect_err("not converted");
        assert!(matches!(err, RewriteError::KeyInvalid { .. }));
    }
}
