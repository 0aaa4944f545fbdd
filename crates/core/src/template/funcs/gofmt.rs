//! Go's fmt as templates use it: Sprint, Sprintln, Sprintf and `%q`.

use super::{Cx, FuncError, fmt_g};
use crate::template::value::{Time, Value, place_point, shortest_digits};

/// `fmt.Sprint` / `fmt.Sprintln`.
pub fn sprint(a: &[Value], ln: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in a.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::Str(_));
        if i > 0 && (ln || (!is_str(v) && !is_str(&a[i - 1]))) {
            out.push(b' ');
        }
        out.extend_from_slice(&v.to_go_string());
    }
    if ln {
        out.push(b'\n');
    }
    out
}

/// Go's `strconv.Quote` on bytes (invalid UTF-8 as `\x..`).
pub fn quote(s: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    let mut i = 0;
    while i < s.len() {
        let (ch, n) = decode_rune(&s[i..]);
        match ch {
            None => out.extend_from_slice(format!("\\x{:02x}", s[i]).as_bytes()),
            Some(c) => quote_char(&mut out, c, b'"'),
        }
        i += n;
    }
    out.push(b'"');
    out
}

fn quote_char(out: &mut Vec<u8>, c: char, q: u8) {
    match c {
        '\x07' => out.extend_from_slice(b"\\a"),
        '\x08' => out.extend_from_slice(b"\\b"),
        '\x0c' => out.extend_from_slice(b"\\f"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\t' => out.extend_from_slice(b"\\t"),
        '\x0b' => out.extend_from_slice(b"\\v"),
        '\\' => out.extend_from_slice(b"\\\\"),
        c if c as u32 == q as u32 => {
            out.push(b'\\');
            out.push(q);
        }
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            out.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes())
        }
        c if !c.is_control() && c as u32 != 0xfeff => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        c if (c as u32) < 0x10000 => {
            out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
        }
        c => out.extend_from_slice(format!("\\U{:08x}", c as u32).as_bytes()),
    }
}

/// The first rune of `b` (None when invalid) and its byte length.
pub fn decode_rune(b: &[u8]) -> (Option<char>, usize) {
    let n = match b.first() {
        None => return (None, 0),
        Some(&x) if x < 0x80 => 1,
        Some(&x) if x >> 5 == 0b110 => 2,
        Some(&x) if x >> 4 == 0b1110 => 3,
        Some(&x) if x >> 3 == 0b11110 => 4,
        _ => return (None, 1),
    };
    match b.get(..n).and_then(|s| std::str::from_utf8(s).ok()) {
        Some(s) => (s.chars().next(), n),
        None => (None, 1),
    }
}

struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `fmt.Sprintf` for the verbs templates use: %v %s %d %q %x %X %o %b %c
/// %f %F %e %E %g %G %t %T %%, flags `-+0 #`, width and precision.
pub fn sprintf(cx: &Cx, f: &[u8], args: &[Value]) -> Result<Vec<u8>, FuncError> {
    let mut out = Vec::new();
    let mut ai = 0;
    let mut i = 0;
    while i < f.len() {
        let c = f[i];
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut sp = Spec {
            minus: false,
            plus: false,
            zero: false,
            space: false,
            sharp: false,
            width: None,
            prec: None,
        };
        while let Some(&fl) = f.get(i) {
            match fl {
                b'-' => sp.minus = true,
                b'+' => sp.plus = true,
                b'0' => sp.zero = true,
                b' ' => sp.space = true,
                b'#' => sp.sharp = true,
                _ => break,
            }
            i += 1;
        }
        let num = |i: &mut usize| {
            let st = *i;
            while f.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            std::str::from_utf8(&f[st..*i])
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
        };
        if f.get(i) == Some(&b'*') {
            i += 1;
            sp.width = args.get(ai).and_then(|v| {
                if let Value::Int(n) = v {
                    Some(*n as usize)
                } else {
                    None
                }
            });
            ai += 1;
        } else {
            sp.width = num(&mut i);
        }
        if f.get(i) == Some(&b'.') {
            i += 1;
            if f.get(i) == Some(&b'*') {
                i += 1;
                sp.prec = args.get(ai).and_then(|v| {
                    if let Value::Int(n) = v {
                        Some(*n as usize)
                    } else {
                        None
                    }
                });
                ai += 1;
            } else {
                sp.prec = Some(num(&mut i).unwrap_or(0));
            }
        }
        // Widths are bounded so that `%999999999d` cannot allocate much.
        if sp.width.unwrap_or(0) > cx.max_value_bytes || sp.prec.unwrap_or(0) > cx.max_value_bytes {
            return Err(FuncError::Limit(
                "printf width or precision too large".into(),
            ));
        }
        let (verb, n) = match decode_rune(&f[i..]) {
            (Some(v), n) => (v, n),
            (None, 0) => {
                out.extend_from_slice(b"%!(NOVERB)");
                break;
            }
            (None, n) => ('\u{FFFD}', n),
        };
        i += n;
        if verb == '%' {
            out.push(b'%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            out.extend_from_slice(format!("%!{verb}(MISSING)").as_bytes());
            continue;
        };
        ai += 1;
        let body = format_one(verb, &sp, arg);
        pad(&mut out, &body, &sp, verb, arg);
        cx.room(out.len())?;
    }
    if ai < args.len() {
        out.extend_from_slice(b"%!(EXTRA ");
        for (k, a) in args[ai..].iter().enumerate() {
            if k > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(a.type_name().as_bytes());
            out.push(b'=');
            out.extend_from_slice(&a.to_go_string());
        }
        out.push(b')');
    }
    cx.room(out.len())?;
    Ok(out)
}

fn pad(out: &mut Vec<u8>, body: &[u8], sp: &Spec, verb: char, arg: &Value) {
    let width = sp.width.unwrap_or(0);
    let len = String::from_utf8_lossy(body).chars().count();
    if len >= width {
        out.extend_from_slice(body);
        return;
    }
    let fill = width - len;
    let numeric =
        matches!(arg, Value::Int(_) | Value::Float(_)) && !matches!(verb, 's' | 'q' | 'c' | 'T');
    if sp.minus {
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(b' ', fill));
    } else if sp.zero && numeric {
        let sign = body
            .first()
            .filter(|b| matches!(b, b'-' | b'+' | b' '))
            .is_some();
        if sign {
            out.push(body[0]);
        }
        out.extend(std::iter::repeat_n(b'0', fill));
        out.extend_from_slice(&body[sign as usize..]);
    } else if sp.zero && !numeric && matches!(arg, Value::Str(_)) {
        out.extend(std::iter::repeat_n(b'0', fill));
        out.extend_from_slice(body);
    } else {
        out.extend(std::iter::repeat_n(b' ', fill));
        out.extend_from_slice(body);
    }
}

fn bad(verb: char, v: &Value) -> Vec<u8> {
    let mut o = format!("%!{verb}({}=", v.type_name()).into_bytes();
    o.extend_from_slice(&v.to_go_string());
    o.push(b')');
    o
}

fn sign(sp: &Spec, neg: bool) -> &'static str {
    if neg {
        "-"
    } else if sp.plus {
        "+"
    } else if sp.space {
        " "
    } else {
        ""
    }
}

