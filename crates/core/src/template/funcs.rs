//! The function table: Go's builtins, the sprig functions ESO exposes, and
//! ESO's own. More can be registered with [`FuncTable::insert`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Limits;
use super::value::{Map, Time, Value, format_float_g};

mod certs;
mod gofmt;
mod sprig;

pub use gofmt::format_time_default;

/// A template function: arguments in, value out. `Cx` carries the bounds a
/// function that allocates must respect.
pub type Func = fn(&Cx, &[Value]) -> Result<Value, FuncError>;

/// Why a function failed. Messages must not contain data values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FuncError {
    /// A plain error (wrong type, bad input).
    Msg(String),
    /// `fail`/`required`: the template's own message, shown only when it is a
    /// literal in the template.
    Fail(String),
    /// A bound was reached.
    Limit(String),
}

impl From<String> for FuncError {
    fn from(s: String) -> Self {
        FuncError::Msg(s)
    }
}

impl From<&str> for FuncError {
    fn from(s: &str) -> Self {
        FuncError::Msg(s.to_string())
    }
}

/// What a function may use: bounds and the clock.
#[derive(Clone, Debug)]
pub struct Cx {
    pub max_value_bytes: usize,
    /// Allocation budget left for this execution.
    pub alloc_left: usize,
    pub now: Time,
}

impl Cx {
    pub fn new(l: &Limits) -> Cx {
        let now = l.now.unwrap_or_else(|| {
            let d = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Time {
                unix_nanos: d.as_nanos() as i128,
            }
        });
        Cx {
            max_value_bytes: l.max_value_bytes,
            alloc_left: l.max_alloc_bytes,
            now,
        }
    }

    /// Refuses before building a value of `n` bytes that would break a bound.
    pub fn room(&self, n: usize) -> Result<(), FuncError> {
        if n > self.max_value_bytes || n > self.alloc_left {
            return Err(FuncError::Limit(format!(
                "result of {n} bytes exceeds the limit of {} bytes",
                self.max_value_bytes.min(self.alloc_left)
            )));
        }
        Ok(())
    }

    /// The same for a list of `n` items.
    pub fn room_items(&self, n: usize) -> Result<(), FuncError> {
        self.room(n.saturating_mul(std::mem::size_of::<Value>()))
    }
}

/// A function found at parse time.
#[derive(Clone, Copy)]
pub struct Resolved {
    pub name: &'static str,
    pub f: Func,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Functions by name.
#[derive(Clone)]
pub struct FuncTable {
    map: BTreeMap<&'static str, Func>,
}

impl FuncTable {
    /// No functions at all.
    pub fn empty() -> FuncTable {
        FuncTable {
            map: BTreeMap::new(),
        }
    }

    /// What ESO's v2 engine offers, as far as implemented here.
    pub fn eso() -> FuncTable {
        let mut t = FuncTable::empty();
        for (n, f) in builtins() {
            t.insert(n, f);
        }
        for (n, f) in sprig::functions() {
            t.insert(n, f);
        }
        for (n, f) in certs::functions() {
            t.insert(n, f);
        }
        t
    }

    pub fn insert(&mut self, name: &'static str, f: Func) {
        self.map.insert(name, f);
    }

    pub fn remove(&mut self, name: &str) {
        self.map.remove(name);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.map.keys().copied()
    }

