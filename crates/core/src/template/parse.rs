//! Lexer and parser for Go text/template syntax.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::funcs::{FuncTable, Resolved};
use super::{ErrorKind, TemplateError};

/// Where a node came from, for error messages: template name, line, column.
#[derive(Clone, Debug)]
pub struct Pos {
    pub name: Arc<str>,
    pub line: u32,
    pub col: u32,
}

#[derive(Clone, Debug)]
pub enum Node {
    Text(Arc<[u8]>),
    Action(Pipe),
    If(Branch),
    Range(Branch),
    With(Branch),
    Template {
        name: String,
        pipe: Option<Pipe>,
        pos: Pos,
    },
    Break,
    Continue,
}

#[derive(Clone, Debug)]
pub struct Branch {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Clone, Debug)]
pub struct Pipe {
    pub decl: Vec<String>,
    /// `=` rather than `:=`.
    pub is_assign: bool,
    pub cmds: Vec<Cmd>,
    pub pos: Pos,
    /// The action's source text, shown in errors as Go does (`at <...>`).
    pub text: Arc<str>,
}

#[derive(Clone, Debug)]
pub struct Cmd {
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug)]
pub enum Arg {
    Dot,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Arc<[u8]>),
    /// `.a.b` on dot.
    Field(Vec<String>),
    /// `$x.a.b`.
    Var(String, Vec<String>),
    Func(Resolved),
    /// `(pipeline).a.b`.
    Pipe(Box<Pipe>, Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Text(Vec<u8>),
    Left,
    Right,
    Space,
    Ident(String),
    Field(String),
    Var(String),
    Dot,
    Str(Vec<u8>),
    Char(i64),
    Int(i64),
    Float(f64),
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Eof,
}

struct Token {
    tok: Tok,
    line: u32,
    col: u32,
    /// Byte offset of the token in the source.
    at: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

struct Lexer<'a> {
    src: &'a [u8],
    left: &'a [u8],
    right: &'a [u8],
    pos: usize,
    name: &'a str,
    toks: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn err(&self, at: usize, msg: impl Into<String>) -> TemplateError {
        let (line, col) = line_col(self.src, at);
        TemplateError::new(
            ErrorKind::Parse,
            format!("template: {}:{line}:{col}: {}", self.name, msg.into()),
        )
    }

    fn push(&mut self, tok: Tok, at: usize) {
        let (line, col) = line_col(self.src, at);
        self.toks.push(Token { tok, line, col, at });
    }

    fn run(mut self) -> Result<Vec<Token>, TemplateError> {
        let mut trim_next = false;
        loop {
            let start = self.pos;
            let found = find(&self.src[start..], self.left).map(|i| start + i);
            let end = found.unwrap_or(self.src.len());
            let mut text = &self.src[start..end];
            if trim_next {
                while let Some((&b, rest)) = text.split_first() {
                    if !is_space(b) {
                        break;
                    }
                    text = rest;
                }
            }
            let Some(open) = found else {
                if !text.is_empty() {
                    self.push(Tok::Text(text.to_vec()), start);
                }
                break;
            };
            let mut p = open + self.left.len();
            // "{{- " trims the text before; the space is required.
            if self.src.get(p) == Some(&b'-') && self.src.get(p + 1).is_some_and(|b| is_space(*b)) {
                while let Some((&b, rest)) = text.split_last() {
                    if !is_space(b) {
                        break;
                    }
                    text = rest;
                }
                p += 2;
            }
            if !text.is_empty() {
                self.push(Tok::Text(text.to_vec()), start);
            }
            // A comment fills the whole action.
            let mut q = p;
            if self.src[q..].starts_with(b"/*") {
                let Some(close) = find(&self.src[q + 2..], b"*/") else {
                    return Err(self.err(open, "unclosed comment"));
                };
                q = q + 2 + close + 2;
                let (after, trim) = self.right_delim_at(q);
                match after {
                    Some(n) => {
                        self.pos = n;
                        trim_next = trim;
                        continue;
                    }
                    None => return Err(self.err(open, "comment ends before closing delimiter")),
                }
            }
            self.push(Tok::Left, open);
            self.pos = p;
            trim_next = self.inside_action(open)?;
        }
        let end = self.src.len();
        self.push(Tok::Eof, end);
        Ok(self.toks)
    }

