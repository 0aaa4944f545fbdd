//! Go `regexp` (RE2) semantics on top of the `regex` crate, for patterns
//! that External Secrets users wrote for Go: `rewrite[].regexp.source`,
//! ClusterSecretStore `namespaceRegexes`. The two dialects mostly agree;
//! where they differ the pattern is translated so it matches what Go
//! matches:
//! - `\d \s \w` (and `\D \S \W`) are ASCII-only in Go, Unicode in Rust;
//! - `\b \B` are ASCII word boundaries in Go.
//!
//! Replacement templates follow Go's `Regexp.Expand` (`$1`, `${name}`,
//! `$$`; the longest name wins, so `$1x` names the group `1x`; a number
//! with a leading zero is a name; an unknown group expands to nothing; a
//! malformed `${` keeps the `$`). Rust's `Captures::expand` differs on the
//! last two points, hence [`GoRegex::replace_all`].
//!
//! Patterns come from untrusted authors: their length and compiled size
//! are bounded.

use regex::{Regex, RegexBuilder};

/// The longest pattern accepted (as for `find.name.regexp`).
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Compiled program and lazy-DFA cache limits (bytes).
const SIZE_LIMIT: usize = 1 << 20;

/// A pattern compiled with Go's meaning.
#[derive(Debug, Clone)]
pub struct GoRegex {
    re: Regex,
}

impl GoRegex {
    /// Compiles `pattern`, or says why not (never echoing the pattern).
    pub fn new(pattern: &str) -> Result<GoRegex, String> {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "is {} bytes, over the limit of {MAX_PATTERN_BYTES}",
                pattern.len()
            ));
        }
        let translated = translate(pattern)?;
        RegexBuilder::new(&translated)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .nest_limit(100)
            .build()
            .map(|re| GoRegex { re })
            .map_err(|e| {
                let text = e.to_string();
                // The crate's message quotes the pattern over several
                // lines; its last line says what is wrong.
                let why = text.lines().last().unwrap_or("invalid").trim().to_owned();
                format!("not a regular expression: {why}")
            })
    }

    /// Go's `regexp.MatchString`: unanchored.
    pub fn is_match(&self, text: &str) -> bool {
        self.re.is_match(text)
    }

    /// Go's `ReplaceAllString(text, template)`.
    pub fn replace_all(&self, text: &str, template: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for caps in self.re.captures_iter(text) {
            let Some(whole) = caps.get(0) else { continue };
            out.push_str(&text[last..whole.start()]);
            self.expand(&caps, template, &mut out);
            last = whole.end();
        }
        out.push_str(&text[last..]);
        out
    }

    fn expand(&self, caps: &regex::Captures<'_>, mut template: &str, out: &mut String) {
        while let Some(dollar) = template.find('$') {
            out.push_str(&template[..dollar]);
            template = &template[dollar + 1..];
            if let Some(rest) = template.strip_prefix('$') {
                out.push('$');
                template = rest;
                continue;
            }
            let Some((name, num, rest)) = extract(template) else {
                out.push('$');
                continue;
            };
            template = rest;
            let group = match num {
                Some(n) => caps.get(n),
                None => self
                    .re
                    .capture_names()
                    .enumerate()
                    .filter(|(_, n)| *n == Some(name))
                    .find_map(|(i, _)| caps.get(i)),
            };
            if let Some(m) = group {
                out.push_str(m.as_str());
            }
        }
        out.push_str(template);
    }
}

/// Go's `extract`: the name after a `$` (braced or not), its number when
/// it is a plain decimal without a leading zero, and the rest.
fn extract(s: &str) -> Option<(&str, Option<usize>, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    // Go takes letters, digits and `_` (Unicode categories L and Nd; the
    // std predicates are a close superset).
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let rest = if brace {
        body[end..].strip_prefix('}')?
    } else {
        &body[end..]
    };
    let mut num: Option<usize> = Some(0);
    for b in name.bytes() {
        num = match num {
            Some(n) if b.is_ascii_digit() && n < 100_000_000 => {
                Some(n * 10 + usize::from(b - b'0'))
            }
            _ => None,
        };
        if num.is_none() {
            break;
        }
    }
    if name.len() > 1 && name.starts_with('0') {
        num = None;
    }
    Some((name, num, rest))
}