    pub(super) fn resolve(&self, name: &str) -> Result<Resolved, String> {
        match self.map.get_key_value(name) {
            Some((n, f)) => Ok(Resolved { name: n, f: *f }),
            None if ESO_NAMES.contains(&name) => Err(format!("function {name:?} is not supported")),
            None => Err(format!("function {name:?} not defined")),
        }
    }
}

/// Every function name ESO v2.9.0's engine knows (sprig v3.3.1 minus env,
/// expandenv, getHostByName, plus ESO's), so that one missing here is
/// reported as unsupported rather than unknown.
pub const ESO_NAMES: &[&str] = &[
    "hello",
    "ago",
    "date",
    "date_in_zone",
    "date_modify",
    "dateInZone",
    "dateModify",
    "duration",
    "durationRound",
    "htmlDate",
    "htmlDateInZone",
    "must_date_modify",
    "mustDateModify",
    "mustToDate",
    "now",
    "toDate",
    "unixEpoch",
    "abbrev",
    "abbrevboth",
    "trunc",
    "trim",
    "upper",
    "lower",
    "title",
    "untitle",
    "substr",
    "repeat",
    "trimall",
    "trimAll",
    "trimSuffix",
    "trimPrefix",
    "nospace",
    "initials",
    "randAlphaNum",
    "randAlpha",
    "randAscii",
    "randNumeric",
    "swapcase",
    "shuffle",
    "snakecase",
    "camelcase",
    "kebabcase",
    "wrap",
    "wrapWith",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "quote",
    "squote",
    "cat",
    "indent",
    "nindent",
    "replace",
    "plural",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "adler32sum",
    "toString",
    "atoi",
    "int64",
    "int",
    "float64",
    "seq",
    "toDecimal",
    "split",
    "splitList",
    "splitn",
    "toStrings",
    "until",
    "untilStep",
    "add1",
    "add",
    "sub",
    "div",
    "mod",
    "mul",
    "randInt",
    "add1f",
    "addf",
    "subf",
    "divf",
    "mulf",
    "biggest",
    "max",
    "min",
    "maxf",
    "minf",
    "ceil",
    "floor",
    "round",
    "join",
    "sortAlpha",
    "default",
    "empty",
    "coalesce",
    "all",
    "any",
    "compact",
    "mustCompact",
    "fromJson",
    "toJson",
    "toPrettyJson",
    "toRawJson",
    "mustFromJson",
    "mustToJson",
    "mustToPrettyJson",
    "mustToRawJson",
    "ternary",
    "deepCopy",
    "mustDeepCopy",
    "typeOf",
    "typeIs",
    "typeIsLike",
    "kindOf",
    "kindIs",
    "deepEqual",
    "base",
    "dir",
    "clean",
    "ext",
    "isAbs",
    "osBase",
    "osClean",
    "osDir",
    "osExt",
    "osIsAbs",
    "b64enc",
    "b64dec",
    "b32enc",
    "b32dec",
    "hexdec",
    "tuple",
    "list",
    "dict",
    "get",
    "set",
    "unset",
    "hasKey",
    "pluck",
    "keys",
    "pick",
    "omit",
    "merge",
    "mergeOverwrite",
    "mustMerge",
    "mustMergeOverwrite",
    "values",
    "append",
    "push",
    "mustAppend",
    "mustPush",
    "prepend",
    "mustPrepend",
    "first",
    "mustFirst",
    "rest",
    "mustRest",
    "last",
    "mustLast",
    "initial",
    "mustInitial",
    "reverse",
    "mustReverse",
    "uniq",
    "mustUniq",
    "without",
    "mustWithout",
    "has",
    "mustHas",
    "slice",
    "mustSlice",
    "concat",
    "dig",
    "chunk",
    "mustChunk",
    "bcrypt",
    "htpasswd",
    "genPrivateKey",
    "derivePassword",
    "buildCustomCert",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "encryptAES",
    "decryptAES",
    "randBytes",
    "uuidv4",
    "semver",
    "semverCompare",
    "fail",
    "required",
    "regexMatch",
    "mustRegexMatch",
    "regexFindAll",
    "mustRegexFindAll",
    "regexFind",
    "mustRegexFind",
    "regexReplaceAll",
    "mustRegexReplaceAll",
    "regexReplaceAllLiteral",
    "mustRegexReplaceAllLiteral",
    "regexSplit",
    "mustRegexSplit",
    "regexQuoteMeta",
    "urlParse",
    "urlJoin",
    "pkcs12key",
    "pkcs12keyPass",
    "pkcs12cert",
    "pkcs12certPass",
    "pemToPkcs12",
    "pemToPkcs12Pass",
    "fullPemToPkcs12",
    "fullPemToPkcs12Pass",
    "pemTruststoreToPKCS12",
    "pemTruststoreToPKCS12Pass",
    "filterPEM",
    "filterCertChain",
    "certSANs",
    "jwkPublicKeyPem",
    "jwkPrivateKeyPem",
    "toYaml",
    "fromYaml",
    "rsaDecrypt",
    "call",
];

// ---- argument helpers, shared with sprig.rs ----

pub(crate) fn arity(a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() != n {
        return Err(format!("wrong number of args: want {n} got {}", a.len()).into());
    }
    Ok(())
}

pub(crate) fn arity_min(a: &[Value], n: usize) -> Result<(), FuncError> {
    if a.len() < n {
        return Err(format!("wrong number of args: want at least {n} got {}", a.len()).into());
    }
    Ok(())
}

pub(crate) fn wrong(expected: &str, got: &Value) -> FuncError {
    FuncError::Msg(format!(
        "wrong type for value; expected {expected}; got {}",
        got.type_name()
    ))
}

/// A `string` parameter: only a string is accepted, as Go does.
pub(crate) fn s(a: &[Value], i: usize) -> Result<&[u8], FuncError> {
    match a.get(i) {
        Some(Value::Str(b)) => Ok(b),
        Some(v) => Err(wrong("string", v)),
        None => Err("missing argument".into()),
    }
}

/// An `int` parameter.
pub(crate) fn int(a: &[Value], i: usize) -> Result<i64, FuncError> {
    match a.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        Some(Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        Some(v) => Err(wrong("int", v)),
        None => Err("missing argument".into()),
    }
}

/// sprig's `strval`: a string as is, anything else as `%v` prints it.
pub(crate) fn strval(v: &Value) -> Vec<u8> {
    match v {
        Value::Str(b) => b.to_vec(),
        other => other.to_go_string(),
    }
}

/// spf13/cast `ToInt64`: lenient, 0 when it cannot convert.
pub(crate) fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Float(f) => {
            if f.is_nan() {
                0
            } else {
                *f as i64
            }
        }
        Value::Bool(b) => *b as i64,
        Value::Str(b) => {
            let s = String::from_utf8_lossy(b);
            let s = trim_zero_decimal(&s);
            parse_go_int(s).unwrap_or(0)
        }
        _ => 0,
    }
}

