//! Executes a parsed template against a value, within [`Limits`].

use std::sync::Arc;

use super::funcs::{self, Cx, FuncError};
use super::parse::{Arg, Branch, Cmd, Node, Pipe, Pos};
use super::value::Value;
use super::{ErrorKind, Limits, Template, TemplateError};

enum Flow {
    Next,
    Break,
    Continue,
}

pub(super) struct Exec<'a> {
    t: &'a Template,
    limits: &'a Limits,
    cx: Cx,
    out: Vec<u8>,
    vars: Vec<(String, Value)>,
    steps: u64,
    depth: usize,
    alloc: usize,
}

type R<T> = Result<T, TemplateError>;

pub(super) fn run(t: &Template, name: &str, data: &Value, limits: &Limits) -> R<Vec<u8>> {
    let Some(body) = t.bodies.get(name) else {
        return Err(TemplateError::new(
            ErrorKind::Exec,
            format!(
                "template: no template {name:?} associated with template {:?}",
                t.name
            ),
        ));
    };
    let mut e = Exec {
        t,
        limits,
        cx: Cx::new(limits),
        out: Vec::new(),
        vars: vec![("$".to_string(), data.clone())],
        steps: 0,
        depth: 0,
        alloc: 0,
    };
    e.walk(data, body)?;
    Ok(e.out)
}

fn describe(v: &Value) -> &'static str {
    v.type_name()
}