    /// If the right delimiter (optionally after " -") starts at `at`:
    /// the offset after it, and whether it trims.
    fn right_delim_at(&self, at: usize) -> (Option<usize>, bool) {
        let rest = &self.src[at..];
        if rest.len() >= 2
            && is_space(rest[0])
            && rest[1] == b'-'
            && rest[2..].starts_with(self.right)
        {
            return (Some(at + 2 + self.right.len()), true);
        }
        if rest.starts_with(self.right) {
            return (Some(at + self.right.len()), false);
        }
        (None, false)
    }

    fn inside_action(&mut self, open: usize) -> Result<bool, TemplateError> {
        let mut depth = 0i32;
        loop {
            let at = self.pos;
            if let (Some(n), trim) = self.right_delim_at(at) {
                if depth > 0 {
                    return Err(self.err(at, "unclosed left paren"));
                }
                self.push(Tok::Right, at);
                self.pos = n;
                return Ok(trim);
            }
            let Some(&c) = self.src.get(at) else {
                return Err(self.err(open, "unclosed action"));
            };
            match c {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    while self.src.get(self.pos).is_some_and(|b| is_space(*b)) {
                        if self.right_delim_at(self.pos).0.is_some() {
                            break;
                        }
                        self.pos += 1;
                    }
                    self.push(Tok::Space, at);
                }
                b'|' => self.one(Tok::Pipe),
                b'(' => {
                    depth += 1;
                    self.one(Tok::LParen)
                }
                b')' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err(self.err(at, "unexpected right paren"));
                    }
                    self.one(Tok::RParen)
                }
                b',' => self.one(Tok::Comma),
                b'=' => self.one(Tok::Assign),
                b':' => {
                    if self.src.get(at + 1) != Some(&b'=') {
                        return Err(self.err(at, "expected :="));
                    }
                    self.pos += 2;
                    self.push(Tok::Declare, at);
                }
                b'"' => {
                    let s = self.quoted(b'"')?;
                    self.push(Tok::Str(s), at);
                }
                b'`' => {
                    let Some(close) = find(&self.src[at + 1..], b"`") else {
                        return Err(self.err(at, "unterminated raw quoted string"));
                    };
                    let s = self.src[at + 1..at + 1 + close].to_vec();
                    self.pos = at + close + 2;
                    self.push(Tok::Str(s), at);
                }
                b'\'' => {
                    let s = self.quoted(b'\'')?;
                    let text = String::from_utf8_lossy(&s);
                    let mut chars = text.chars();
                    match (chars.next(), chars.next()) {
                        (Some(ch), None) if s.len() == ch.len_utf8() || s.len() == 1 => {
                            let v = if s.len() == 1 { s[0] as i64 } else { ch as i64 };
                            self.push(Tok::Char(v), at)
                        }
                        _ => return Err(self.err(at, "malformed character constant")),
                    }
                }
                b'$' => {
                    self.pos += 1;
                    let name = self.word();
                    self.push(Tok::Var(format!("${name}")), at);
                }
                b'.' => {
                    if self.src.get(at + 1).is_some_and(|b| b.is_ascii_digit()) {
                        self.number()?;
                        continue;
                    }
                    self.pos += 1;
                    let name = self.word();
                    if name.is_empty() {
                        self.push(Tok::Dot, at);
                    } else {
                        self.push(Tok::Field(name), at);
                    }
                }
                b'0'..=b'9' | b'+' | b'-' => self.number()?,
                c if c == b'_' || c.is_ascii_alphabetic() || c >= 0x80 => {
                    let name = self.word();
                    if name.is_empty() {
                        return Err(self.err(at, "unrecognized character in action"));
                    }
                    self.push(Tok::Ident(name), at);
                }
                _ => {
                    return Err(self.err(
                        at,
                        format!("unrecognized character in action: {:?}", c as char),
                    ));
                }
            }
        }
    }

    fn one(&mut self, t: Tok) {
        let at = self.pos;
        self.pos += 1;
        self.push(t, at);
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        let rest = &self.src[start..];
        let text = String::from_utf8_lossy(rest);
        let mut n = 0;
        for ch in text.chars() {
            if ch == '_' || ch.is_alphanumeric() {
                n += ch.len_utf8();
            } else {
                break;
            }
        }
        // Lossy decoding only changes invalid bytes, which end a word anyway.
        let n = n.min(rest.len());
        self.pos += n;
        String::from_utf8_lossy(&rest[..n]).into_owned()
    }

    fn number(&mut self) -> Result<(), TemplateError> {
        let at = self.pos;
        let mut end = at;
        let s = self.src;
        if matches!(s.get(end), Some(b'+' | b'-')) {
            end += 1;
        }
        while let Some(&b) = s.get(end) {
            let prev = s.get(end.wrapping_sub(1)).copied().unwrap_or(0);
            let is_exp_sign = matches!(b, b'+' | b'-') && matches!(prev, b'e' | b'E' | b'p' | b'P');
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || is_exp_sign {
                end += 1;
            } else {
                break;
            }
        }
        let text = String::from_utf8_lossy(&s[at..end]).replace('_', "");
        self.pos = end;
        match parse_number(&text) {
            Some(t) => {
                self.push(t, at);
                Ok(())
            }
            None => Err(self.err(at, format!("bad number syntax: {:?}", text))),
        }
    }

    fn quoted(&mut self, q: u8) -> Result<Vec<u8>, TemplateError> {
        let at = self.pos;
        let mut out = Vec::new();
        let mut i = at + 1;
        loop {
            let Some(&c) = self.src.get(i) else {
                return Err(self.err(at, "unterminated quoted string"));
            };
            i += 1;
            if c == q {
                break;
            }
            match c {
                b'\n' => return Err(self.err(at, "unterminated quoted string")),
                b'\\' => {
                    let Some(&e) = self.src.get(i) else {
                        return Err(self.err(at, "unterminated quoted string"));
                    };
                    i += 1;
                    match e {
                        b'a' => out.push(7),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'v' => out.push(11),
                        b'\\' => out.push(b'\\'),
                        b'"' | b'\'' if e == q => out.push(e),
                        b'x' | b'u' | b'U' => {
                            let n = match e {
                                b'x' => 2,
                                b'u' => 4,
                                _ => 8,
                            };
                            let hex = self.src.get(i..i + n).unwrap_or_default();
                            let v = std::str::from_utf8(hex)
                                .ok()
                                .filter(|h| h.len() == n)
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or_else(|| self.err(at, "invalid syntax in quoted string"))?;
                            i += n;
                            if e == b'x' {
                                out.push(v as u8);
                            } else {
                                let ch = char::from_u32(v).ok_or_else(|| {
                                    self.err(at, "invalid syntax in quoted string")
                                })?;
                                let mut buf = [0u8; 4];
                                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                            }
                        }
                        b'0'..=b'7' => {
                            let oct = self.src.get(i - 1..i + 2).unwrap_or_default();
                            let v = std::str::from_utf8(oct)
                                .ok()
                                .filter(|h| h.len() == 3)
                                .and_then(|h| u32::from_str_radix(h, 8).ok())
                                .filter(|v| *v < 256)
                                .ok_or_else(|| self.err(at, "invalid syntax in quoted string"))?;
                            i += 2;
                            out.push(v as u8);
                        }
                        _ => return Err(self.err(at, "invalid syntax in quoted string")),
                    }
                }
                _ => out.push(c),
            }
        }
        self.pos = i;
        Ok(out)
    }
}

