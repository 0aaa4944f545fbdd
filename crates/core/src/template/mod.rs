//! External Secrets Operator's template engine v2: Go `text/template` with
//! the sprig functions ESO exposes, over byte strings.
//!
//! ```
//! use std::collections::BTreeMap;
//! use aws_secrets_csi_core::template::{Limits, Options, Template, Value};
//!
//! let t = Template::parse("password", "{{ .pass | b64enc }}", &Options::default()).unwrap();
//! let data = BTreeMap::from([("pass".to_string(), b"hunter2".to_vec())]);
//! let out = t.execute(&Value::from_secret_data(&data), &Limits::default()).unwrap();
//! assert_eq!(out, b"aHVudGVyMg==");
//! ```
//!
//! As ESO runs it: `missingkey=error` (a missing map key read with `.key` is
//! an error; `index` gives the zero value), the data is a map of strings
//! keyed by secret key, delimiters are configurable. `env`, `expandenv` and
//! `getHostByName` are not there; nothing reads files, the network or the
//! environment. A function the engine does not have is refused when the
//! template is parsed. Hostile templates are bounded: source size, nesting,
//! `template` recursion, steps, output bytes and bytes allocated by
//! functions ([`Limits`]). Errors name the template, line, column and
//! function, never a data value.

mod exec;
pub mod funcs;
mod parse;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use funcs::{Cx, Func, FuncError, FuncTable};
pub use value::{Map, Time, Value};

/// How a template is parsed.
#[derive(Clone)]
pub struct Options {
    /// Left delimiter; empty means `{{`.
    pub left: String,
    /// Right delimiter; empty means `}}`.
    pub right: String,
    /// Largest template source accepted.
    pub max_source_bytes: usize,
    /// Deepest nesting of control structures and parentheses.
    pub max_nesting: usize,
    /// The functions templates may call (ESO's by default).
    pub funcs: FuncTable,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            left: "{{".into(),
            right: "}}".into(),
            max_source_bytes: 1 << 20,
            max_nesting: 100,
            funcs: FuncTable::eso(),
        }
    }
}

/// Bounds on one execution.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Output cap (a Secret holds at most 1 MiB).
    pub max_output_bytes: usize,
    /// Nodes, commands and range iterations executed.
    pub max_steps: u64,
    /// Bytes all function results may allocate in total.
    pub max_alloc_bytes: usize,
    /// Largest single string or list a function may build.
    pub max_value_bytes: usize,
    /// Deepest `{{template}}` recursion.
    pub max_depth: usize,
    /// What `now` returns; `None` reads the clock.
    pub now: Option<Time>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output_bytes: 1 << 20,
            max_steps: 1_000_000,
            max_alloc_bytes: 64 << 20,
            max_value_bytes: 1 << 20,
            max_depth: 100,
            now: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The source is not a valid template (or uses a function not offered).
    Parse,
    /// Execution failed (missing key, wrong type, function error).
    Exec,
    /// A bound in [`Limits`] or [`Options`] was reached.
    Limit,
}

/// A parse or execution error. Its message names the template, position and
/// function, never data values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub kind: ErrorKind,
    pub message: String,
}

impl TemplateError {
    fn new(kind: ErrorKind, message: String) -> Self {
        TemplateError { kind, message }
    }
}

/// A parsed template and the templates it defines (`define`, `block`, or
/// added with [`Template::add`]).
#[derive(Clone)]
pub struct Template {
    name: String,
    bodies: BTreeMap<String, Vec<parse::Node>>,
    options: Options,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// Parses `text` as the template `name`.
    pub fn parse(
        name: &str,
        text: impl AsRef<[u8]>,
        options: &Options,
    ) -> Result<Template, TemplateError> {
        let mut t = Template {
            name: name.to_string(),
            bodies: BTreeMap::new(),
            options: options.clone(),
        };
        t.add(name, text)?;
        Ok(t)
    }

    /// Parses another source into this set (ESO's `templateFrom` parts): its
    /// body becomes template `name`, its `define`s are added.
    pub fn add(&mut self, name: &str, text: impl AsRef<[u8]>) -> Result<(), TemplateError> {
        let text = text.as_ref();
        if text.len() > self.options.max_source_bytes {
            return Err(TemplateError::new(
                ErrorKind::Limit,
                format!(
                    "template: {name}: source is larger than {} bytes",
                    self.options.max_source_bytes
                ),
            ));
        }
        let cfg = parse::ParseConfig {
            left: &self.options.left,
            right: &self.options.right,
            max_depth: self.options.max_nesting,
            funcs: &self.options.funcs,
        };
        let parsed = parse::parse(name, text, &cfg)?;
        for (n, body) in parsed.defines {
            self.bodies.insert(n, body);
        }
        let empty = parsed
            .body
            .iter()
            .all(|n| matches!(n, parse::Node::Text(t) if t.iter().all(u8::is_ascii_whitespace)));
        if !(empty && self.bodies.contains_key(name)) {
            self.bodies.insert(name.to_string(), parsed.body);
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the template named at parse time with `data` as dot.
    pub fn execute(&self, data: &Value, limits: &Limits) -> Result<Vec<u8>, TemplateError> {
        exec::run(self, &self.name, data, limits)
    }

    /// Runs one template of the set.
    pub fn execute_named(
        &self,
        name: &str,
        data: &Value,
        limits: &Limits,
    ) -> Result<Vec<u8>, TemplateError> {
        exec::run(self, name, data, limits)
    }
}