/// Rewrites Go-only meanings into the Rust dialect: ASCII Perl classes and
/// word boundaries. Escapes are copied as they are otherwise, so an error
/// in the pattern is still reported by the compiler.
fn translate(pattern: &str) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    // Depth of `[...]` classes; Go has no nested classes, but `[[:alpha:]]`
    // opens and closes within one class.
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(e) = chars.next() else {
                    return Err("not a regular expression: trailing backslash".to_owned());
                };
                let ascii = match e {
                    'd' => Some("0-9"),
                    's' => Some("\\t\\n\\x0C\\r "),
                    'w' => Some("0-9A-Za-z_"),
                    _ => None,
                };
                let negated = match e {
                    'D' => Some("0-9"),
                    'S' => Some("\\t\\n\\x0C\\r "),
                    'W' => Some("0-9A-Za-z_"),
                    _ => None,
                };
                match (ascii, negated, in_class) {
                    (Some(set), _, true) => out.push_str(set),
                    (Some(set), _, false) => {
                        out.push('[');
                        out.push_str(set);
                        out.push(']');
                    }
                    // Rust nests classes, so a negated set inside a class
                    // stays a union.
                    (None, Some(set), _) => {
                        out.push_str("[^");
                        out.push_str(set);
                        out.push(']');
                    }
                    (None, None, false) if e == 'b' || e == 'B' => {
                        out.push_str("(?-u:\\");
                        out.push(e);
                        out.push(')');
                    }
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
                class_start = false;
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                // `[^]...]` and `[]...]`: a leading `]` is literal.
                let mut peek = chars.clone();
                if peek.next() == Some('^') {
                    out.push('^');
                    chars.next();
                }
                let mut peek = chars.clone();
                if peek.next() == Some(']') {
                    out.push_str("\\]");
                    chars.next();
                    class_start = false;
                }
            }
            '[' if in_class => {
                // `[:alpha:]` inside a class.
                let mut peek = chars.clone();
                if peek.next() == Some(':') {
                    let rest = chars.as_str();
                    if let Some(end) = rest.find(":]") {
                        out.push('[');
                        out.push_str(&rest[..end + 2]);
                        for _ in 0..rest[..end + 2].chars().count() {
                            chars.next();
                        }
                        continue;
                    }
                }
                // A literal `[` inside a class: escape it, since Rust would
                // read it as a nested class.
                out.push_str("\\[");
            }
            ']' if in_class && !class_start => {
                in_class = false;
                out.push(']');
            }
            // `&&`, `--`, `~~` are set operators in Rust classes, literal in Go.
            '&' | '-' | '~' if in_class => {
                let mut peek = chars.clone();
                if peek.next() == Some(c) {
                    out.push('\\');
                    out.push(c);
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
        if c != '[' {
            class_start = false;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> GoRegex {
        GoRegex::new(p).expect("valid pattern")
    }

    #[test]
    fn expand_follows_go() {
        let r = re("f(?P<content>.*)o");
        assert_eq!(r.replace_all("floo", "a_${content}_${1}"), "a_lo_lo");
        // `$1x` is the (absent) group `1x`: empty, as in Go and Rust.
        assert_eq!(r.replace_all("floo", "<$1x>"), "<>");
        // A leading zero makes a name, not a number: empty in Go.
        assert_eq!(r.replace_all("floo", "<$01>"), "<>");
        assert_eq!(r.replace_all("floo", "$$1"), "$1");
        // Malformed braces keep the `$`.
        assert_eq!(r.replace_all("floo", "${1"), "${1");
        assert_eq!(r.replace_all("floo", "$-"), "$-");
        assert_eq!(r.replace_all("floo", "$"), "$");
    }

    #[test]
    fn empty_matches_like_go() {
        // Go: regexp.MustCompile("a*").ReplaceAllString("baaab", "X") == "XbXbX"
        assert_eq!(re("a*").replace_all("baaab", "X"), "XbXbX");
        assert_eq!(re("").replace_all("ab", "-"), "-a-b-");
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert!(!re(r"^\d$").is_match("٣"));
        assert!(re(r"^\d$").is_match("3"));
        assert!(!re(r"^\w+$").is_match("é"));
        assert!(re(r"^\W$").is_match("é"));
        assert!(!re(r"^\s$").is_match("\u{a0}"));
        assert!(re(r"^[\d_]+$").is_match("1_2"));
        assert!(re(r"^[^\d]+$").is_match("ab"));
        assert!(!re(r"^[^\d]+$").is_match("a1"));
        assert!(re(r"\bfoo\b").is_match("a foo b"));
        assert!(re(r"^[[:alpha:]]+$").is_match("abc"));
        assert!(re(r"^[]a]+$").is_match("]a"));
        assert!(re(r"^[a&&b]+$").is_match("&&"));
        assert!(re(r"^[a-]+$").is_match("a-"));
    }

    #[test]
    fn unanchored() {
        assert!(re("test-*").is_match("test-a"));
        assert!(re("st").is_match("test-a"));
    }

    #[test]
    fn bounded() {
        assert!(GoRegex::new(&"a".repeat(MAX_PATTERN_BYTES + 1)).is_err());
        assert!(GoRegex::new("(a{1000}){1000}").is_err());
        let err = GoRegex::new("(unclosed").expect_err("invalid");
        assert!(err.starts_with("not a regular expression"), "{err}");
        assert!(GoRegex::new("\\").is_err());
    }
}
