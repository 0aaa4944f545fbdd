//! `remoteRef.metadataPolicy: Fetch`: the value of a remote object is its
//! tags, as the JSON object External Secrets makes of them (Go's
//! `encoding/json` on a map of strings). The bytes must be the same as
//! External Secrets writes, since without a `property` they go into the
//! Secret as they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Tags as a JSON object the way Go marshals a `map[string]string`: keys in
/// byte order (a [`BTreeMap`] is), no spaces, and Go's string escaping
/// (see [`push_go_string`]).
pub fn tags_json(tags: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(2 + tags.len() * 16);
    out.push('{');
    for (i, (key, value)) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_go_string(&mut out, key);
        out.push(':');
        push_go_string(&mut out, value);
    }
    out.push('}');
    out
}

/// A JSON string as Go's `encoding/json` writes it by default: `"` and `\`
/// escaped; `\b`, `\f`, `\n`, `\r`, `\t` short; other control characters
/// as `\u00xx` (lower-case hex); `<`, `>` and `&` (HTML-safe) and U+2028,
/// U+2029 (JavaScript line separators) as `\u` escapes; the rest as is.
fn push_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(pairs: &[(&str, &str)]) -> String {
        tags_json(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn tags_are_marshalled_as_go_does() {
        // (tags, what Go's json.Marshal of the map[string]string writes)
        let table: &[(&[(&str, &str)], &str)] = &[
            (&[], "{}"),
            (
                &[("tagname2", "tagvalue2"), ("tagname1", "tagvalue1")],
                r#"{"tagname1":"tagvalue1","tagname2":"tagvalue2"}"#,
            ),
            // Keys in byte order: upper case before lower case.
            (
                &[("b", "1"), ("B", "2"), ("a", "3")],
                r#"{"B":"2","a":"3","b":"1"}"#,
            ),
            (
                &[("html", "<a href=\"x\">&</a>")],
                r#"{"html":"\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e"}"#,
            ),
            (&[("k<", "v")], r#"{"k\u003c":"v"}"#),
            (&[("path", r"C:\dir")], r#"{"path":"C:\\dir"}"#),
            (
                &[("ws", "a\nb\rc\td\u{8}e\u{c}f")],
                r#"{"ws":"a\nb\rc\td\be\ff"}"#,
            ),
            (
                &[("ctl", "\u{0}\u{1f}\u{7f}")],
                "{\"ctl\":\"\\u0000\\u001f\u{7f}\"}",
            ),
            (
                &[("js", "x\u{2028}y\u{2029}z")],
                r#"{"js":"x\u2028y\u2029z"}"#,
            ),
            (&[("utf8", "héllo ✓ 🙂")], r#"{"utf8":"héllo ✓ 🙂"}"#),
            (&[("", "")], r#"{"":""}"#),
        ];
        for (tags, want) in table {
            assert_eq!(json(tags), *want, "tags {tags:?}");
        }
    }

    #[test]
    fn the_json_reads_back_as_the_tags() {
        let pairs = [("a<b", "x&y"), ("q\"", "\u{1}\\"), ("n", "l\u{2028}")];
        let text = json(&pairs);
        let back: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
        let want: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(back, want);
    }
}
