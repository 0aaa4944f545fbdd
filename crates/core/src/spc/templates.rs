//! Our additions to a SecretProviderClass that shape the volume's files:
//! `templates` (files rendered by the template engine the ExternalSecret
//! controller uses, over the class's fetched values), `objectFiles` (whether
//! each object's own files are written too) and `rotationManifest` (a file
//! naming each object's version, swapped with the files). Pure.

use std::sync::Arc;

use serde_json::Value;

use super::paths::FilePath;
use super::plan::{FileSpec, PlanError, kind_of as kind};
use crate::template::{Options, Template};

/// Longest template source accepted (the whole class is at most 1.5 MB in
/// etcd; one template this large is already unusual).
pub const MAX_TEMPLATE_BYTES: usize = 256 * 1024;

/// Mode of a templated file that sets none: the mode of every other file
/// of the volume. The files are root's (the CSIDriver's fsGroupPolicy is
/// None), so a stricter default would hide the file from a container that
/// does not run as root; the volume is the pod's alone.
pub const DEFAULT_TEMPLATE_MODE: u32 = super::plan::DEFAULT_FILE_MODE;

/// One file rendered from a template.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub file: FileSpec,
    /// The source, kept to compare plans.
    pub source: String,
    /// Parsed once, when the class is planned.
    pub template: Arc<Template>,
}

impl PartialEq for TemplateFile {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.source == other.source
    }
}

impl Eq for TemplateFile {}

const TEMPLATE_KEYS: [&str; 3] = ["path", "template", "filePermission"];

/// The name a template is known by in its errors: `templates[0] (app.env)`.
pub fn template_label(index: usize, path: &str) -> String {
    format!("templates[{index}] ({path})")
}

/// Parses the `templates` parameter: a YAML list of `{path, template,
/// filePermission}`. Every key is ours, so an unknown one is refused by its
/// path, and every template is parsed now (a function the engine does not
/// have, or a syntax error, names the template and its line).
pub fn parse_templates(yaml: &str) -> Result<Vec<TemplateFile>, PlanError> {
    if yaml.trim().is_empty() {
        return Ok(Vec::new());
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_aliases: 0,
            max_depth: 8,
            max_nodes: 100_000,
        },
    };
    let bad = |message: String| PlanError::Templates(message);
    let items: Value = serde_saphyr::from_str_with_options(yaml, options).map_err(|e| {
        let text = e.to_string();
        bad(text.lines().next().unwrap_or_default().to_owned())
    })?;
    let items = match items {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(bad(format!("must be a list, found {}", kind(&other)))),
    };
    let engine = Options {
        max_source_bytes: MAX_TEMPLATE_BYTES,
        ..Options::default()
    };
    let mut out: Vec<TemplateFile> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let at = |key: &str| format!("[{index}].{key}");
        let Value::Object(map) = item else {
            return Err(bad(format!(
                "[{index}] must be a mapping with path and template, found {}",
                kind(&item)
            )));
        };
        if let Some(key) = map.keys().find(|k| !TEMPLATE_KEYS.contains(&k.as_str())) {
            return Err(bad(format!(
                "{}: unknown field (known: {})",
                at(key),
                TEMPLATE_KEYS.join(", ")
            )));
        }
        let text = |key: &str| -> Result<Option<&str>, PlanError> {
            match map.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(bad(format!(
                    "{} must be a string, found {}",
                    at(key),
                    kind(other)
                ))),
            }
        };
        let path = text("path")?.ok_or_else(|| bad(format!("{} is required", at("path"))))?;
        let source =
            text("template")?.ok_or_else(|| bad(format!("{} is required", at("template"))))?;
        let path = FilePath::parse(path).map_err(|rule| PlanError::BadFileName {
            file: path.to_owned(),
            object: format!("templates[{index}]"),
            rule,
        })?;
        let mode = match text("filePermission")? {
            None | Some("") => DEFAULT_TEMPLATE_MODE,
            Some(p) => super::plan::parse_mode(p)?,
        };
        let label = template_label(index, path.as_str());
        let template =
            Template::parse(&label, source, &engine).map_err(|e| PlanError::Template(e.message))?;
        out.push(TemplateFile {
            file: FileSpec { path, mode },
            source: source.to_owned(),
            template: Arc::new(template),
        });
    }
    Ok(out)
}

/// `objectFiles`: "true" (the default) or "false".
pub fn parse_object_files(v: &str) -> Result<bool, PlanError> {
    match v.trim() {
        "" => Ok(true),
        v if v.eq_ignore_ascii_case("true") => Ok(true),
        v if v.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(PlanError::ObjectFiles(other.to_owned())),
    }
}

