//! The sprig v3.3.1 functions ESO exposes, and ESO's toYaml/fromYaml.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;

use super::gofmt::{self, days_from_civil, format_time};
use super::{
    Cx, Func, FuncError, arity, arity_min, bytes_val, int, parse_go_int, s, strval, to_f64, to_i64,
    wrong,
};
use crate::template::value::{Map, Time, Value};

type R = Result<Value, FuncError>;

fn st(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn out(cx: &Cx, b: Vec<u8>) -> R {
    cx.room(b.len())?;
    Ok(bytes_val(b))
}

fn list_of(v: &Value) -> Result<Arc<Vec<Value>>, FuncError> {
    match v {
        Value::List(l) => Ok(l.clone()),
        Value::Nil => Ok(Arc::new(Vec::new())),
        other => Err(format!("cannot find first on type {}", other.type_name()).into()),
    }
}

fn map_of(v: &Value) -> Result<&Map, FuncError> {
    match v {
        Value::Map(m) => Ok(m),
        other => Err(wrong("map[string]interface {}", other)),
    }
}

fn lst(v: Vec<Value>) -> Value {
    Value::list(v)
}

fn strs(v: Vec<Vec<u8>>) -> Value {
    Value::list(v.into_iter().map(bytes_val).collect())
}

/// sprig's `empty`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Time(_) => false,
        other => !other.truthy(),
    }
}

fn deep_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Time(x), Value::Time(y)) => x == y,
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| deep_eq(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.entries.len() == y.entries.len()
                && x.entries
                    .iter()
                    .all(|(k, v)| y.entries.get(k).is_some_and(|w| deep_eq(v, w)))
        }
        _ => false,
    }
}

fn regex(pat: &[u8]) -> Result<regex::bytes::Regex, FuncError> {
    let p = std::str::from_utf8(pat).map_err(|_| FuncError::from("regex is not UTF-8"))?;
    regex::bytes::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
        .map_err(|_| FuncError::from("error parsing regexp"))
}

fn random_from(cx: &Cx, n: i64, alphabet: &[u8]) -> R {
    if n < 0 {
        return Err("count must be non-negative".into());
    }
    cx.room(n as usize)?;
    let mut outb = Vec::with_capacity(n as usize);
    let mut buf = [0u8; 64];
    while outb.len() < n as usize {
        getrandom::fill(&mut buf).map_err(|_| FuncError::from("no randomness available"))?;
        for b in buf {
            // Rejection sampling keeps the choice uniform.
            let lim = 256 - 256 % alphabet.len();
            if (b as usize) < lim && outb.len() < n as usize {
                outb.push(alphabet[b as usize % alphabet.len()]);
            }
        }
    }
    Ok(bytes_val(outb))
}

const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const NUM: &[u8] = b"0123456789";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn words(s: &str) -> Vec<String> {
    // xstrings-style word split: separators and case changes.
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c.is_uppercase() && !cur.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_ascii_digit() || (prev.is_uppercase() && next_lower) {
                out.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn cap_first(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f
            .to_uppercase()
            .chain(c.flat_map(|x| x.to_lowercase()))
            .collect(),
        None => String::new(),
    }
}

fn indent_lines(cx: &Cx, n: i64, text: &[u8], lead_newline: bool) -> R {
    if n < 0 {
        return Err("indent must be non-negative".into());
    }
    let lines = text.iter().filter(|b| **b == b'\n').count() + 1;
    cx.room(
        (n as usize)
            .saturating_mul(lines)
            .saturating_add(text.len() + 1),
    )?;
    let pad = vec![b' '; n as usize];
    let mut o = Vec::new();
    if lead_newline {
        o.push(b'\n');
    }
    o.extend_from_slice(&pad);
    for &b in text {
        o.push(b);
        if b == b'\n' {
            o.extend_from_slice(&pad);
        }
    }
    Ok(bytes_val(o))
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    if from.is_empty() {
        // Go inserts `to` around every rune.
        let mut o = to.to_vec();
        let mut i = 0;
        while i < hay.len() {
            let (_, n) = gofmt::decode_rune(&hay[i..]);
            o.extend_from_slice(&hay[i..i + n.max(1)]);
            o.extend_from_slice(to);
            i += n.max(1);
        }
        return o;
    }
    let mut o = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            o.extend_from_slice(to);
            i += from.len();
        } else {
            o.push(hay[i]);
            i += 1;
        }
    }
    o
}

fn split_bytes<'a>(hay: &'a [u8], sep: &[u8], n: Option<usize>) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    if sep.is_empty() {
        let mut i = 0;
        while i < hay.len() {
            if n.is_some_and(|n| parts.len() + 1 == n) {
                parts.push(&hay[i..]);
                return parts;
            }
            let (_, k) = gofmt::decode_rune(&hay[i..]);
            parts.push(&hay[i..i + k.max(1)]);
            i += k.max(1);
        }
        return parts;
    }
    let mut start = 0;
    let mut i = 0;
    while i + sep.len() <= hay.len() {
        if n.is_some_and(|n| parts.len() + 1 == n) {
            break;
        }
        if hay[i..].starts_with(sep) {
            parts.push(&hay[start..i]);
            i += sep.len();
            start = i;
        } else {
            i += 1;
        }
    }
    parts.push(&hay[start..]);
    parts
}

fn trim_set<'a>(s: &'a [u8], set: &[u8], left: bool, right: bool) -> &'a [u8] {
    let in_set = |b: &u8| set.contains(b);
    let mut a = 0;
    let mut z = s.len();
    if left {
        while a < z && in_set(&s[a]) {
            a += 1;
        }
    }
    if right {
        while z > a && in_set(&s[z - 1]) {
            z -= 1;
        }
    }
    &s[a..z]
}

fn go_space(s: &[u8]) -> &[u8] {
    let t = st(s);
    let trimmed = t.trim();
    // Unicode trimming on valid text; otherwise ASCII whitespace only.
    if std::str::from_utf8(s).is_ok() {
        let start = t.len() - t.trim_start().len();
        return &s[start..start + trimmed.len()];
    }
    trim_set(s, b" \t\n\r\x0b\x0c", true, true)
}

fn json_b(
    v: &Value,
    escape_html: bool,
    indent: Option<usize>,
    o: &mut Vec<u8>,
    depth: usize,
) -> Result<(), FuncError> {
    if depth > 200 {
        return Err("json: nesting too deep".into());
    }
    let nl = |o: &mut Vec<u8>, d: usize| {
        if let Some(w) = indent {
            o.push(b'\n');
            o.extend(std::iter::repeat_n(b' ', w * d));
        }
    };
    match v {
        Value::Nil => o.extend_from_slice(b"null"),
        Value::Bool(b) => o.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => o.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) => {
            if !f.is_finite() {
                return Err("json: unsupported value: NaN or Inf".into());
            }
            o.extend_from_slice(json_float(*f).as_bytes());
        }
        Value::Str(s) => json_str(s, escape_html, o),
        Value::Time(t) => json_str(
            format_time(*t, "2006-01-02T15:04:05.999999999Z07:00").as_bytes(),
            escape_html,
            o,
        ),
        Value::List(l) => {
            o.push(b'[');
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                nl(o, depth + 1);
                json_b(x, escape_html, indent, o, depth + 1)?;
            }
            if !l.is_empty() {
                nl(o, depth);
            }
            o.push(b']');
        }
        Value::Map(m) => {
            o.push(b'{');
            for (i, (k, x)) in m.entries.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                nl(o, depth + 1);
                json_str(k, escape_html, o);
                o.push(b':');
                if indent.is_some() {
                    o.push(b' ');
                }
                json_b(x, escape_html, indent, o, depth + 1)?;
            }
            if !m.entries.is_empty() {
                nl(o, depth);
            }
            o.push(b'}');
        }
    }
    Ok(())
}