fn parse_number(text: &str) -> Option<Tok> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower = body.to_ascii_lowercase();
    let radix = if lower.starts_with("0x") {
        Some((16, &body[2..]))
    } else if lower.starts_with("0o") {
        Some((8, &body[2..]))
    } else if lower.starts_with("0b") {
        Some((2, &body[2..]))
    } else if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
        Some((8, &body[1..]))
    } else {
        None
    };
    if let Some((r, digits)) = radix {
        let v = i64::from_str_radix(digits, r).ok()?;
        return Some(Tok::Int(if neg { -v } else { v }));
    }
    if !body
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        return None;
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        let v: i64 = text.trim_start_matches('+').parse().ok()?;
        return Some(Tok::Int(v));
    }
    if body.contains("inf") || body.contains("nan") {
        return None;
    }
    let f: f64 = text.trim_start_matches('+').parse().ok()?;
    // Go treats an integral float constant as an int too (`3.0`, `1e3`).
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Some(Tok::Float(f));
    }
    Some(Tok::Float(f))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn line_col(src: &[u8], at: usize) -> (u32, u32) {
    let before = &src[..at.min(src.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.len()
        - before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
    (line as u32, col as u32)
}

/// The parse of one source: its body and the templates it defines.
pub struct Parsed {
    pub body: Vec<Node>,
    pub defines: BTreeMap<String, Vec<Node>>,
}

pub struct ParseConfig<'a> {
    pub left: &'a str,
    pub right: &'a str,
    pub max_depth: usize,
    pub funcs: &'a FuncTable,
}

pub fn parse(name: &str, src: &[u8], cfg: &ParseConfig) -> Result<Parsed, TemplateError> {
    let left = if cfg.left.is_empty() { "{{" } else { cfg.left };
    let right = if cfg.right.is_empty() {
        "}}"
    } else {
        cfg.right
    };
    let toks = Lexer {
        src,
        left: left.as_bytes(),
        right: right.as_bytes(),
        pos: 0,
        name,
        toks: Vec::new(),
    }
    .run()?;
    let mut p = Parser {
        toks,
        i: 0,
        name: Arc::from(name),
        src,
        vars: vec!["$".to_string()],
        depth: 0,
        range_depth: 0,
        cfg,
        defines: BTreeMap::new(),
    };
    let (body, end) = p.list(true)?;
    if let Some(e) = end {
        return Err(p.err_at(p.i.saturating_sub(1), &format!("unexpected {{{{{e}}}}}")));
    }
    Ok(Parsed {
        body,
        defines: p.defines,
    })
}

struct Parser<'a> {
    toks: Vec<Token>,
    i: usize,
    name: Arc<str>,
    src: &'a [u8],
    vars: Vec<String>,
    depth: usize,
    range_depth: usize,
    cfg: &'a ParseConfig<'a>,
    defines: BTreeMap<String, Vec<Node>>,
}