fn format_one(verb: char, sp: &Spec, v: &Value) -> Vec<u8> {
    if verb == 'T' {
        return v.type_name().as_bytes().to_vec();
    }
    match v {
        Value::List(l) if verb != 'v' => {
            let mut o = vec![b'['];
            for (i, x) in l.iter().enumerate() {
                if i > 0 {
                    o.push(b' ');
                }
                o.extend_from_slice(&format_one(verb, sp, x));
            }
            o.push(b']');
            return o;
        }
        _ => {}
    }
    match (verb, v) {
        ('v', Value::Float(f)) | ('g', Value::Float(f)) if sp.prec.is_none() => {
            let s = fmt_g(*f);
            let s = if sp.plus && *f >= 0.0 {
                format!("+{s}")
            } else {
                s
            };
            s.into_bytes()
        }
        ('v', Value::Int(i)) | ('d', Value::Int(i)) => {
            format!("{}{}", sign(sp, *i < 0), i.unsigned_abs()).into_bytes()
        }
        ('v', Value::Nil) => b"<nil>".to_vec(),
        ('v', _) => v.to_go_string(),
        ('s', Value::Str(s)) => match sp.prec {
            Some(p) => {
                let t = String::from_utf8_lossy(s);
                t.chars().take(p).collect::<String>().into_bytes()
            }
            None => s.to_vec(),
        },
        ('s', Value::Map(_)) => v.to_go_string(),
        ('q', Value::Str(s)) => {
            if sp.sharp && !s.contains(&b'`') && std::str::from_utf8(s).is_ok() {
                let mut o = vec![b'`'];
                o.extend_from_slice(s);
                o.push(b'`');
                o
            } else {
                quote(s)
            }
        }
        ('q', Value::Int(i)) => match char::from_u32(*i as u32) {
            Some(c) => {
                let mut o = vec![b'\''];
                quote_char(&mut o, c, b'\'');
                o.push(b'\'');
                o
            }
            None => b"'\xef\xbf\xbd'".to_vec(),
        },
        ('c', Value::Int(i)) => char::from_u32(*i as u32)
            .unwrap_or('\u{FFFD}')
            .to_string()
            .into_bytes(),
        ('x' | 'X', Value::Str(s)) => {
            let mut o = String::new();
            for (k, b) in s.iter().enumerate() {
                if sp.space && k > 0 {
                    o.push(' ');
                }
                if sp.sharp && (sp.space || k == 0) {
                    o.push_str(if verb == 'x' { "0x" } else { "0X" });
                }
                if verb == 'x' {
                    o.push_str(&format!("{b:02x}"));
                } else {
                    o.push_str(&format!("{b:02X}"));
                }
            }
            o.into_bytes()
        }
        ('x' | 'X' | 'o' | 'b' | 'O', Value::Int(i)) => {
            let a = i.unsigned_abs();
            let digits = match verb {
                'x' => format!("{a:x}"),
                'X' => format!("{a:X}"),
                'o' | 'O' => format!("{a:o}"),
                _ => format!("{a:b}"),
            };
            let prefix = match (verb, sp.sharp) {
                ('x', true) => "0x",
                ('X', true) => "0X",
                ('o', true) => "0",
                ('O', _) => "0o",
                ('b', true) => "0b",
                _ => "",
            };
            format!("{}{prefix}{digits}", sign(sp, *i < 0)).into_bytes()
        }
        ('t', Value::Bool(b)) => b.to_string().into_bytes(),
        ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Value::Float(f)) => {
            float_verb(verb, sp, *f).into_bytes()
        }
        _ => bad(verb, v),
    }
}

fn float_verb(verb: char, sp: &Spec, f: f64) -> String {
    if !f.is_finite() {
        return fmt_g(f);
    }
    let neg = f.is_sign_negative() && f != 0.0;
    let a = f.abs();
    let body = match verb {
        'f' | 'F' => format!("{:.*}", sp.prec.unwrap_or(6), a),
        'e' | 'E' => {
            let s = format!("{:.*e}", sp.prec.unwrap_or(6), a);
            let s = go_exp(&s);
            if verb == 'E' { s.to_uppercase() } else { s }
        }
        _ => {
            // %g with a precision: significant digits.
            let p = sp.prec.unwrap_or(0).max(1);
            let s = format!("{:.*e}", p - 1, a);
            let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
            let e: i32 = e.parse().unwrap_or(0);
            let digits: String = m.chars().filter(|c| c.is_ascii_digit()).collect();
            let digits = digits.trim_end_matches('0');
            let digits = if digits.is_empty() { "0" } else { digits };
            if e < -4 || e >= p as i32 {
                let s = go_exp(&format!(
                    "{}{}{}e{e}",
                    &digits[..1],
                    if digits.len() > 1 { "." } else { "" },
                    &digits[1..]
                ));
                if verb == 'G' { s.to_uppercase() } else { s }
            } else {
                place_point(digits, e)
            }
        }
    };
    let _ = shortest_digits;
    format!("{}{body}", sign(sp, neg))
}