fn json_float(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let (sg, d) = match e.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', e),
        };
        format!("{m}e{sg}{d}")
    } else {
        let (neg, digits, exp) = crate::template::value::shortest_digits(f);
        let body = crate::template::value::place_point(&digits, exp);
        format!("{}{body}", if neg { "-" } else { "" })
    }
}

fn json_str(s: &[u8], escape_html: bool, o: &mut Vec<u8>) {
    o.push(b'"');
    let mut i = 0;
    while i < s.len() {
        let (ch, n) = gofmt::decode_rune(&s[i..]);
        match ch {
            None => o.extend_from_slice(b"\\ufffd"),
            Some('"') => o.extend_from_slice(b"\\\""),
            Some('\\') => o.extend_from_slice(b"\\\\"),
            Some('\n') => o.extend_from_slice(b"\\n"),
            Some('\r') => o.extend_from_slice(b"\\r"),
            Some('\t') => o.extend_from_slice(b"\\t"),
            Some('\x08') => o.extend_from_slice(b"\\b"),
            Some('\x0c') => o.extend_from_slice(b"\\f"),
            Some(c) if (c as u32) < 0x20 => {
                o.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            Some(c @ ('<' | '>' | '&')) if escape_html => {
                o.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            Some(c @ ('\u{2028}' | '\u{2029}')) => {
                o.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            Some(_) => o.extend_from_slice(&s[i..i + n]),
        }
        i += n.max(1);
    }
    o.push(b'"');
}

fn to_json(cx: &Cx, v: &Value, html: bool, indent: Option<usize>) -> R {
    let mut o = Vec::new();
    json_b(v, html, indent, &mut o, 0)?;
    out(cx, o)
}

fn from_json_bytes(b: &[u8]) -> Result<Value, FuncError> {
    let j: serde_json::Value =
        serde_json::from_slice(b).map_err(|_| FuncError::from("invalid JSON"))?;
    Ok(Value::from_json(&j))
}

// ---- YAML as sigs.k8s.io/yaml writes it (go-yaml v2 block style) ----

fn yaml_needs_quotes(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    let lower = s.to_ascii_lowercase();
    const RESERVED: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".inf", "-.inf", "+.inf",
        ".nan",
    ];
    if RESERVED.contains(&lower.as_str()) || s.parse::<f64>().is_ok() || parse_go_int(s).is_some() {
        return true;
    }
    let first = s.as_bytes()[0];
    if b"-?:,[]{}#&*!|>'\"%@` ".contains(&first)
        && !(first == b'-' && s.len() > 1 && s.as_bytes()[1] != b' ' && first != b' ')
    {
        return true;
    }
    s.ends_with(' ')
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.chars().any(|c| c.is_control() || matches!(c, '\u{feff}'))
}

fn yaml_scalar(s: &[u8], indent: usize, o: &mut String) {
    let t = st(s);
    if t.contains('\n')
        && !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
        && !t.starts_with(' ')
    {
        o.push_str(if t.ends_with('\n') { "|" } else { "|-" });
        // Block lines sit at the value's indentation (at least 2).
        let pad = " ".repeat(indent.max(2));
        let body = t.strip_suffix('\n').unwrap_or(&t);
        for line in body.split('\n') {
            o.push('\n');
            if !line.is_empty() {
                o.push_str(&pad);
                o.push_str(line);
            }
        }
        return;
    }
    if !yaml_needs_quotes(&t) {
        o.push_str(&t);
    } else if !t.chars().any(|c| c.is_control()) {
        o.push('\'');
        o.push_str(&t.replace('\'', "''"));
        o.push('\'');
    } else {
        o.push_str(&st(&gofmt::quote(s)));
    }
}

fn yaml_val(v: &Value, indent: usize, o: &mut String, depth: usize) -> Result<(), FuncError> {
    if depth > 200 {
        return Err("yaml: nesting too deep".into());
    }
    match v {
        Value::Nil => o.push_str("null"),
        Value::Bool(b) => o.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => o.push_str(&i.to_string()),
        Value::Float(f) => {
            // JSON round trip: integral floats come back as ints.
            if f.fract() == 0.0 && f.abs() < 1e21 {
                o.push_str(&format!("{}", *f as i128));
            } else {
                o.push_str(&json_float(*f));
            }
        }
        Value::Str(s) => yaml_scalar(s, indent, o),
        Value::Time(t) => yaml_scalar(
            format_time(*t, "2006-01-02T15:04:05.999999999Z07:00").as_bytes(),
            indent,
            o,
        ),
        Value::List(l) if l.is_empty() => o.push_str("[]"),
        Value::Map(m) if m.entries.is_empty() => o.push_str("{}"),
        Value::List(l) => {
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    o.push('\n');
                    o.push_str(&" ".repeat(indent));
                }
                o.push_str("- ");
                yaml_val(x, indent + 2, o, depth + 1)?;
            }
        }
        Value::Map(m) => {
            for (i, (k, x)) in m.entries.iter().enumerate() {
                if i > 0 {
                    o.push('\n');
                    o.push_str(&" ".repeat(indent));
                }
                yaml_scalar(k, indent, o);
                o.push(':');
                match x {
                    Value::Map(n) if !n.entries.is_empty() => {
                        o.push('\n');
                        o.push_str(&" ".repeat(indent + 2));
                        yaml_val(x, indent + 2, o, depth + 1)?;
                    }
                    Value::List(n) if !n.is_empty() => {
                        o.push('\n');
                        o.push_str(&" ".repeat(indent));
                        yaml_val(x, indent, o, depth + 1)?;
                    }
                    _ => {
                        o.push(' ');
                        yaml_val(x, indent + 2, o, depth + 1)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn yaml_to_value(y: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(y).map_err(|_| "yaml: invalid UTF-8".to_string())?;
    let j: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|_| "error converting YAML to JSON".to_string())?;
    Ok(Value::from_json(&j))
}

// ---- dates ----

fn parse_rfc3339(s: &str) -> Option<Time> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        let st = i + 1;
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = &s[st..i];
        let padded = format!("{:0<9}", &frac[..frac.len().min(9)]);
        nanos = padded.parse().ok()?;
    }
    let off = match &s[i..] {
        "Z" | "z" => 0,
        z if z.len() == 6 => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            sign * (z[1..3].parse::<i64>().ok()? * 3600 + z[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let secs = days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se - off;
    Some(Time {
        unix_nanos: secs as i128 * 1_000_000_000 + nanos as i128,
    })
}

fn time_arg(v: &Value) -> Option<Time> {
    match v {
        Value::Time(t) => Some(*t),
        Value::Int(i) => Some(Time {
            unix_nanos: *i as i128 * 1_000_000_000,
        }),
        Value::Float(f) => Some(Time {
            unix_nanos: (*f as i128) * 1_000_000_000,
        }),
        _ => None,
    }
}

fn date_fmt(cx: &Cx, a: &[Value], zone: bool) -> R {
    arity(a, if zone { 3 } else { 2 })?;
    let layout = st(s(a, 0)?).into_owned();
    if zone {
        let z = s(a, 2)?;
        if z != b"UTC" && z != b"Etc/UTC" && !z.is_empty() {
            return Err("only the UTC time zone is available".into());
        }
    }
    let t = time_arg(&a[1]).unwrap_or(cx.now);
    out(cx, format_time(t, &layout).into_bytes())
}

fn bcrypt_hash(pw: &[u8]) -> Result<String, FuncError> {
    bcrypt::hash(pw, bcrypt::DEFAULT_COST).map_err(|_| FuncError::from("bcrypt failed"))
}

fn path_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let j = parts.join("/");
    match (rooted, j.is_empty()) {
        (true, _) => format!("/{j}"),
        (false, true) => ".".into(),
        _ => j,
    }
}

fn path_base(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

fn path_dir(p: &str) -> String {
    let dir = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    path_clean(dir)
}

fn path_ext(p: &str) -> String {
    for (i, c) in p.char_indices().rev() {
        if c == '/' {
            break;
        }
        if c == '.' {
            return p[i..].to_string();
        }
    }
    String::new()
}

fn merge_into(dst: &mut BTreeMap<Vec<u8>, Value>, src: &Map, overwrite: bool, depth: usize) {
    for (k, v) in &src.entries {
        match (dst.get_mut(k), v) {
            (Some(Value::Map(d)), Value::Map(sm)) if depth < 100 => {
                let mut inner = d.entries.clone();
                merge_into(&mut inner, sm, overwrite, depth + 1);
                *d = Arc::new(Map {
                    entries: inner,
                    string_values: false,
                });
            }
            (Some(existing), _) => {
                if overwrite || is_empty(existing) {
                    *existing = v.clone();
                }
            }
            (None, _) => {
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

fn seq_list(cx: &Cx, start: i64, stop: i64, step: i64) -> Result<Vec<Value>, FuncError> {
    if step == 0 {
        return Ok(Vec::new());
    }
    let n = if step > 0 {
        if stop <= start {
            0
        } else {
            ((stop as i128 - start as i128 + step as i128 - 1) / step as i128) as u128
        }
    } else if stop >= start {
        0
    } else {
        ((start as i128 - stop as i128 + (-step) as i128 - 1) / (-step) as i128) as u128
    };
    cx.room_items(usize::try_from(n).unwrap_or(usize::MAX))?;
    let mut v = Vec::with_capacity(n as usize);
    let mut x = start as i128;
    for _ in 0..n {
        v.push(Value::Int(x as i64));
        x += step as i128;
    }
    Ok(v)
}

fn num_fold(a: &[Value], f: fn(f64, f64) -> f64, init: Option<f64>) -> R {
    let mut it = a.iter().map(to_f64);
    let first = match init {
        Some(i) => i,
        None => it.next().unwrap_or(0.0),
    };
    Ok(Value::Float(it.fold(first, f)))
}

fn adler32(b: &[u8]) -> u32 {
    let (mut x, mut y) = (1u32, 0u32);
    for chunk in b.chunks(5552) {
        for &c in chunk {
            x += c as u32;
            y += x;
        }
        x %= 65521;
        y %= 65521;
    }
    (y << 16) | x
}

fn hex_lower(b: &[u8]) -> Vec<u8> {
    b.iter()
        .flat_map(|x| format!("{x:02x}").into_bytes())
        .collect()
}

fn b32enc(b: &[u8]) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut o = Vec::new();
    for chunk in b.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let n = u64::from_be_bytes([0, 0, 0, buf[0], buf[1], buf[2], buf[3], buf[4]]);
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < chars {
                o.push(A[((n >> (35 - 5 * i)) & 31) as usize]);
            } else {
                o.push(b'=');
            }
        }
    }
    o
}

fn b32dec(b: &[u8]) -> Option<Vec<u8>> {
    if !b.len().is_multiple_of(8) {
        return None;
    }
    let mut o = Vec::new();
    for chunk in b.chunks(8) {
        let mut n: u64 = 0;
        let mut valid = 0;
        for &c in chunk {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'2'..=b'7' => c - b'2' + 26,
                b'=' => {
                    n <<= 5;
                    continue;
                }
                _ => return None,
            };
            n = (n << 5) | v as u64;
            valid += 1;
        }
        let bytes = match valid {
            8 => 5,
            7 => 4,
            5 => 3,
            4 => 2,
            2 => 1,
            _ => return None,
        };
        o.extend_from_slice(&n.to_be_bytes()[3..3 + bytes]);
    }
    Some(o)
}

fn wrap_text(s: &str, width: usize, sep: &str) -> String {
    // commons-lang WordUtils.wrap as sprig's util.Wrap: break at spaces.
    let width = width.max(1);
    let mut outp = String::new();
    for (li, line) in s.split('\n').enumerate() {
        if li > 0 {
            outp.push('\n');
        }
        let mut cur = 0;
        for (wi, w) in line.split(' ').filter(|w| !w.is_empty()).enumerate() {
            let wl = w.chars().count();
            if wi > 0 {
                if cur + 1 + wl > width {
                    outp.push_str(sep);
                    cur = 0;
                } else {
                    outp.push(' ');
                    cur += 1;
                }
            }
            outp.push_str(w);
            cur += wl;
        }
    }
    outp
}

pub(super) fn functions() -> Vec<(&'static str, Func)> {
    let mut v: Vec<(&'static str, Func)> = vec![
        ("hello", |_, a| {
            arity(a, 0)?;
            Ok(Value::str("Hello!"))
        }),
        // strings
        ("trim", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(go_space(s(a, 0)?)))
        }),
        ("trimAll", |_, a| {
            arity(a, 2)?;
            Ok(Value::str(trim_set(s(a, 1)?, s(a, 0)?, true, true)))
        }),
        ("trimPrefix", |_, a| {
            arity(a, 2)?;
            let (p, x) = (s(a, 0)?, s(a, 1)?);
            Ok(Value::str(x.strip_prefix(p).unwrap_or(x)))
        }),
        ("trimSuffix", |_, a| {
            arity(a, 2)?;
            let (p, x) = (s(a, 0)?, s(a, 1)?);
            Ok(Value::str(x.strip_suffix(p).unwrap_or(x)))
        }),
        ("upper", |_, a| {
            arity(a, 1)?;
            let b = s(a, 0)?;
            Ok(if b.is_ascii() {
                Value::str(b.to_ascii_uppercase())
            } else {
                Value::str(st(b).to_uppercase())
            })
        }),
        ("lower", |_, a| {
            arity(a, 1)?;
            let b = s(a, 0)?;
            Ok(if b.is_ascii() {
                Value::str(b.to_ascii_lowercase())
            } else {
                Value::str(st(b).to_lowercase())
            })
        }),
        ("title", |_, a| {
            arity(a, 1)?;
            let mut o = String::new();
            let mut prev_letter = false;
            for c in st(s(a, 0)?).chars() {
                let letter = c.is_alphanumeric() || c == '_' || c == '\'';
                if letter && !prev_letter {
                    o.extend(c.to_uppercase());
                } else {
                    o.push(c);
                }
                prev_letter = letter;
            }
            Ok(Value::str(o))
        }),
        ("untitle", |_, a| {
            arity(a, 1)?;
            let mut o = String::new();
            let mut prev_space = true;
            for c in st(s(a, 0)?).chars() {
                if prev_space && c.is_uppercase() {
                    o.extend(c.to_lowercase());
                } else {
                    o.push(c);
                }
                prev_space = c.is_whitespace();
            }
            Ok(Value::str(o))
        }),
        ("substr", |_, a| {
            arity(a, 3)?;
            let (start, end, x) = (int(a, 0)?, int(a, 1)?, s(a, 2)?);
            let len = x.len() as i64;
            let r = if start < 0 {
                &x[..end.clamp(0, len) as usize]
            } else if end < 0 || end > len {
                &x[start.min(len) as usize..]
            } else if start > end {
                return Ok(Value::str(""));
            } else {
                &x[start as usize..end as usize]
            };
            Ok(Value::str(r))
        }),
        ("repeat", |cx, a| {
            arity(a, 2)?;
            let (n, x) = (int(a, 0)?, s(a, 1)?);
            if n < 0 {
                return Err("negative Repeat count".into());
            }
            cx.room((n as usize).saturating_mul(x.len()))?;
            Ok(bytes_val(x.repeat(n as usize)))
        }),
        ("nospace", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(
                st(s(a, 0)?)
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect::<String>(),
            ))
        }),
        ("initials", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(
                st(s(a, 0)?)
                    .split_whitespace()
                    .filter_map(|w| w.chars().next())
                    .collect::<String>(),
            ))
        }),
        ("abbrev", |_, a| {
            arity(a, 2)?;
            let (w, x) = (int(a, 0)?, st(s(a, 1)?).into_owned());
            let n = x.chars().count() as i64;
            if w < 4 || n <= w {
                return Ok(Value::str(x));
            }
            Ok(Value::str(format!(
                "{}...",
                x.chars().take((w - 3) as usize).collect::<String>()
            )))
        }),
        ("abbrevboth", |_, a| {
            arity(a, 3)?;
            let (l, w, x) = (int(a, 0)?, int(a, 1)?, st(s(a, 2)?).into_owned());
            let chars: Vec<char> = x.chars().collect();
            let n = chars.len() as i64;
            if w < 4 || n <= w {
                return Ok(Value::str(x));
            }
            let l = l.clamp(0, n);
            if l <= 4 {
                return Ok(Value::str(format!(
                    "{}...",
                    chars.iter().take((w - 3) as usize).collect::<String>()
                )));
            }
            if w < 7 {
                return Ok(Value::str(x));
            }
            let start = if l + w - 3 < n { l } else { n - (w - 3) };
            let rest: String = chars[start as usize..].iter().collect();
            let rc: Vec<char> = rest.chars().collect();
            if (rc.len() as i64) > w - 3 {
                let mid: String = rc.iter().take((w - 6) as usize).collect();
                Ok(Value::str(format!("...{mid}...")))
            } else {
                Ok(Value::str(format!("...{rest}")))
            }
        }),
        ("trunc", |_, a| {
            arity(a, 2)?;
            let (c, x) = (int(a, 0)?, s(a, 1)?);
            let len = x.len() as i64;
            Ok(Value::str(if c < 0 && len + c > 0 {
                &x[(len + c) as usize..]
            } else if c >= 0 && len > c {
                &x[..c as usize]
            } else {
                x
            }))
        }),
        ("snakecase", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(
                words(&st(s(a, 0)?))
                    .iter()
                    .map(|w| w.to_lowercase())
                    .collect::<Vec<_>>()
                    .join("_"),
            ))
        }),
        ("kebabcase", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(
                words(&st(s(a, 0)?))
                    .iter()
                    .map(|w| w.to_lowercase())
                    .collect::<Vec<_>>()
                    .join("-"),
            ))
        }),
        ("camelcase", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(
                words(&st(s(a, 0)?))
                    .iter()
                    .map(|w| cap_first(w))
                    .collect::<String>(),
            ))
        }),
        ("swapcase", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(
                st(s(a, 0)?)
                    .chars()
                    .flat_map(|c| -> Vec<char> {
                        if c.is_uppercase() {
                            c.to_lowercase().collect()
                        } else {
                            c.to_uppercase().collect()
                        }
                    })
                    .collect::<String>(),
            ))
        }),
        ("wrap", |cx, a| {
            arity(a, 2)?;
            let o = wrap_text(&st(s(a, 1)?), int(a, 0)?.max(1) as usize, "\n");
            out(cx, o.into_bytes())
        }),
        ("wrapWith", |cx, a| {
            arity(a, 3)?;
            let sep = st(s(a, 1)?).into_owned();
            let o = wrap_text(&st(s(a, 2)?), int(a, 0)?.max(1) as usize, &sep);
            out(cx, o.into_bytes())
        }),
        ("contains", |_, a| {
            arity(a, 2)?;
            let (n, h) = (s(a, 0)?, s(a, 1)?);
            Ok(Value::Bool(
                n.is_empty() || h.windows(n.len()).any(|w| w == n),
            ))
        }),
        ("hasPrefix", |_, a| {
            arity(a, 2)?;
            Ok(Value::Bool(s(a, 1)?.starts_with(s(a, 0)?)))
        }),
        ("hasSuffix", |_, a| {
            arity(a, 2)?;
            Ok(Value::Bool(s(a, 1)?.ends_with(s(a, 0)?)))
        }),
        ("quote", |cx, a| {
            let parts: Vec<Vec<u8>> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| gofmt::quote(&strval(v)))
                .collect();
            out(cx, parts.join(&b' '))
        }),
        ("squote", |cx, a| {
            let parts: Vec<Vec<u8>> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(|v| [b"'".as_slice(), &strval(v), b"'"].concat())
                .collect();
            out(cx, parts.join(&b' '))
        }),
        ("cat", |cx, a| {
            let parts: Vec<Vec<u8>> = a
                .iter()
                .filter(|v| !matches!(v, Value::Nil))
                .map(strval)
                .collect();
            out(cx, parts.join(&b' '))
        }),
        ("indent", |cx, a| {
            arity(a, 2)?;
            indent_lines(cx, int(a, 0)?, s(a, 1)?, false)
        }),
        ("nindent", |cx, a| {
            arity(a, 2)?;
            indent_lines(cx, int(a, 0)?, s(a, 1)?, true)
        }),
        ("replace", |cx, a| {
            arity(a, 3)?;
            let (f, t, x) = (s(a, 0)?, s(a, 1)?, s(a, 2)?);
            if !f.is_empty() {
                let count = x.windows(f.len()).filter(|w| *w == f).count();
                cx.room(x.len().saturating_add(count.saturating_mul(t.len())))?;
            } else {
                cx.room(
                    x.len()
                        .saturating_add((x.len() + 1).saturating_mul(t.len())),
                )?;
            }
            Ok(bytes_val(replace_all(x, f, t)))
        }),
        ("plural", |_, a| {
            arity(a, 3)?;
            let n = int(a, 2)?;
            Ok(Value::str(if n == 1 { s(a, 0)? } else { s(a, 1)? }))
        }),
        ("toString", |_, a| {
            arity(a, 1)?;
            Ok(bytes_val(strval(&a[0])))
        }),
        ("toStrings", |_, a| {
            arity(a, 1)?;
            Ok(match &a[0] {
                Value::List(l) => lst(l
                    .iter()
                    .map(|v| {
                        if matches!(v, Value::Nil) {
                            Value::str("")
                        } else {
                            bytes_val(strval(v))
                        }
                    })
                    .collect()),
                other => lst(vec![bytes_val(strval(other))]),
            })
        }),
        ("atoi", |_, a| {
            arity(a, 1)?;
            Ok(Value::Int(st(s(a, 0)?).parse::<i64>().unwrap_or(0)))
        }),
        ("int", |_, a| {
            arity(a, 1)?;
            Ok(Value::Int(to_i64(&a[0])))
        }),
        ("float64", |_, a| {
            arity(a, 1)?;
            Ok(Value::Float(to_f64(&a[0])))
        }),
        ("toDecimal", |_, a| {
            arity(a, 1)?;
            Ok(Value::Int(
                i64::from_str_radix(&st(&strval(&a[0])), 8).unwrap_or(0),
            ))
        }),
        ("split", |_, a| {
            arity(a, 2)?;
            let parts = split_bytes(s(a, 1)?, s(a, 0)?, None);
            let m = parts
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("_{i}").into_bytes(), Value::str(p)))
                .collect();
            Ok(Value::map(m))
        }),
        ("splitList", |_, a| {
            arity(a, 2)?;
            Ok(strs(
                split_bytes(s(a, 1)?, s(a, 0)?, None)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
            ))
        }),
        ("splitn", |_, a| {
            arity(a, 3)?;
            let n = int(a, 1)?;
            let parts = if n == 0 {
                Vec::new()
            } else {
                split_bytes(s(a, 2)?, s(a, 0)?, usize::try_from(n).ok())
            };
            let m = parts
                .iter()
                .enumerate()
                .map(|(i, p)| (format!("_{i}").into_bytes(), Value::str(p)))
                .collect();
            Ok(Value::map(m))
        }),
        ("join", |cx, a| {
            arity(a, 2)?;
            let sep = s(a, 0)?;
            let parts: Vec<Vec<u8>> = match &a[1] {
                Value::List(l) => l
                    .iter()
                    .filter(|v| !matches!(v, Value::Nil))
                    .map(strval)
                    .collect(),
                other => vec![strval(other)],
            };
            out(cx, parts.join(sep))
        }),
        ("sortAlpha", |_, a| {
            arity(a, 1)?;
            let mut v: Vec<Vec<u8>> = match &a[0] {
                Value::List(l) => l.iter().map(strval).collect(),
                other => vec![strval(other)],
            };
            v.sort();
            Ok(strs(v))
        }),
        // regex
        ("regexMatch", |_, a| {
            arity(a, 2)?;
            Ok(Value::Bool(regex(s(a, 0)?)?.is_match(s(a, 1)?)))
        }),
        ("regexFind", |_, a| {
            arity(a, 2)?;
            Ok(Value::str(
                regex(s(a, 0)?)?
                    .find(s(a, 1)?)
                    .map_or(&b""[..], |m| m.as_bytes()),
            ))
        }),
        ("regexFindAll", |cx, a| {
            arity(a, 3)?;
            let re = regex(s(a, 0)?)?;
            let n = int(a, 2)?;
            let lim = if n < 0 { usize::MAX } else { n as usize };
            let v: Vec<Value> = re
                .find_iter(s(a, 1)?)
                .take(lim)
                .map(|m| Value::str(m.as_bytes()))
                .collect();
            cx.room_items(v.len())?;
            Ok(lst(v))
        }),
        ("regexReplaceAll", |cx, a| {
            arity(a, 3)?;
            let re = regex(s(a, 0)?)?;
            let o = re.replace_all(s(a, 1)?, s(a, 2)?).into_owned();
            out(cx, o)
        }),
        ("regexReplaceAllLiteral", |cx, a| {
            arity(a, 3)?;
            let re = regex(s(a, 0)?)?;
            let o = re
                .replace_all(s(a, 1)?, regex::bytes::NoExpand(s(a, 2)?))
                .into_owned();
            out(cx, o)
        }),
        ("regexSplit", |cx, a| {
            arity(a, 3)?;
            let re = regex(s(a, 0)?)?;
            let n = int(a, 2)?;
            let x = s(a, 1)?;
            if n == 0 {
                return Ok(lst(Vec::new()));
            }
            let v: Vec<Value> = if n < 0 {
                re.split(x).map(Value::str).collect()
            } else {
                re.splitn(x, n as usize).map(Value::str).collect()
            };
            cx.room_items(v.len())?;
            Ok(lst(v))
        }),
        ("regexQuoteMeta", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(regex::escape(&st(s(a, 0)?))))
        }),
        // encoding
        ("b64enc", |cx, a| {
            arity(a, 1)?;
            out(
                cx,
                base64::engine::general_purpose::STANDARD
                    .encode(s(a, 0)?)
                    .into_bytes(),
            )
        }),
        ("b64dec", |_, a| {
            arity(a, 1)?;
            // sprig returns the decoder's error text as the value.
            Ok(
                match base64::engine::general_purpose::STANDARD.decode(s(a, 0)?) {
                    Ok(b) => bytes_val(b),
                    Err(_) => Value::str("illegal base64 data"),
                },
            )
        }),
        ("b32enc", |cx, a| {
            arity(a, 1)?;
            out(cx, b32enc(s(a, 0)?))
        }),
        ("b32dec", |_, a| {
            arity(a, 1)?;
            Ok(match b32dec(s(a, 0)?) {
                Some(b) => bytes_val(b),
                None => Value::str("illegal base32 data"),
            })
        }),
        ("hexdec", |_, a| {
            arity(a, 1)?;
            let x = s(a, 0)?;
            if x.len() % 2 != 0 {
                return Err("encoding/hex: odd length hex string".into());
            }
            let mut o = Vec::with_capacity(x.len() / 2);
            for p in x.chunks(2) {
                let h = std::str::from_utf8(p)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                o.push(h.ok_or_else(|| FuncError::from("encoding/hex: invalid byte"))?);
            }
            Ok(bytes_val(o))
        }),
        ("toJson", |cx, a| {
            arity(a, 1)?;
            to_json(cx, &a[0], true, None).or_else(|e| {
                if matches!(e, FuncError::Limit(_)) {
                    Err(e)
                } else {
                    Ok(Value::str(""))
                }
            })
        }),
        ("mustToJson", |cx, a| {
            arity(a, 1)?;
            to_json(cx, &a[0], true, None)
        }),
        ("toPrettyJson", |cx, a| {
            arity(a, 1)?;
            to_json(cx, &a[0], true, Some(2)).or_else(|e| {
                if matches!(e, FuncError::Limit(_)) {
                    Err(e)
                } else {
                    Ok(Value::str(""))
                }
            })
        }),
        ("mustToPrettyJson", |cx, a| {
            arity(a, 1)?;
            to_json(cx, &a[0], true, Some(2))
        }),
        ("toRawJson", |cx, a| {
            arity(a, 1)?;
            to_json(cx, &a[0], false, None).or_else(|e| {
                if matches!(e, FuncError::Limit(_)) {
                    Err(e)
                } else {
                    Ok(Value::str(""))
                }
            })
        }),
        ("mustToRawJson", |cx, a| {
            arity(a, 1)?;
            to_json(cx, &a[0], false, None)
        }),
        ("fromJson", |_, a| {
            arity(a, 1)?;
            Ok(from_json_bytes(s(a, 0)?).unwrap_or(Value::Nil))
        }),
        ("mustFromJson", |_, a| {
            arity(a, 1)?;
            from_json_bytes(s(a, 0)?)
        }),
        ("toYaml", |cx, a| {
            arity(a, 1)?;
            let mut o = String::new();
            match yaml_val(&a[0], 0, &mut o, 0) {
                Ok(()) => out(cx, o.into_bytes()),
                Err(_) => Ok(Value::str("")),
            }
        }),
        ("fromYaml", |_, a| {
            arity(a, 1)?;
            Ok(match yaml_to_value(s(a, 0)?) {
                Ok(v @ Value::Map(_)) => v,
                Ok(Value::Nil) => Value::map(BTreeMap::new()),
                Ok(_) => Value::map(BTreeMap::from([(
                    b"Error".to_vec(),
                    Value::str("error unmarshaling JSON: cannot unmarshal into map"),
                )])),
                Err(e) => Value::map(BTreeMap::from([(b"Error".to_vec(), Value::str(e))])),
            })
        }),
        // hashes
        ("sha1sum", |_, a| {
            arity(a, 1)?;
            use sha1::Digest as _;
            Ok(bytes_val(hex_lower(&sha1::Sha1::digest(s(a, 0)?))))
        }),
        ("sha256sum", |_, a| {
            arity(a, 1)?;
            use sha2::Digest as _;
            Ok(bytes_val(hex_lower(&sha2::Sha256::digest(s(a, 0)?))))
        }),
        ("sha512sum", |_, a| {
            arity(a, 1)?;
            use sha2::Digest as _;
            Ok(bytes_val(hex_lower(&sha2::Sha512::digest(s(a, 0)?))))
        }),
        ("adler32sum", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(adler32(s(a, 0)?).to_string()))
        }),
        // defaults and flow
        ("default", |_, a| {
            arity_min(a, 1)?;
            let d = &a[0];
            Ok(match a.get(1) {
                Some(v) if !is_empty(v) => v.clone(),
                _ => d.clone(),
            })
        }),
        ("empty", |_, a| {
            arity(a, 1)?;
            Ok(Value::Bool(is_empty(&a[0])))
        }),
        ("coalesce", |_, a| {
            Ok(a.iter()
                .find(|v| !is_empty(v))
                .cloned()
                .unwrap_or(Value::Nil))
        }),
        ("all", |_, a| {
            Ok(Value::Bool(a.iter().all(|v| !is_empty(v))))
        }),
        ("any", |_, a| {
            Ok(Value::Bool(a.iter().any(|v| !is_empty(v))))
        }),
        ("ternary", |_, a| {
            arity(a, 3)?;
            let c = match &a[2] {
                Value::Bool(b) => *b,
                other => return Err(wrong("bool", other)),
            };
            Ok(if c { a[0].clone() } else { a[1].clone() })
        }),
        ("deepCopy", |_, a| {
            arity(a, 1)?;
            Ok(a[0].clone())
        }),
        ("required", |_, a| {
            arity(a, 2)?;
            let msg = st(s(a, 0)?).into_owned();
            match &a[1] {
                Value::Nil => Err(FuncError::Fail(msg)),
                Value::Str(x) if x.is_empty() => Err(FuncError::Fail(msg)),
                v => Ok(v.clone()),
            }
        }),
        ("fail", |_, a| {
            arity(a, 1)?;
            Err(FuncError::Fail(st(s(a, 0)?).into_owned()))
        }),
        // reflection
        ("typeOf", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(a[0].type_name()))
        }),
        ("typeIs", |_, a| {
            arity(a, 2)?;
            Ok(Value::Bool(s(a, 0)? == a[1].type_name().as_bytes()))
        }),
        ("typeIsLike", |_, a| {
            arity(a, 2)?;
            let t = a[1].type_name().as_bytes();
            let want = s(a, 0)?;
            Ok(Value::Bool(
                want == t || want == [b"*".as_slice(), t].concat(),
            ))
        }),
        ("kindOf", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(a[0].kind_name()))
        }),
        ("kindIs", |_, a| {
            arity(a, 2)?;
            Ok(Value::Bool(s(a, 0)? == a[1].kind_name().as_bytes()))
        }),
        ("deepEqual", |_, a| {
            arity(a, 2)?;
            Ok(Value::Bool(deep_eq(&a[0], &a[1])))
        }),
        // paths
        ("base", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(path_base(&st(s(a, 0)?))))
        }),
        ("dir", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(path_dir(&st(s(a, 0)?))))
        }),
        ("clean", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(path_clean(&st(s(a, 0)?))))
        }),
        ("ext", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(path_ext(&st(s(a, 0)?))))
        }),
        ("isAbs", |_, a| {
            arity(a, 1)?;
            Ok(Value::Bool(s(a, 0)?.starts_with(b"/")))
        }),
        // lists
        ("list", |cx, a| {
            cx.room_items(a.len())?;
            Ok(lst(a.to_vec()))
        }),
        ("append", |cx, a| {
            arity(a, 2)?;
            let mut l = list_of(&a[0])?.to_vec();
            cx.room_items(l.len() + 1)?;
            l.push(a[1].clone());
            Ok(lst(l))
        }),
        ("prepend", |cx, a| {
            arity(a, 2)?;
            let l = list_of(&a[0])?;
            cx.room_items(l.len() + 1)?;
            let mut n = vec![a[1].clone()];
            n.extend(l.iter().cloned());
            Ok(lst(n))
        }),
        ("first", |_, a| {
            arity(a, 1)?;
            Ok(list_of(&a[0])?.first().cloned().unwrap_or(Value::Nil))
        }),
        ("last", |_, a| {
            arity(a, 1)?;
            Ok(list_of(&a[0])?.last().cloned().unwrap_or(Value::Nil))
        }),
        ("rest", |_, a| {
            arity(a, 1)?;
            let l = list_of(&a[0])?;
            Ok(if l.is_empty() {
                Value::Nil
            } else {
                lst(l[1..].to_vec())
            })
        }),
        ("initial", |_, a| {
            arity(a, 1)?;
            let l = list_of(&a[0])?;
            Ok(if l.is_empty() {
                Value::Nil
            } else {
                lst(l[..l.len() - 1].to_vec())
            })
        }),
        ("reverse", |_, a| {
            arity(a, 1)?;
            let mut l = list_of(&a[0])?.to_vec();
            l.reverse();
            Ok(lst(l))
        }),
        ("uniq", |_, a| {
            arity(a, 1)?;
            let mut o: Vec<Value> = Vec::new();
            for v in list_of(&a[0])?.iter() {
                if !o.iter().any(|x| deep_eq(x, v)) {
                    o.push(v.clone());
                }
            }
            Ok(lst(o))
        }),
        ("without", |_, a| {
            arity_min(a, 1)?;
            let l = list_of(&a[0])?;
            Ok(lst(l
                .iter()
                .filter(|v| !a[1..].iter().any(|x| deep_eq(x, v)))
                .cloned()
                .collect()))
        }),
        ("has", |_, a| {
            arity(a, 2)?;
            let l = list_of(&a[1])?;
            Ok(Value::Bool(l.iter().any(|v| deep_eq(v, &a[0]))))
        }),
        ("compact", |_, a| {
            arity(a, 1)?;
            Ok(lst(list_of(&a[0])?
                .iter()
                .filter(|v| !is_empty(v))
                .cloned()
                .collect()))
        }),
        ("slice", |_, a| {
            arity_min(a, 1)?;
            let l = list_of(&a[0])?;
            let len = l.len() as i64;
            let from = if a.len() > 1 { int(a, 1)? } else { 0 };
            let to = if a.len() > 2 { int(a, 2)? } else { len };
            if from < 0 || to > len || from > to {
                return Err("slice bounds out of range".into());
            }
            Ok(lst(l[from as usize..to as usize].to_vec()))
        }),
        ("concat", |cx, a| {
            let mut o = Vec::new();
            for v in a {
                let l = list_of(v)?;
                cx.room_items(o.len() + l.len())?;
                o.extend(l.iter().cloned());
            }
            Ok(lst(o))
        }),
        ("chunk", |cx, a| {
            arity(a, 2)?;
            let n = int(a, 0)?;
            if n <= 0 {
                return Err("chunk size must be positive".into());
            }
            let l = list_of(&a[1])?;
            cx.room_items(l.len() * 2)?;
            Ok(lst(l.chunks(n as usize).map(|c| lst(c.to_vec())).collect()))
        }),
        ("until", |cx, a| {
            arity(a, 1)?;
            let n = int(a, 0)?;
            Ok(lst(seq_list(cx, 0, n, if n < 0 { -1 } else { 1 })?))
        }),
        ("untilStep", |cx, a| {
            arity(a, 3)?;
            Ok(lst(seq_list(cx, int(a, 0)?, int(a, 1)?, int(a, 2)?)?))
        }),
        ("seq", |cx, a| {
            let p: Vec<i64> = a.iter().map(to_i64).collect();
            let v = match p.as_slice() {
                [] => return Ok(Value::str("")),
                [end] => seq_list(
                    cx,
                    1,
                    end + if *end >= 1 { 1 } else { -1 },
                    if *end >= 1 { 1 } else { -1 },
                )?,
                [start, end] => {
                    let step = if end >= start { 1 } else { -1 };
                    seq_list(cx, *start, end + step, step)?
                }
                [start, step, end] => {
                    if (*end > *start && *step <= 0) || (*end < *start && *step >= 0) || *step == 0
                    {
                        return Ok(Value::str(""));
                    }
                    seq_list(cx, *start, end + step.signum(), *step)?
                }
                _ => return Err("seq: too many arguments".into()),
            };
            let parts: Vec<Vec<u8>> = v.iter().map(strval).collect();
            out(cx, parts.join(&b' '))
        }),
        // dicts
        ("dict", |cx, a| {
            cx.room_items(a.len())?;
            let mut m = BTreeMap::new();
            for pair in a.chunks(2) {
                let k = strval(&pair[0]);
                m.insert(k, pair.get(1).cloned().unwrap_or(Value::str("")));
            }
            Ok(Value::map(m))
        }),
        ("get", |_, a| {
            arity(a, 2)?;
            Ok(map_of(&a[0])?
                .entries
                .get(s(a, 1)?)
                .cloned()
                .unwrap_or(Value::str("")))
        }),
        ("set", |cx, a| {
            arity(a, 3)?;
            let m = map_of(&a[0])?;
            cx.room_items(m.entries.len() + 1)?;
            let mut e = m.entries.clone();
            e.insert(s(a, 1)?.to_vec(), a[2].clone());
            Ok(Value::map(e))
        }),
        ("unset", |_, a| {
            arity(a, 2)?;
            let mut e = map_of(&a[0])?.entries.clone();
            e.remove(s(a, 1)?);
            Ok(Value::map(e))
        }),
        ("hasKey", |_, a| {
            arity(a, 2)?;
            Ok(Value::Bool(map_of(&a[0])?.entries.contains_key(s(a, 1)?)))
        }),
        ("pluck", |_, a| {
            arity_min(a, 1)?;
            let k = s(a, 0)?;
            let mut o = Vec::new();
            for m in &a[1..] {
                if let Some(v) = map_of(m)?.entries.get(k) {
                    o.push(v.clone());
                }
            }
            Ok(lst(o))
        }),
        ("keys", |_, a| {
            let mut o = Vec::new();
            for m in a {
                o.extend(map_of(m)?.entries.keys().map(Value::str));
            }
            Ok(lst(o))
        }),
        ("values", |_, a| {
            arity(a, 1)?;
            Ok(lst(map_of(&a[0])?.entries.values().cloned().collect()))
        }),
        ("pick", |_, a| {
            arity_min(a, 1)?;
            let m = map_of(&a[0])?;
            let mut e = BTreeMap::new();
            for k in &a[1..] {
                let k = strval(k);
                if let Some(v) = m.entries.get(&k) {
                    e.insert(k, v.clone());
                }
            }
            Ok(Value::map(e))
        }),
        ("omit", |_, a| {
            arity_min(a, 1)?;
            let m = map_of(&a[0])?;
            let drop: Vec<Vec<u8>> = a[1..].iter().map(strval).collect();
            Ok(Value::map(
                m.entries
                    .iter()
                    .filter(|(k, _)| !drop.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
        }),
        ("merge", |_, a| {
            arity_min(a, 1)?;
            let mut e = map_of(&a[0])?.entries.clone();
            for m in &a[1..] {
                merge_into(&mut e, map_of(m)?, false, 0);
            }
            Ok(Value::map(e))
        }),
        ("mergeOverwrite", |_, a| {
            arity_min(a, 1)?;
            let mut e = map_of(&a[0])?.entries.clone();
            for m in &a[1..] {
                merge_into(&mut e, map_of(m)?, true, 0);
            }
            Ok(Value::map(e))
        }),
        ("dig", |_, a| {
            arity_min(a, 3)?;
            let n = a.len();
            let mut cur = a[n - 1].clone();
            for k in &a[..n - 2] {
                let key = s(std::slice::from_ref(k), 0)?;
                let next = match &cur {
                    Value::Map(m) => m.entries.get(key).cloned(),
                    _ => None,
                };
                match next {
                    Some(v) => cur = v,
                    None => return Ok(a[n - 2].clone()),
                }
            }
            Ok(cur)
        }),
        // math
        ("add", |_, a| {
            Ok(Value::Int(
                a.iter().map(to_i64).fold(0i64, i64::wrapping_add),
            ))
        }),
        ("add1", |_, a| {
            arity(a, 1)?;
            Ok(Value::Int(to_i64(&a[0]).wrapping_add(1)))
        }),
        ("sub", |_, a| {
            arity(a, 2)?;
            Ok(Value::Int(to_i64(&a[0]).wrapping_sub(to_i64(&a[1]))))
        }),
        ("mul", |_, a| {
            arity_min(a, 1)?;
            Ok(Value::Int(
                a.iter().map(to_i64).fold(1i64, i64::wrapping_mul),
            ))
        }),
        ("div", |_, a| {
            arity(a, 2)?;
            let d = to_i64(&a[1]);
            if d == 0 {
                return Err("runtime error: integer divide by zero".into());
            }
            Ok(Value::Int(to_i64(&a[0]).wrapping_div(d)))
        }),
        ("mod", |_, a| {
            arity(a, 2)?;
            let d = to_i64(&a[1]);
            if d == 0 {
                return Err("runtime error: integer divide by zero".into());
            }
            Ok(Value::Int(to_i64(&a[0]).wrapping_rem(d)))
        }),
        ("max", |_, a| {
            arity_min(a, 1)?;
            Ok(Value::Int(a.iter().map(to_i64).max().unwrap_or(0)))
        }),
        ("min", |_, a| {
            arity_min(a, 1)?;
            Ok(Value::Int(a.iter().map(to_i64).min().unwrap_or(0)))
        }),
        ("maxf", |_, a| num_fold(a, f64::max, None)),
        ("minf", |_, a| num_fold(a, f64::min, None)),
        ("addf", |_, a| num_fold(a, |x, y| x + y, Some(0.0))),
        ("add1f", |_, a| {
            arity(a, 1)?;
            Ok(Value::Float(to_f64(&a[0]) + 1.0))
        }),
        ("subf", |_, a| num_fold(a, |x, y| x - y, None)),
        ("mulf", |_, a| num_fold(a, |x, y| x * y, None)),
        ("divf", |_, a| num_fold(a, |x, y| x / y, None)),
        ("floor", |_, a| {
            arity(a, 1)?;
            Ok(Value::Float(to_f64(&a[0]).floor()))
        }),
        ("ceil", |_, a| {
            arity(a, 1)?;
            Ok(Value::Float(to_f64(&a[0]).ceil()))
        }),
        ("round", |_, a| {
            arity_min(a, 2)?;
            let p = to_i64(&a[1]).clamp(-300, 300) as i32;
            let f = to_f64(&a[0]);
            let pow = 10f64.powi(p);
            Ok(Value::Float((f * pow).round() / pow))
        }),
        ("randInt", |_, a| {
            arity(a, 2)?;
            let (lo, hi) = (to_i64(&a[0]), to_i64(&a[1]));
            if hi <= lo {
                return Err("invalid argument to Intn".into());
            }
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|_| FuncError::from("no randomness available"))?;
            let span = (hi as i128 - lo as i128) as u128;
            Ok(Value::Int(
                (lo as i128 + (u64::from_le_bytes(b) as u128 % span) as i128) as i64,
            ))
        }),
        // random strings, uuid
        ("randAlphaNum", |cx, a| {
            arity(a, 1)?;
            random_from(cx, int(a, 0)?, ALNUM)
        }),
        ("randAlpha", |cx, a| {
            arity(a, 1)?;
            random_from(cx, int(a, 0)?, ALPHA)
        }),
        ("randNumeric", |cx, a| {
            arity(a, 1)?;
            random_from(cx, int(a, 0)?, NUM)
        }),
        ("randAscii", |cx, a| {
            arity(a, 1)?;
            let printable: Vec<u8> = (32u8..127).collect();
            random_from(cx, int(a, 0)?, &printable)
        }),
        ("uuidv4", |_, a| {
            arity(a, 0)?;
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).map_err(|_| FuncError::from("no randomness available"))?;
            b[6] = (b[6] & 0x0f) | 0x40;
            b[8] = (b[8] & 0x3f) | 0x80;
            let h = hex_lower(&b);
            let h = st(&h).into_owned();
            Ok(Value::str(format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )))
        }),
        // crypto
        ("bcrypt", |_, a| {
            arity(a, 1)?;
            Ok(Value::str(bcrypt_hash(s(a, 0)?)?))
        }),
        ("htpasswd", |_, a| {
            if a.len() != 2 && a.len() != 3 {
                return Err(format!("wrong number of args: want 2 or 3 got {}", a.len()).into());
            }
            let (user, pw) = (s(a, 0)?, s(a, 1)?);
            if user.contains(&b':') {
                return Ok(Value::str("invalid username"));
            }
            let kind = if a.len() == 3 {
                s(a, 2)?.to_vec()
            } else {
                b"bcrypt".to_vec()
            };
            let hash = match kind.as_slice() {
                b"sha" => {
                    use sha1::Digest as _;
                    format!(
                        "{{SHA}}{}",
                        base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(pw))
                    )
                }
                _ => bcrypt_hash(pw)?,
            };
            Ok(bytes_val([user, b":", hash.as_bytes()].concat()))
        }),
        // dates (UTC only: no time zone database here)
        ("now", |cx, a| {
            arity(a, 0)?;
            Ok(Value::Time(cx.now))
        }),
        ("date", |cx, a| date_fmt(cx, a, false)),
        ("dateInZone", |cx, a| date_fmt(cx, a, true)),
        ("htmlDate", |cx, a| {
            arity(a, 1)?;
            date_fmt(cx, &[Value::str("2006-01-02"), a[0].clone()], false)
        }),
        ("htmlDateInZone", |cx, a| {
            arity(a, 2)?;
            date_fmt(
                cx,
                &[Value::str("2006-01-02"), a[0].clone(), a[1].clone()],
                true,
            )
        }),
        ("unixEpoch", |_, a| {
            arity(a, 1)?;
            match &a[0] {
                Value::Time(t) => Ok(Value::str(
                    t.unix_nanos.div_euclid(1_000_000_000).to_string(),
                )),
                other => Err(wrong("time.Time", other)),
            }
        }),
        ("mustToDate", |_, a| {
            arity(a, 2)?;
            let layout = s(a, 0)?;
            if layout != b"2006-01-02T15:04:05Z07:00"
                && layout != b"2006-01-02T15:04:05.999999999Z07:00"
            {
                return Err("toDate: only RFC 3339 layouts are supported".into());
            }
            parse_rfc3339(&st(s(a, 1)?))
                .map(Value::Time)
                .ok_or_else(|| FuncError::from("cannot parse date"))
        }),
    ];
    // Aliases sprig keeps for the same functions.
    let alias = |v: &Vec<(&'static str, Func)>, from: &str| {
        v.iter().find(|(n, _)| *n == from).map(|(_, f)| *f)
    };
    for (new, old) in [
        ("trimall", "trimAll"),
        ("tuple", "list"),
        ("push", "append"),
        ("mustAppend", "append"),
        ("mustPush", "append"),
        ("mustPrepend", "prepend"),
        ("mustFirst", "first"),
        ("mustLast", "last"),
        ("mustRest", "rest"),
        ("mustInitial", "initial"),
        ("mustReverse", "reverse"),
        ("mustUniq", "uniq"),
        ("mustWithout", "without"),
        ("mustHas", "has"),
        ("mustSlice", "slice"),
        ("mustCompact", "compact"),
        ("mustChunk", "chunk"),
        ("mustDeepCopy", "deepCopy"),
        ("mustMerge", "merge"),
        ("mustMergeOverwrite", "mergeOverwrite"),
        ("biggest", "max"),
        ("int64", "int"),
        ("date_in_zone", "dateInZone"),
        ("osBase", "base"),
        ("osDir", "dir"),
        ("osClean", "clean"),
        ("osExt", "ext"),
        ("osIsAbs", "isAbs"),
        ("mustRegexMatch", "regexMatch"),
        ("mustRegexFind", "regexFind"),
        ("mustRegexFindAll", "regexFindAll"),
        ("mustRegexReplaceAll", "regexReplaceAll"),
        ("mustRegexReplaceAllLiteral", "regexReplaceAllLiteral"),
        ("mustRegexSplit", "regexSplit"),
    ] {
        if let Some(f) = alias(&v, old) {
            v.push((new, f));
        }
    }
    v.push(("toDate", |cx, a| {
        let _ = cx;
        arity(a, 2)?;
        let layout = s(a, 0)?;
        if layout != b"2006-01-02T15:04:05Z07:00"
            && layout != b"2006-01-02T15:04:05.999999999Z07:00"
        {
            return Err("toDate: only RFC 3339 layouts are supported".into());
        }
        Ok(parse_rfc3339(&st(s(a, 1)?))
            .map(Value::Time)
            .unwrap_or(Value::Time(Time {
                unix_nanos: -62_135_596_800_000_000_000,
            })))
    }));
    v
}