/// What ended a list: `end`, `else` (with the rest of its action unread).
#[derive(Debug, PartialEq)]
enum End {
    End,
    Else,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            End::End => "end",
            End::Else => "else",
        })
    }
}

impl<'a> Parser<'a> {
    fn err_at(&self, i: usize, msg: &str) -> TemplateError {
        let (line, col) = self.toks.get(i).map_or((0, 0), |t| (t.line, t.col));
        TemplateError::new(
            ErrorKind::Parse,
            format!("template: {}:{line}:{col}: {msg}", self.name),
        )
    }

    fn err(&self, msg: &str) -> TemplateError {
        self.err_at(self.i, msg)
    }

    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn skip_space(&mut self) {
        while *self.peek() == Tok::Space {
            self.i += 1;
        }
    }

    fn next_non_space(&mut self) -> Tok {
        self.skip_space();
        self.next()
    }

    fn pos(&self) -> Pos {
        let (line, col) = self.toks.get(self.i).map_or((0, 0), |t| (t.line, t.col));
        Pos {
            name: self.name.clone(),
            line,
            col,
        }
    }

    fn enter(&mut self) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > self.cfg.max_depth {
            return Err(self.err(&format!(
                "nesting deeper than {} levels",
                self.cfg.max_depth
            )));
        }
        Ok(())
    }

    /// Items until `{{end}}`, `{{else}}` or the end of input.
    fn list(&mut self, top: bool) -> Result<(Vec<Node>, Option<End>), TemplateError> {
        let mut nodes = Vec::new();
        loop {
            match self.next() {
                Tok::Eof => {
                    if top {
                        return Ok((nodes, None));
                    }
                    return Err(self.err("unexpected EOF"));
                }
                Tok::Text(t) => nodes.push(Node::Text(Arc::from(t))),
                Tok::Left => {
                    self.skip_space();
                    let kw_at = self.i;
                    if let Tok::Ident(kw) = self.peek().clone() {
                        match kw.as_str() {
                            "end" | "else" => {
                                self.i += 1;
                                if top && self.depth == 0 {
                                    return Err(
                                        self.err_at(kw_at, &format!("unexpected {{{{{kw}}}}}"))
                                    );
                                }
                                if kw == "end" {
                                    self.expect_right()?;
                                    return Ok((nodes, Some(End::End)));
                                }
                                return Ok((nodes, Some(End::Else)));
                            }
                            "if" | "range" | "with" => {
                                self.i += 1;
                                nodes.push(self.branch(&kw)?);
                                continue;
                            }
                            "define" => {
                                self.i += 1;
                                if !top || self.depth > 0 {
                                    return Err(
                                        self.err_at(kw_at, "unexpected define: only at top level")
                                    );
                                }
                                self.define()?;
                                continue;
                            }
                            "block" => {
                                self.i += 1;
                                nodes.push(self.block()?);
                                continue;
                            }
                            "template" => {
                                self.i += 1;
                                nodes.push(self.template_call()?);
                                continue;
                            }
                            "break" | "continue" => {
                                self.i += 1;
                                if self.range_depth == 0 {
                                    return Err(self.err_at(
                                        kw_at,
                                        &format!("{{{{{kw}}}}} outside {{{{range}}}}"),
                                    ));
                                }
                                self.expect_right()?;
                                nodes.push(if kw == "break" {
                                    Node::Break
                                } else {
                                    Node::Continue
                                });
                                continue;
                            }
                            _ => {}
                        }
                    }
                    let pipe = self.pipeline("command", true)?;
                    nodes.push(Node::Action(pipe));
                }
                _ => return Err(self.err("unexpected token")),
            }
        }
    }

    fn expect_right(&mut self) -> Result<(), TemplateError> {
        match self.next_non_space() {
            Tok::Right => Ok(()),
            _ => Err(self.err_at(
                self.i.saturating_sub(1),
                "unexpected token in action; expected closing delimiter",
            )),
        }
    }

    fn branch(&mut self, kw: &str) -> Result<Node, TemplateError> {
        self.enter()?;
        let mark = self.vars.len();
        let pipe = self.pipeline(kw, kw == "range")?;
        if kw == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.list(false)?;
        if kw == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            Some(End::Else) => {
                self.skip_space();
                // `{{else if ...}}` / `{{else with ...}}`: a nested branch in
                // the else list that consumes the same `{{end}}`.
                if let Tok::Ident(next) = self.peek().clone()
                    && (next == "if" || next == "with")
                    && next == kw
                {
                    self.i += 1;
                    self.vars.truncate(mark);
                    let nested = self.branch(&next)?;
                    self.depth -= 1;
                    self.vars.truncate(mark);
                    return Ok(self.make_branch(kw, pipe, list, Some(vec![nested])));
                }
                // Variables of the pipeline stay visible in the else list.
                self.expect_right()?;
                let (else_list, end) = self.list(false)?;
                if end != Some(End::End) {
                    return Err(self.err("expected end; found else"));
                }
                Some(else_list)
            }
            _ => None,
        };
        self.vars.truncate(mark);
        self.depth -= 1;
        Ok(self.make_branch(kw, pipe, list, else_list))
    }

    fn make_branch(
        &self,
        kw: &str,
        pipe: Pipe,
        list: Vec<Node>,
        else_list: Option<Vec<Node>>,
    ) -> Node {
        let b = Branch {
            pipe,
            list,
            else_list,
        };
        match kw {
            "if" => Node::If(b),
            "range" => Node::Range(b),
            _ => Node::With(b),
        }
    }

    fn string_arg(&mut self, what: &str) -> Result<String, TemplateError> {
        match self.next_non_space() {
            Tok::Str(s) => {
                String::from_utf8(s).map_err(|_| self.err(&format!("{what}: name is not UTF-8")))
            }
            _ => Err(self.err_at(
                self.i.saturating_sub(1),
                &format!("unexpected token in {what} clause"),
            )),
        }
    }

    fn define(&mut self) -> Result<(), TemplateError> {
        let name = self.string_arg("define")?;
        self.expect_right()?;
        self.enter()?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (body, end) = self.list(false)?;
        self.vars = saved;
        self.depth -= 1;
        if end != Some(End::End) {
            return Err(self.err("unexpected {{else}} in define"));
        }
        self.add_define(name, body);
        Ok(())
    }

    fn add_define(&mut self, name: String, body: Vec<Node>) {
        // As Go: an empty redefinition does not replace a real one.
        let empty = body
            .iter()
            .all(|n| matches!(n, Node::Text(t) if t.iter().all(|b| is_space(*b))));
        if empty && self.defines.contains_key(&name) {
            return;
        }
        self.defines.insert(name, body);
    }

    fn template_call(&mut self) -> Result<Node, TemplateError> {
        let pos = self.pos();
        let name = self.string_arg("template")?;
        self.skip_space();
        let pipe = if *self.peek() == Tok::Right {
            self.i += 1;
            None
        } else {
            Some(self.pipeline("template", false)?)
        };
        Ok(Node::Template { name, pipe, pos })
    }

    fn block(&mut self) -> Result<Node, TemplateError> {
        let pos = self.pos();
        let name = self.string_arg("block")?;
        self.skip_space();
        let pipe = if *self.peek() == Tok::Right {
            self.i += 1;
            None
        } else {
            Some(self.pipeline("block", false)?)
        };
        self.enter()?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (body, end) = self.list(false)?;
        self.vars = saved;
        self.depth -= 1;
        if end != Some(End::End) {
            return Err(self.err("unexpected {{else}} in block"));
        }
        self.add_define(name.clone(), body);
        Ok(Node::Template { name, pipe, pos })
    }

    /// A pipeline up to the closing delimiter (consumed).
    fn pipeline(&mut self, ctx: &str, allow_decl: bool) -> Result<Pipe, TemplateError> {
        self.skip_space();
        let pos = self.pos();
        let start_at = self.toks.get(self.i).map_or(0, |t| t.at);
        let mut decl = Vec::new();
        let mut is_assign = false;
        // Declarations: `$x :=`, `$x =`, `$i, $v :=`.
        if let Tok::Var(_) = self.peek() {
            let save = self.i;
            let mut names = Vec::new();
            while let Tok::Var(v) = self.peek().clone() {
                self.i += 1;
                names.push(v);
                self.skip_space();
                match self.peek() {
                    Tok::Comma if allow_decl && names.len() == 1 => {
                        self.i += 1;
                        self.skip_space();
                    }
                    Tok::Declare | Tok::Assign => break,
                    _ => {
                        names.clear();
                        break;
                    }
                }
            }
            match self.peek().clone() {
                t @ (Tok::Declare | Tok::Assign) if !names.is_empty() => {
                    self.i += 1;
                    is_assign = t == Tok::Assign;
                    if names.len() > 1 && ctx != "range" {
                        return Err(self.err("too many declarations in command"));
                    }
                    if is_assign {
                        for n in &names {
                            if !self.vars.contains(n) {
                                return Err(self.err(&format!("undefined variable \"{n}\"")));
                            }
                        }
                    }
                    decl = names;
                }
                _ => self.i = save,
            }
        }
        let mut cmds = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Tok::Right => {
                    self.i += 1;
                    break;
                }
                Tok::RParen => break,
                _ => {}
            }
            cmds.push(self.command()?);
            self.skip_space();
            match self.peek() {
                Tok::Pipe => {
                    self.i += 1;
                }
                Tok::Right | Tok::RParen => {}
                _ => return Err(self.err("unexpected token in operand")),
            }
        }
        if cmds.is_empty() {
            return Err(self.err(&format!("missing value for {ctx}")));
        }
        for (i, c) in cmds.iter().enumerate() {
            if i > 0
                && matches!(
                    c.args.first(),
                    Some(
                        Arg::Bool(_)
                            | Arg::Nil
                            | Arg::Int(_)
                            | Arg::Float(_)
                            | Arg::Str(_)
                            | Arg::Dot
                    )
                )
            {
                return Err(self.err("non executable command in pipeline stage"));
            }
        }
        if !is_assign {
            for d in &decl {
                self.vars.push(d.clone());
            }
        }
        let end_at = self
            .toks
            .get(self.i.saturating_sub(1))
            .map_or(start_at, |t| t.at);
        let raw = self
            .src
            .get(start_at..end_at.max(start_at))
            .unwrap_or_default();
        let mut text: String = String::from_utf8_lossy(raw).trim().to_string();
        if text.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push_str("...");
        }
        Ok(Pipe {
            decl,
            is_assign,
            cmds,
            pos,
            text: Arc::from(text),
        })
    }

    fn command(&mut self) -> Result<Cmd, TemplateError> {
        let mut args = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Tok::Right | Tok::RParen | Tok::Pipe => break,
                Tok::Eof => return Err(self.err("unclosed action")),
                _ => {}
            }
            args.push(self.operand()?);
            match self.peek() {
                Tok::Space | Tok::Right | Tok::RParen | Tok::Pipe => {}
                _ => return Err(self.err("missing space between operands")),
            }
        }
        if args.is_empty() {
            return Err(self.err("empty command"));
        }
        Ok(Cmd { args })
    }

    fn fields(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Tok::Field(f) = self.peek().clone() {
            self.i += 1;
            out.push(f);
        }
        out
    }

    fn operand(&mut self) -> Result<Arg, TemplateError> {
        let at = self.i;
        let arg = match self.next() {
            Tok::Dot => {
                if let Tok::Field(_) = self.peek() {
                    return Err(self.err("unexpected . after term"));
                }
                Arg::Dot
            }
            Tok::Field(f) => {
                let mut fs = vec![f];
                fs.extend(self.fields());
                return Ok(Arg::Field(fs));
            }
            Tok::Var(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.err_at(at, &format!("undefined variable \"{v}\"")));
                }
                let fs = self.fields();
                return Ok(Arg::Var(v, fs));
            }
            Tok::Str(s) => Arg::Str(Arc::from(s)),
            Tok::Char(c) | Tok::Int(c) => Arg::Int(c),
            Tok::Float(f) => Arg::Float(f),
            Tok::LParen => {
                self.enter()?;
                let p = self.pipeline("parenthesized pipeline", false)?;
                self.depth -= 1;
                if self.next() != Tok::RParen {
                    return Err(self.err("unclosed left paren"));
                }
                let fs = self.fields();
                return Ok(Arg::Pipe(Box::new(p), fs));
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                _ => match self.cfg.funcs.resolve(&name) {
                    Ok(r) => Arg::Func(r),
                    Err(msg) => return Err(self.err_at(at, &msg)),
                },
            },
            _ => return Err(self.err_at(at, "unexpected token in operand")),
        };
        if let Tok::Field(_) = self.peek() {
            return Err(self.err("unexpected field after term"));
        }
        Ok(arg)
    }
}