fn trim_zero_decimal(s: &str) -> &str {
    match s.split_once('.') {
        Some((i, f)) if !i.is_empty() && !f.is_empty() && f.bytes().all(|b| b == b'0') => i,
        _ => s,
    }
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(crate) fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if lower.starts_with("0x") {
        (16, &body[2..])
    } else if lower.starts_with("0o") {
        (8, &body[2..])
    } else if lower.starts_with("0b") {
        (2, &body[2..])
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    let digits = digits.replace('_', "");
    let v = i128::from_str_radix(&digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// spf13/cast `ToFloat64`.
pub(crate) fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Bool(b) => *b as i64 as f64,
        Value::Str(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|f| f.is_finite())
            .unwrap_or(0.0),
        _ => 0.0,
    }
}

pub(crate) fn bytes_val(b: Vec<u8>) -> Value {
    Value::Str(Arc::from(b))
}

// ---- Go's builtins ----

fn builtins() -> Vec<(&'static str, Func)> {
    vec![
        ("and", |_, a| {
            arity_min(a, 1)?;
            Ok(a.iter()
                .find(|v| !v.truthy())
                .unwrap_or(&a[a.len() - 1])
                .clone())
        }),
        ("or", |_, a| {
            arity_min(a, 1)?;
            Ok(a.iter()
                .find(|v| v.truthy())
                .unwrap_or(&a[a.len() - 1])
                .clone())
        }),
        ("not", |_, a| {
            arity(a, 1)?;
            Ok(Value::Bool(!a[0].truthy()))
        }),
        ("len", |_, a| {
            arity(a, 1)?;
            Ok(Value::Int(match &a[0] {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::Map(m) => m.entries.len(),
                v => return Err(format!("len of type {}", v.type_name()).into()),
            } as i64))
        }),
        ("index", index),
        ("print", |cx, a| {
            let out = gofmt::sprint(a, false);
            cx.room(out.len())?;
            Ok(bytes_val(out))
        }),
        ("println", |cx, a| {
            let out = gofmt::sprint(a, true);
            cx.room(out.len())?;
            Ok(bytes_val(out))
        }),
        ("printf", |cx, a| {
            arity_min(a, 1)?;
            let out = gofmt::sprintf(cx, s(a, 0)?, &a[1..])?;
            Ok(bytes_val(out))
        }),
        ("eq", |_, a| {
            arity_min(a, 2)?;
            for b in &a[1..] {
                if compare(&a[0], b)? == Some(std::cmp::Ordering::Equal) {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }),
        ("ne", |_, a| {
            arity(a, 2)?;
            Ok(Value::Bool(
                compare(&a[0], &a[1])? != Some(std::cmp::Ordering::Equal),
            ))
        }),
        ("lt", |_, a| ordered(a, |o| o.is_lt())),
        ("le", |_, a| ordered(a, |o| o.is_le())),
        ("gt", |_, a| ordered(a, |o| o.is_gt())),
        ("ge", |_, a| ordered(a, |o| o.is_ge())),
        ("html", |cx, a| {
            let s = gofmt::sprint(a, false);
            let mut out = Vec::with_capacity(s.len());
            for b in s {
                match b {
                    b'<' => out.extend_from_slice(b"&lt;"),
                    b'>' => out.extend_from_slice(b"&gt;"),
                    b'&' => out.extend_from_slice(b"&amp;"),
                    b'\'' => out.extend_from_slice(b"&#39;"),
                    b'"' => out.extend_from_slice(b"&#34;"),
                    0 => out.extend_from_slice("\u{FFFD}".as_bytes()),
                    b => out.push(b),
                }
            }
            cx.room(out.len())?;
            Ok(bytes_val(out))
        }),
        ("js", |cx, a| {
            let s = gofmt::sprint(a, false);
            let mut out = Vec::with_capacity(s.len());
            for ch in String::from_utf8_lossy(&s).chars() {
                match ch {
                    '\\' => out.extend_from_slice(b"\\\\"),
                    '\'' => out.extend_from_slice(b"\\'"),
                    '"' => out.extend_from_slice(b"\\\""),
                    '<' => out.extend_from_slice(b"\\u003C"),
                    '>' => out.extend_from_slice(b"\\u003E"),
                    '&' => out.extend_from_slice(b"\\u0026"),
                    '=' => out.extend_from_slice(b"\\u003D"),
                    '\n' => out.extend_from_slice(b"\\n"),
                    '\r' => out.extend_from_slice(b"\\r"),
                    '\t' => out.extend_from_slice(b"\\t"),
                    c if (c as u32) < 0x20 => {
                        out.extend_from_slice(format!("\\u{:04X}", c as u32).as_bytes())
                    }
                    c => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            cx.room(out.len())?;
            Ok(bytes_val(out))
        }),
        ("urlquery", |cx, a| {
            let s = gofmt::sprint(a, false);
            let out = query_escape(&s);
            cx.room(out.len())?;
            Ok(bytes_val(out))
        }),
    ]
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
    out
}

fn index(_: &Cx, a: &[Value]) -> Result<Value, FuncError> {
    arity_min(a, 1)?;
    let mut v = a[0].clone();
    for k in &a[1..] {
        v = match (&v, k) {
            (Value::List(l), _) => {
                let i = index_of(k, l.len())?;
                l[i].clone()
            }
            (Value::Str(s), _) => {
                let i = index_of(k, s.len())?;
                Value::Int(s[i] as i64)
            }
            (Value::Map(m), Value::Str(key)) => match m.entries.get(&key[..]) {
                Some(x) => x.clone(),
                None => zero_of(m),
            },
            (Value::Map(_), other) => {
                return Err(
                    format!("value has type {}; should be string", other.type_name()).into(),
                );
            }
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (other, _) => {
                return Err(format!("can't index item of type {}", other.type_name()).into());
            }
        };
    }
    Ok(v)
}

pub(crate) fn zero_of(m: &Map) -> Value {
    if m.string_values {
        Value::str("")
    } else {
        Value::Nil
    }
}

fn index_of(k: &Value, len: usize) -> Result<usize, FuncError> {
    let i = match k {
        Value::Int(i) => *i,
        other => {
            return Err(format!("cannot index slice/array with type {}", other.type_name()).into());
        }
    };
    if i < 0 || i as u64 >= len as u64 {
        return Err(format!("index out of range: {i}").into());
    }
    Ok(i as usize)
}

fn ordered(a: &[Value], ok: fn(std::cmp::Ordering) -> bool) -> Result<Value, FuncError> {
    arity(a, 2)?;
    match compare(&a[0], &a[1])? {
        Some(o) => Ok(Value::Bool(ok(o))),
        None => Err(format!("invalid type for comparison: {}", a[0].type_name()).into()),
    }
}

/// Go's template comparison: basic kinds only, ints and floats do not mix.
/// `None` when only equality is defined (bools, nil).
fn compare(x: &Value, y: &Value) -> Result<Option<std::cmp::Ordering>, FuncError> {
    use Value::*;
    let eq = |b: bool| {
        Some(if b {
            std::cmp::Ordering::Equal
        } else {
            std::cmp::Ordering::Less
        })
    };
    Ok(match (x, y) {
        (Int(a), Int(b)) => Some(a.cmp(b)),
        (Float(a), Float(b)) => a.partial_cmp(b),
        (Str(a), Str(b)) => Some(a.cmp(b)),
        (Bool(a), Bool(b)) => eq(a == b),
        (Nil, Nil) => eq(true),
        (Nil, _) | (_, Nil) => eq(false),
        (List(_) | Map(_), _) | (_, List(_) | Map(_)) => {
            return Err("non-comparable type".into());
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

// Keeps format_float_g reachable from gofmt without a long path.
pub(crate) fn fmt_g(f: f64) -> String {
    format_float_g(f)
}
