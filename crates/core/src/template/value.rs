//! The dynamic value a template works on. Strings are byte strings, as in Go,
//! so binary secret values pass through unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A template value. Containers are shared (`Arc`) so that `.`, `$` and
/// range variables are cheap to copy however large the data is.
#[derive(Clone, Default)]
pub enum Value {
    /// Go's nil interface: printed as `<no value>`.
    #[default]
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A Go string: any bytes.
    Str(Arc<[u8]>),
    List(Arc<Vec<Value>>),
    Map(Arc<Map>),
    /// A point in time (UTC), from `now`, `toDate`, `unixEpoch`...
    Time(Time),
}

/// A Go map with string keys, iterated in key order as text/template does.
#[derive(Clone, Default)]
pub struct Map {
    pub entries: BTreeMap<Vec<u8>, Value>,
    /// Go's `map[string]string` (the secret data ESO passes): a missing key
    /// reads as "" rather than `<no value>`.
    pub string_values: bool,
}

/// Nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time {
    pub unix_nanos: i128,
}

// No Debug of contents: values are secret material.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({})", self.type_name())
    }
}

impl Value {
    pub fn str(b: impl AsRef<[u8]>) -> Value {
        Value::Str(Arc::from(b.as_ref()))
    }

    pub fn list(v: Vec<Value>) -> Value {
        Value::List(Arc::new(v))
    }

    pub fn map(entries: BTreeMap<Vec<u8>, Value>) -> Value {
        Value::Map(Arc::new(Map {
            entries,
            string_values: false,
        }))
    }

    /// The data ESO hands to a template: each secret key maps to its value as
    /// a Go string (`map[string]string`).
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Value {
        let entries = data
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), Value::str(v)))
            .collect();
        Value::Map(Arc::new(Map {
            entries,
            string_values: true,
        }))
    }

    /// JSON as Go's encoding/json decodes it into `interface{}`: numbers are
    /// float64.
    pub fn from_json(j: &serde_json::Value) -> Value {
        match j {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Value::str(s),
            serde_json::Value::Array(a) => Value::list(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::map(
                o.iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Go's `%T`, as used in error messages and sprig's `typeOf`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(m) if m.string_values => "map[string]string",
            Value::Map(_) => "map[string]interface {}",
            Value::Time(_) => "time.Time",
        }
    }

    /// Go's reflect Kind name, for sprig's `kindOf`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Nil => "invalid",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
            Value::Time(_) => "struct",
        }
    }

    /// text/template's notion of truth.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.entries.is_empty(),
            Value::Time(_) => true,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Bytes this value newly holds at its top level: what a function that
    /// returns it allocated, for the allocation budget.
    pub fn shallow_size(&self) -> usize {
        const SLOT: usize = std::mem::size_of::<Value>();
        match self {
            Value::Str(s) => s.len(),
            Value::List(l) => l.len() * SLOT,
            Value::Map(m) => m.entries.keys().map(|k| k.len() + SLOT + 16).sum(),
            _ => 0,
        }
    }

    /// Go's `fmt.Sprint(v)` (`%v`), appended to `out`.
    pub fn write_go(&self, out: &mut Vec<u8>) {
        self.write_go_inner(out, true);
    }

    fn write_go_inner(&self, out: &mut Vec<u8>, top: bool) {
        match self {
            Value::Nil if top => out.extend_from_slice(b"<no value>"),
            Value::Nil => out.extend_from_slice(b"<nil>"),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Value::Float(f) => out.extend_from_slice(format_float_g(*f).as_bytes()),
            Value::Str(s) => out.extend_from_slice(s),
            Value::List(l) => {
                out.push(b'[');
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    v.write_go_inner(out, false);
                }
                out.push(b']');
            }
            Value::Map(m) => {
                out.extend_from_slice(b"map[");
                for (i, (k, v)) in m.entries.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    out.extend_from_slice(k);
                    out.push(b':');
                    v.write_go_inner(out, false);
                }
                out.push(b']');
            }
            Value::Time(t) => {
                out.extend_from_slice(super::funcs::format_time_default(*t).as_bytes())
            }
        }
    }

    /// `fmt.Sprint(v)` as bytes; nil is `<nil>` as sprig's `toString` gives.
    pub fn to_go_string(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_go_inner(&mut out, false);
        out
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` as fmt's `%v` uses it:
/// shortest digits, exponent form below 1e-4 and from 1e6 (`1e+06`).
pub fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let (neg, digits, exp) = shortest_digits(f);
    // exp: position of the decimal point relative to the digits (dp - 1 in Go).
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let mut s = String::from(sign);
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            s.push('0');
        }
        s.push_str(&e.to_string());
        s
    } else {
        format!("{sign}{}", place_point(&digits, exp))
    }
}

/// The shortest round-trip decimal digits of |f| and the exponent of the first.
pub fn shortest_digits(f: f64) -> (bool, String, i32) {
    // Rust's `{:e}` gives the shortest round-trip digits, as Go's does.
    let s = format!("{:e}", f.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    (f < 0.0, digits, exp.parse().unwrap_or(0))
}

pub fn place_point(digits: &str, exp: i32) -> String {
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("0.{zeros}{digits}")
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    }
}