impl Exec<'_> {
    fn err(&self, pos: &Pos, at: &str, msg: impl std::fmt::Display) -> TemplateError {
        TemplateError::new(
            ErrorKind::Exec,
            format!(
                "template: {}:{}:{}: executing \"{}\" at <{}>: {}",
                pos.name, pos.line, pos.col, pos.name, at, msg
            ),
        )
    }

    fn limit(&self, msg: String) -> TemplateError {
        TemplateError::new(ErrorKind::Limit, msg)
    }

    fn step(&mut self) -> R<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(self.limit(format!(
                "template execution took more than {} steps",
                self.limits.max_steps
            )));
        }
        Ok(())
    }

    fn write(&mut self, b: &[u8]) -> R<()> {
        if self.out.len() + b.len() > self.limits.max_output_bytes {
            return Err(self.limit(format!(
                "template output exceeds {} bytes",
                self.limits.max_output_bytes
            )));
        }
        self.out.extend_from_slice(b);
        Ok(())
    }

    fn walk(&mut self, dot: &Value, nodes: &[Node]) -> R<Flow> {
        for n in nodes {
            self.step()?;
            match n {
                Node::Text(t) => self.write(t)?,
                Node::Action(p) => {
                    let v = self.pipe(dot, p)?;
                    if p.decl.is_empty() {
                        let mut buf = Vec::new();
                        v.write_go(&mut buf);
                        self.write(&buf)?;
                    }
                }
                Node::If(b) | Node::With(b) => {
                    let f = self.if_with(dot, b, matches!(n, Node::With(_)))?;
                    if !matches!(f, Flow::Next) {
                        return Ok(f);
                    }
                }
                Node::Range(b) => self.range(dot, b)?,
                Node::Template { name, pipe, pos } => {
                    let arg = match pipe {
                        Some(p) => self.pipe(dot, p)?,
                        None => Value::Nil,
                    };
                    let Some(body) = self.t.bodies.get(name) else {
                        return Err(self.err(
                            pos,
                            &format!("template {name:?}"),
                            format!("no such template {name:?}"),
                        ));
                    };
                    self.depth += 1;
                    if self.depth > self.limits.max_depth {
                        return Err(self.limit(format!(
                            "template calls nested deeper than {} levels",
                            self.limits.max_depth
                        )));
                    }
                    let saved =
                        std::mem::replace(&mut self.vars, vec![("$".to_string(), arg.clone())]);
                    let r = self.walk(&arg, body);
                    self.vars = saved;
                    self.depth -= 1;
                    r?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Next)
    }

    /// A list in its own variable scope.
    fn scoped(&mut self, dot: &Value, nodes: &[Node]) -> R<Flow> {
        let mark = self.vars.len();
        let r = self.walk(dot, nodes);
        self.vars.truncate(mark);
        r
    }

    fn if_with(&mut self, dot: &Value, b: &Branch, with: bool) -> R<Flow> {
        let mark = self.vars.len();
        let v = self.pipe(dot, &b.pipe)?;
        let r = if v.truthy() {
            let d = if with { v } else { dot.clone() };
            self.scoped(&d, &b.list)
        } else if let Some(e) = &b.else_list {
            self.scoped(dot, e)
        } else {
            Ok(Flow::Next)
        };
        self.vars.truncate(mark);
        r
    }

    fn range(&mut self, dot: &Value, b: &Branch) -> R<()> {
        let p = &b.pipe;
        let v = self.pipe_value(dot, p)?;
        let mark = self.vars.len();
        for d in &p.decl {
            self.vars.push((d.clone(), Value::Nil));
        }
        let r = self.range_inner(dot, b, v, mark);
        self.vars.truncate(mark);
        r
    }

    fn range_inner(&mut self, dot: &Value, b: &Branch, v: Value, mark: usize) -> R<()> {
        let p = &b.pipe;
        let iter_one = |e: &mut Self, key: Value, elem: Value| -> R<bool> {
            e.step()?;
            match p.decl.len() {
                1 => e.vars[mark].1 = elem.clone(),
                2 => {
                    e.vars[mark].1 = key;
                    e.vars[mark + 1].1 = elem.clone();
                }
                _ => {}
            }
            Ok(matches!(e.scoped(&elem, &b.list)?, Flow::Break))
        };
        let empty = match &v {
            Value::List(l) => {
                for (i, x) in l.iter().enumerate() {
                    if iter_one(self, Value::Int(i as i64), x.clone())? {
                        break;
                    }
                }
                l.is_empty()
            }
            Value::Map(m) => {
                for (k, x) in m.entries.iter() {
                    if iter_one(self, Value::str(k), x.clone())? {
                        break;
                    }
                }
                m.entries.is_empty()
            }
            Value::Int(n) => {
                if p.decl.len() > 1 {
                    return Err(self.err(
                        &p.pos,
                        &p.text,
                        "can't use two variables to range over an integer",
                    ));
                }
                for i in 0..*n {
                    if iter_one(self, Value::Int(i), Value::Int(i))? {
                        break;
                    }
                }
                *n <= 0
            }
            Value::Nil => true,
            other => {
                return Err(self.err(
                    &p.pos,
                    &p.text,
                    format!("range can't iterate over value of type {}", describe(other)),
                ));
            }
        };
        if empty && let Some(e) = &b.else_list {
            self.scoped(dot, e)?;
        }
        Ok(())
    }

    /// A pipeline's value, declaring or assigning its variables.
    fn pipe(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        let v = self.pipe_value(dot, p)?;
        for d in &p.decl {
            if p.is_assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == d) {
                    slot.1 = v.clone();
                }
            } else {
                self.vars.push((d.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn pipe_value(&mut self, dot: &Value, p: &Pipe) -> R<Value> {
        let mut last: Option<Value> = None;
        for c in &p.cmds {
            self.step()?;
            last = Some(self.cmd(dot, c, last, p)?);
        }
        Ok(last.unwrap_or_default())
    }

    fn cmd(&mut self, dot: &Value, c: &Cmd, fin: Option<Value>, p: &Pipe) -> R<Value> {
        let Some(first) = c.args.first() else {
            return Ok(Value::Nil);
        };
        if let Arg::Func(f) = first {
            return self.call(dot, f, &c.args[1..], fin, p);
        }
        if c.args.len() > 1 || fin.is_some() {
            return Err(self.err(&p.pos, &p.text, "can't give argument to non-function"));
        }
        if let Arg::Nil = first {
            return Err(self.err(&p.pos, &p.text, "nil is not a command"));
        }
        self.arg(dot, first, p)
    }

    fn call(
        &mut self,
        dot: &Value,
        f: &funcs::Resolved,
        args: &[Arg],
        fin: Option<Value>,
        p: &Pipe,
    ) -> R<Value> {
        // `and` and `or` stop at the first deciding argument, as Go does.
        if f.name == "and" || f.name == "or" {
            if args.is_empty() && fin.is_none() {
                return Err(self.err(
                    &p.pos,
                    &p.text,
                    format!("wrong number of args for {}: want at least 1 got 0", f.name),
                ));
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.arg(dot, a, p)?;
                if last.truthy() == (f.name == "or") {
                    return Ok(last);
                }
            }
            if let Some(v) = fin {
                last = v;
            }
            return Ok(last);
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.arg(dot, a, p)?);
        }
        if let Some(v) = fin {
            vals.push(v);
        }
        self.cx.alloc_left = self.limits.max_alloc_bytes.saturating_sub(self.alloc);
        match (f.f)(&self.cx, &vals) {
            Ok(v) => {
                self.alloc += v.shallow_size();
                if self.alloc > self.limits.max_alloc_bytes {
                    return Err(self.limit(format!(
                        "template functions allocated more than {} bytes",
                        self.limits.max_alloc_bytes
                    )));
                }
                Ok(v)
            }
            Err(FuncError::Limit(m)) => Err(self.limit(format!("{}: {m}", f.name))),
            Err(FuncError::Fail(m)) => {
                // The message is shown only when the template spelled it out:
                // a computed one may carry secret data.
                let literal = matches!(args.first(), Some(Arg::Str(_)));
                let msg = if literal {
                    m
                } else {
                    "(message withheld: not a literal)".into()
                };
                Err(self.err(&p.pos, &p.text, format!("error calling {}: {msg}", f.name)))
            }
            Err(FuncError::Msg(m)) => {
                Err(self.err(&p.pos, &p.text, format!("error calling {}: {m}", f.name)))
            }
        }
    }

    fn arg(&mut self, dot: &Value, a: &Arg, p: &Pipe) -> R<Value> {
        Ok(match a {
            Arg::Dot => dot.clone(),
            Arg::Nil => Value::Nil,
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Str(s) => Value::Str(Arc::clone(s)),
            Arg::Field(fs) => self.chain(dot.clone(), fs, p)?,
            Arg::Var(name, fs) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        self.err(&p.pos, &p.text, format!("undefined variable: {name}"))
                    })?;
                self.chain(v, fs, p)?
            }
            Arg::Func(f) => self.call(dot, f, &[], None, p)?,
            Arg::Pipe(inner, fs) => {
                // A declaration inside parentheses lives on, as in Go.
                let v = self.pipe(dot, inner)?;
                self.chain(v, fs, p)?
            }
        })
    }

    /// `.a.b`: map lookups; a missing key is an error (`missingkey=error`).
    fn chain(&mut self, mut v: Value, fields: &[String], p: &Pipe) -> R<Value> {
        for f in fields {
            v = match &v {
                Value::Map(m) => match m.entries.get(f.as_bytes()) {
                    Some(x) => x.clone(),
                    None => {
                        return Err(self.err(
                            &p.pos,
                            &p.text,
                            format!("map has no entry for key {f:?}"),
                        ));
                    }
                },
                Value::Nil => {
                    return Err(self.err(
                        &p.pos,
                        &p.text,
                        format!("nil data; no entry for key {f:?}"),
                    ));
                }
                other => {
                    return Err(self.err(
                        &p.pos,
                        &p.text,
                        format!("can't evaluate field {f} in type {}", describe(other)),
                    ));
                }
            };
        }
        Ok(v)
    }
}