/// `rotationManifest`: the file to write the manifest to, or nothing.
pub fn parse_manifest(v: &str) -> Result<Option<FileSpec>, PlanError> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("false") {
        return Ok(None);
    }
    let path = FilePath::parse(v).map_err(|rule| PlanError::BadFileName {
        file: v.to_owned(),
        object: "rotationManifest".to_owned(),
        rule,
    })?;
    // The manifest names objects and versions, nothing secret: readable by
    // every user of the pod, as the AWS provider's default mode is.
    Ok(Some(FileSpec {
        path,
        mode: super::plan::DEFAULT_FILE_MODE,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_path_template_and_mode() {
        let t = parse_templates(
            "- path: app.env\n  template: |\n    USER={{ .user }}\n- path: conf/app.json\n  filePermission: \"0440\"\n  template: '{{ .db }}'\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].file.path.as_str(), "app.env");
        assert_eq!(t[0].file.mode, DEFAULT_TEMPLATE_MODE);
        assert_eq!(t[0].source, "USER={{ .user }}\n");
        assert_eq!(t[1].file.path.as_str(), "conf/app.json");
        assert_eq!(t[1].file.mode, 0o440);
        assert!(parse_templates("").unwrap().is_empty());
        assert!(parse_templates("  \n").unwrap().is_empty());
    }

    #[test]
    fn every_mistake_is_refused_by_its_path() {
        let cases = [
            ("- path: a\n", "templates[0].template is required"),
            ("- template: x\n", "templates[0].path is required"),
            (
                "- {path: a, template: x, mode: \"0400\"}",
                "templates[0].mode: unknown field",
            ),
            (
                "- {path: a, template: 3}",
                "templates[0].template must be a string",
            ),
            ("{path: a}", "must be a list, found a mapping"),
            ("- x", "templates[0] must be a mapping"),
            (
                "- {path: a, template: x, filePermission: \"4755\"}",
                "setuid, setgid and sticky bits",
            ),
            (
                "- {path: a, template: x, filePermission: 0400}",
                "filePermission must be a string",
            ),
            ("- {path: ../a, template: x}", "path can not contain ../"),
            ("- {path: /etc/a, template: x}", "absolute path"),
            (
                "- {path: ..data/a, template: x}",
                "reserved for the volume layout",
            ),
            ("- {path: a, template: \"{{ .a \"}", "templates[0] (a):1"),
            (
                "- {path: a, template: x}\n- {path: b, template: \"\\n{{ env \\\"HOME\\\" }}\"}",
                "templates[1] (b):2",
            ),
            ("- [", "parameters.templates"),
        ];
        for (yaml, want) in cases {
            let e = parse_templates(yaml).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml:?}: {e}");
        }
    }

    #[test]
    fn a_template_larger_than_the_bound_is_refused() {
        let big = format!(
            "- path: a\n  template: \"{}\"\n",
            "x".repeat(MAX_TEMPLATE_BYTES + 1)
        );
        let e = parse_templates(&big).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn object_files_and_manifest_parameters() {
        assert!(parse_object_files("").unwrap());
        assert!(parse_object_files("True").unwrap());
        assert!(!parse_object_files("false").unwrap());
        assert!(parse_object_files("no").is_err());
        assert_eq!(parse_manifest("").unwrap(), None);
        assert_eq!(parse_manifest("false").unwrap(), None);
        let m = parse_manifest(".rotation.json").unwrap().unwrap();
        assert_eq!((m.path.as_str(), m.mode), (".rotation.json", 0o644));
        assert!(parse_manifest("../x").is_err());
    }

    #[test]
    fn a_template_file_may_not_take_an_object_file_or_the_manifest() {
        let plan = |extra: &[(&str, &str)]| {
            let mut params: std::collections::BTreeMap<String, String> = [
                ("region", "r"),
                (
                    "objects",
                    "- {objectName: prod/db, objectType: secretsmanager}",
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            for (k, v) in extra {
                params.insert(k.to_string(), v.to_string());
            }
            crate::spc::plan(&params, None)
        };
        let e = plan(&[("templates", "- {path: prod_db, template: x}")]).unwrap_err();
        assert!(
            e.to_string().contains("\"prod_db\" (object templates[0])"),
            "{e}"
        );
        let e = plan(&[("templates", "- {path: prod_db/x, template: x}")]).unwrap_err();
        assert!(matches!(e, PlanError::FileCollision { .. }), "{e}");
        let e = plan(&[
            ("templates", "- {path: m, template: x}"),
            ("rotationManifest", "m"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("rotationManifest"), "{e}");
        // Not written, an object's file name is free for a template.
        let p = plan(&[
            ("templates", "- {path: prod_db, template: x}"),
            ("objectFiles", "false"),
        ])
        .unwrap();
        assert_eq!(p.written().len(), 1);
        // Too many templates for the volume are refused by their count.
        let many: String = (0..3000)
            .map(|i| format!("- {{path: f{i}, template: x}}\n"))
            .collect();
        let e = plan(&[("templates", &many)]).unwrap_err();
        assert!(matches!(e, PlanError::TooManyFiles { .. }), "{e}");
        // A flow-style list is counted too; a template's own `- ` lines
        // are not entries.
        let flow = format!(
            "[{}]",
            (0..3000)
                .map(|i| format!("{{path: f{i}, template: x}}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let e = plan(&[("templates", &flow)]).unwrap_err();
        assert!(
            matches!(e, PlanError::TooManyFiles { files: 3001, .. }),
            "{e}"
        );
        let dashes: String = (0..3000)
            .map(|i| format!("          - item {i}\n"))
            .collect();
        let one = format!("- path: list.yaml\n  template: |\n{dashes}");
        assert!(plan(&[("templates", &one)]).is_ok());
    }
}