/// Rust's `1.5e3` / `1.5e-7` as Go writes it: `1.5e+03`, `1.5e-07`.
fn go_exp(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sg, d) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sg}{d:0>2}")
        }
        None => s.to_string(),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Go's `time.Time.Format(layout)` for a UTC time: the layout's reference
/// elements (2006 01 02 15 04 05 Jan Mon MST -0700 Z07:00 .000 PM...).
pub fn format_time(t: Time, layout: &str) -> String {
    let secs = t.unix_nanos.div_euclid(1_000_000_000) as i64;
    let nanos = t.unix_nanos.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil(days);
    let (h, mi, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
    let wd = (days + 4).rem_euclid(7) as usize;
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut rest = layout;
    // Longest reference elements first.
    const ELEMS: &[&str] = &[
        "January",
        "Monday",
        "-07:00:00",
        "Z07:00:00",
        "-0700",
        "Z0700",
        "-07:00",
        "Z07:00",
        "2006",
        "Jan",
        "Mon",
        "MST",
        "002",
        "-07",
        "Z07",
        "01",
        "02",
        "_2",
        "03",
        "04",
        "05",
        "06",
        "15",
        "PM",
        "pm",
        "1",
        "2",
        "3",
        "4",
        "5",
    ];
    'outer: while !rest.is_empty() {
        // Fractional seconds: .000 / .999 / ,000.
        if (rest.starts_with(".0")
            || rest.starts_with(".9")
            || rest.starts_with(",0")
            || rest.starts_with(",9"))
            && (out.ends_with(|c: char| c.is_ascii_digit()))
        {
            let digit = rest.as_bytes()[1];
            let n = rest[1..].bytes().take_while(|b| *b == digit).count();
            if !rest[1 + n..].starts_with(|c: char| c.is_ascii_digit()) {
                let frac = format!("{nanos:09}");
                let frac = &frac[..n.min(9)];
                if digit == b'0' {
                    out.push_str(&rest[..1]);
                    out.push_str(frac);
                } else {
                    let trimmed = frac.trim_end_matches('0');
                    if !trimmed.is_empty() {
                        out.push_str(&rest[..1]);
                        out.push_str(trimmed);
                    }
                }
                rest = &rest[1 + n..];
                continue;
            }
        }
        for e in ELEMS {
            if let Some(r) = rest.strip_prefix(e) {
                // "Jan"/"Mon" inside a word like "January" are matched longest first above.
                let v = match *e {
                    "January" => MONTHS[mo as usize - 1].to_string(),
                    "Jan" => MONTHS[mo as usize - 1][..3].to_string(),
                    "Monday" => DAYS[wd].to_string(),
                    "Mon" => DAYS[wd][..3].to_string(),
                    "MST" => "UTC".into(),
                    "2006" => format!("{y:04}"),
                    "06" => format!("{:02}", y.rem_euclid(100)),
                    "01" => format!("{mo:02}"),
                    "1" => mo.to_string(),
                    "02" => format!("{d:02}"),
                    "_2" => format!("{d:>2}"),
                    "2" => d.to_string(),
                    "002" => format!("{yday:03}"),
                    "15" => format!("{h:02}"),
                    "03" => format!("{:02}", if h % 12 == 0 { 12 } else { h % 12 }),
                    "3" => (if h % 12 == 0 { 12 } else { h % 12 }).to_string(),
                    "04" => format!("{mi:02}"),
                    "4" => mi.to_string(),
                    "05" => format!("{s:02}"),
                    "5" => s.to_string(),
                    "PM" => (if h >= 12 { "PM" } else { "AM" }).into(),
                    "pm" => (if h >= 12 { "pm" } else { "am" }).into(),
                    "-0700" => "+0000".into(),
                    "-07:00" => "+00:00".into(),
                    "-07" => "+00".into(),
                    "-07:00:00" => "+00:00:00".into(),
                    _ => "Z".into(),
                };
                out.push_str(&v);
                rest = r;
                continue 'outer;
            }
        }
        let ch = rest.chars().next().unwrap_or(' ');
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    out
}

/// `time.Time.String()` for a UTC time.
pub fn format_time_default(t: Time) -> String {
    format_time(t, "2006-01-02 15:04:05.999999999 -0700 MST")
}
