//! Step "render": fetched values -> the [`FileSet`] to write. Pure: the whole
//! value of each object becomes one file, each jmesPath entry cuts one more
//! file out of a JSON value, each template of the class renders one file
//! over all of them, and the [`manifest`] names what was fetched.

pub mod manifest;

use crate::secret::SecretBytes;
use crate::spc::{FilePath, MountPlan};

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: FilePath,
    pub mode: u32,
    pub bytes: SecretBytes,
}

/// The whole content of a volume, sorted by path. It is written (or not) as
/// one unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileSet {
    files: Vec<FileEntry>,
}

impl FileSet {
    pub fn new(mut files: Vec<FileEntry>) -> Self {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        FileSet { files }
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The set with one more file (in its place by path; a file of the same
    /// path is replaced).
    pub fn with(mut self, entry: FileEntry) -> Self {
        self.files.retain(|f| f.path != entry.path);
        self.files.push(entry);
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        self
    }

    /// Total bytes of content, to check against the volume's size.
    pub fn content_bytes(&self) -> usize {
        self.files.iter().map(|f| f.bytes.len()).sum()
    }
}

/// Why fetched values could not become files. Texts follow the AWS provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("Invalid JSON used with jmesPath in secret: {0}.")]
    NotJson(String),
    #[error("JMES Path - {path} for object alias - {alias} does not point to a valid object.")]
    NoMatch { path: String, alias: String },
    #[error(
        "Invalid JMES search result type for path:{path}. Only string, number or boolean is allowed."
    )]
    ResultType { path: String },
    #[error("Invalid JMES Path: {0}.")]
    BadExpression(String),
    #[error(
        "the files would hold more than {limit} bytes, the size of the volume (the driver's --tmpfs-size); stopped at {file}"
    )]
    TooLarge { limit: u64, file: String },
    /// The engine's text names the template (`templates[i] (path)`), its
    /// line and column, and the function; never a value.
    #[error("{message}")]
    Template { message: String },
    #[error("internal: {expected} objects planned but {got} values fetched")]
    Mismatch { expected: usize, got: usize },
}

/// Counts the bytes of a volume as its files are made, so that rendering
/// stops at the volume's size instead of holding more than it could write.
struct Budget {
    limit: u64,
    used: u64,
}

impl Budget {
    fn take(&mut self, bytes: usize, file: &FilePath) -> Result<(), RenderError> {
        self.used = self.used.saturating_add(bytes as u64);
        if self.used > self.limit {
            return Err(RenderError::TooLarge {
                limit: self.limit,
                file: file.to_string(),
            });
        }
        Ok(())
    }
}

/// Renders `values` (one per planned object, in plan order), within the
/// plan's byte limit: whole-value files share the fetched buffer, and a
/// jmesPath result is counted before it is copied out of its document.
pub fn render(plan: &MountPlan, values: &[SecretBytes]) -> Result<FileSet, RenderError> {
    if plan.objects.len() != values.len() {
        return Err(RenderError::Mismatch {
            expected: plan.objects.len(),
            got: values.len(),
        });
    }
    // What is held while rendering: the written files, and the objects'
    // files that only templates read (`objectFiles: false`), each bounded
    // by the volume's size.
    let mut budget = Budget {
        limit: plan.limits.max_bytes,
        used: 0,
    };
    let mut read_only = Budget {
        limit: plan.limits.max_bytes,
        used: 0,
    };
    let budget_of_objects = if plan.object_files {
        &mut budget
    } else {
        &mut read_only
    };
    let files = object_files(plan, values, budget_of_objects)?;
    if plan.templates.is_empty() {
        return Ok(FileSet::new(files));
    }
    let data: std::collections::BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|f| (f.path.to_string(), f.bytes.expose().to_vec()))
        .collect();
    let data = crate::template::Value::from_secret_data(&data);
    let mut out = if plan.object_files { files } else { Vec::new() };
    for t in &plan.templates {
        let room = plan.limits.max_bytes.saturating_sub(budget.used);
        let limits = crate::template::Limits {
            // One byte more than the room: a larger output is the volume's
            // error (TooLarge), not the template's.
            max_output_bytes: usize::try_from(room.saturating_add(1)).unwrap_or(usize::MAX),
            max_alloc_bytes: TEMPLATE_ALLOC_BYTES,
            ..crate::template::Limits::default()
        };
        let bytes = t
            .template
            .execute(&data, &limits)
            .map_err(|e| match e.kind {
                crate::template::ErrorKind::Limit if e.message.contains("output") => {
                    RenderError::TooLarge {
                        limit: plan.limits.max_bytes,
                        file: t.file.path.to_string(),
                    }
                }
                _ => RenderError::Template { message: e.message },
            })?;
        budget.take(bytes.len(), &t.file.path)?;
        out.push(FileEntry {
            path: t.file.path.clone(),
            mode: t.file.mode,
            bytes: SecretBytes::new(bytes),
        });
    }
    Ok(FileSet::new(out))
}

/// Bytes the functions of one template may allocate in all (a template
/// cannot make the node hold more than this, whatever it calls).
pub const TEMPLATE_ALLOC_BYTES: usize = 64 << 20;

/// The objects' own files: whole values and jmesPath results.
fn object_files(
    plan: &MountPlan,
    values: &[SecretBytes],
    budget: &mut Budget,
) -> Result<Vec<FileEntry>, RenderError> {
    let mut files = Vec::with_capacity(plan.files().count());
    for (object, value) in plan.objects.iter().zip(values) {
        budget.take(value.len(), &object.file.path)?;
        files.push(FileEntry {
            path: object.file.path.clone(),
            mode: object.file.mode,
            bytes: value.clone(),
        });
        if object.jmes.is_empty() {
            continue;
        }
        let json = std::str::from_utf8(value.expose())
            .ok()
            .and_then(|s| jmespath::Variable::from_json(s).ok())
            .ok_or_else(|| RenderError::NotJson(object.name().to_owned()))?;
        let json = std::sync::Arc::new(json);
        for entry in &object.jmes {
            let expression = jmespath::compile(&entry.expression)
                .map_err(|_| RenderError::BadExpression(entry.expression.clone()))?;
            // Searching takes the Arc; the search itself cannot fail on a
            // parsed document except for runtime type errors in functions.
            let found = expression
                .search(json.clone())
                .map_err(|_| RenderError::NoMatch {
                    path: entry.expression.clone(),
                    alias: entry.file.path.to_string(),
                })?;
            let bytes = match &*found {
                jmespath::Variable::Null => {
                    return Err(RenderError::NoMatch {
                        path: entry.expression.clone(),
                        alias: entry.file.path.to_string(),
                    });
                }
                jmespath::Variable::String(s) => {
                    budget.take(s.len(), &entry.file.path)?;
                    s.clone().into_bytes()
                }
                // The AWS provider allows strings only (its issue #250 asks
                // for more); numbers and booleans are written as JSON text.
                jmespath::Variable::Number(n) => {
                    let text = n.to_string();
                    budget.take(text.len(), &entry.file.path)?;
                    text.into_bytes()
                }
                jmespath::Variable::Bool(b) => {
                    let text = b.to_string();
                    budget.take(text.len(), &entry.file.path)?;
                    text.into_bytes()
                }
                _ => {
                    return Err(RenderError::ResultType {
                        path: entry.expression.clone(),
                    });
                }
            };
            files.push(FileEntry {
                path: entry.file.path.clone(),
                mode: entry.file.mode,
                bytes: SecretBytes::new(bytes),
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::spc::plan;

    fn plan_of(objects: &str) -> MountPlan {
        let params: BTreeMap<String, String> = [
            ("region".to_string(), "r".to_string()),
            ("objects".to_string(), objects.to_string()),
        ]
        .into();
        plan(&params, None).unwrap()
    }

    fn contents(set: &FileSet) -> Vec<(String, u32, String)> {
        set.files()
            .iter()
            .map(|f| {
                (
                    f.path.to_string(),
                    f.mode,
                    String::from_utf8_lossy(f.bytes.expose()).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn whole_value_and_jmes_files() {
        let p = plan_of(
            "- objectName: db\n  objectType: secretsmanager\n  jmesPath:\n    - {path: username, objectAlias: user}\n    - {path: nested.port, objectAlias: port, filePermission: \"0400\"}\n    - {path: '\"a-b\"', objectAlias: hyph}\n",
        );
        let value = SecretBytes::from(r#"{"username":"admin","nested":{"port":5432},"a-b":"x"}"#);
        let set = render(&p, &[value]).unwrap();
        assert_eq!(
            contents(&set),
            vec![
                (
                    "db".into(),
                    0o644,
                    r#"{"username":"admin","nested":{"port":5432},"a-b":"x"}"#.into()
                ),
                ("hyph".into(), 0o644, "x".into()),
                ("port".into(), 0o400, "5432".into()),
                ("user".into(), 0o644, "admin".into()),
            ]
        );
    }

    #[test]
    fn binary_values_pass_through_untouched() {
        let p = plan_of("- {objectName: bin, objectType: secretsmanager}");
        let bytes: Vec<u8> = (0..=255u8).collect();
        let set = render(&p, &[SecretBytes::new(bytes.clone())]).unwrap();
        assert_eq!(set.files()[0].bytes.expose(), &bytes[..]);
    }

    #[test]
    fn jmes_errors_name_the_object_and_path() {
        let p = plan_of(
            "- objectName: db\n  objectType: secretsmanager\n  jmesPath: [{path: missing, objectAlias: m}]\n",
        );
        assert_eq!(
            render(&p, &[SecretBytes::from("not json")])
                .unwrap_err()
                .to_string(),
            "Invalid JSON used with jmesPath in secret: db."
        );
        assert_eq!(
            render(&p, &[SecretBytes::from("{}")])
                .unwrap_err()
                .to_string(),
            "JMES Path - missing for object alias - m does not point to a valid object."
        );
        let p = plan_of(
            "- objectName: db\n  objectType: secretsmanager\n  jmesPath: [{path: obj, objectAlias: m}]\n",
        );
        assert_eq!(
            render(&p, &[SecretBytes::from(r#"{"obj":{"a":1}}"#)])
                .unwrap_err()
                .to_string(),
            "Invalid JMES search result type for path:obj. Only string, number or boolean is allowed."
        );
        assert!(render(&p, &[SecretBytes::new(vec![0xff, 0xfe])]).is_err());
    }

    #[test]
    fn error_messages_never_contain_the_value() {
        let p = plan_of(
            "- objectName: db\n  objectType: secretsmanager\n  jmesPath: [{path: obj, objectAlias: m}]\n",
        );
        for value in [
            r#"{"obj":{"pw":"hunter2"}}"#,
            "hunter2 not json",
            r#"{"other":"hunter2"}"#,
        ] {
            let e = render(&p, &[SecretBytes::from(value)]).unwrap_err();
            assert!(!e.to_string().contains("hunter2"));
            assert!(!format!("{e:?}").contains("hunter2"));
        }
    }

    #[test]
    fn rendering_stops_at_the_volume_size() {
        let entries: String = (0..50)
            .map(|i| format!("    - {{path: big, objectAlias: f{i}}}\n"))
            .collect();
        let mut p = plan_of(&format!(
            "- objectName: db\n  objectType: secretsmanager\n  jmesPath:\n{entries}"
        ));
        let value = SecretBytes::from(format!("{{\"big\":\"{}\"}}", "x".repeat(10_000)));
        // 50 copies of 10 kB and the value itself: about 510 kB.
        p.limits.max_bytes = 100_000;
        let e = render(&p, std::slice::from_ref(&value)).unwrap_err();
        assert!(
            matches!(&e, RenderError::TooLarge { limit: 100_000, file } if file.starts_with('f')),
            "{e}"
        );
        assert!(e.to_string().contains("more than 100000 bytes"), "{e}");
        // The whole value alone over the limit stops at the object's file.
        p.limits.max_bytes = 1_000;
        assert!(matches!(
            render(&p, std::slice::from_ref(&value)),
            Err(RenderError::TooLarge { file, .. }) if file == "db"
        ));
        p.limits.max_bytes = 600_000;
        let set = render(&p, &[value]).unwrap();
        assert_eq!(set.len(), 51);
        assert!(set.content_bytes() <= 600_000);
    }

    #[test]
    fn whole_value_files_share_the_fetched_buffer() {
        let p = plan_of(
            "- {objectName: a, objectType: secretsmanager}\n- {objectName: a, objectType: secretsmanager, objectAlias: b}",
        );
        let value = SecretBytes::from("v".repeat(1000));
        let set = render(&p, &[value.clone(), value.clone()]).unwrap();
        for f in set.files() {
            assert!(std::ptr::eq(
                f.bytes.expose().as_ptr(),
                value.expose().as_ptr()
            ));
        }
    }

    fn plan_with(objects: &str, extra: &[(&str, &str)]) -> MountPlan {
        let mut params: BTreeMap<String, String> = [
            ("region".to_string(), "r".to_string()),
            ("objects".to_string(), objects.to_string()),
        ]
        .into();
        for (k, v) in extra {
            params.insert(k.to_string(), v.to_string());
        }
        plan(&params, None).unwrap()
    }

    const DB: &str = "- objectName: prod/db\n  objectType: secretsmanager\n  jmesPath: [{path: username, objectAlias: user}]\n- {objectName: /app/key, objectType: ssmparameter, objectAlias: key}";

    #[test]
    fn templates_render_over_every_object_file_and_jmes_alias() {
        let p = plan_with(
            DB,
            &[(
                "templates",
                "- path: app.env\n  template: |\n    DB_USER={{ .user }}\n    DB_PASSWORD={{ (.prod_db | fromJson).password | quote }}\n    API_KEY={{ index . \"key\" }}\n- {path: conf/k.b64, filePermission: \"0440\", template: '{{ .key | b64enc }}'}",
            )],
        );
        let set = render(
            &p,
            &[
                SecretBytes::from(r#"{"username":"admin","password":"p\"w"}"#),
                SecretBytes::from("k1"),
            ],
        )
        .unwrap();
        let c = contents(&set);
        let names: Vec<&str> = c.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names, ["app.env", "conf/k.b64", "key", "prod_db", "user"]);
        assert_eq!(
            c[0],
            (
                "app.env".into(),
                0o644,
                "DB_USER=admin\nDB_PASSWORD=\"p\\\"w\"\nAPI_KEY=k1\n".into()
            )
        );
        assert_eq!(c[1], ("conf/k.b64".into(), 0o440, "azE=".into()));
    }

    #[test]
    fn without_object_files_only_templates_are_written() {
        let p = plan_with(
            DB,
            &[
                ("objectFiles", "false"),
                (
                    "templates",
                    "- {path: u, template: '{{ .user }}-{{ .key }}'}",
                ),
            ],
        );
        let set = render(
            &p,
            &[
                SecretBytes::from(r#"{"username":"admin"}"#),
                SecretBytes::from("k"),
            ],
        )
        .unwrap();
        assert_eq!(contents(&set), vec![("u".into(), 0o644, "admin-k".into())]);
    }

    #[test]
    fn a_template_error_names_the_template_and_line_never_the_value() {
        let p = plan_with(
            DB,
            &[(
                "templates",
                "- path: app.env\n  template: |\n    A={{ .user }}\n    B={{ .missing }}\n",
            )],
        );
        let e = render(
            &p,
            &[
                SecretBytes::from(r#"{"username":"hunter2"}"#),
                SecretBytes::from("k"),
            ],
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("templates[0] (app.env):2"), "{text}");
        assert!(text.contains("missing"), "{text}");
        assert!(!text.contains("hunter2") && !format!("{e:?}").contains("hunter2"));
        // A function failing on a value does not quote it either.
        let p = plan_with(
            DB,
            &[("templates", "- {path: x, template: '{{ .key | b64dec }}'}")],
        );
        let e = render(
            &p,
            &[SecretBytes::from("{}"), SecretBytes::from("hunter2!!")],
        )
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn template_output_is_bounded_by_the_volume() {
        let mut p = plan_with(
            "- {objectName: a, objectType: secretsmanager}",
            &[(
                "templates",
                "- {path: big, template: '{{ range $i := until 1000 }}{{ $.a }}{{ end }}'}",
            )],
        );
        p.limits.max_bytes = 50_000;
        let e = render(&p, &[SecretBytes::from("x".repeat(100))]).unwrap_err();
        assert!(
            matches!(&e, RenderError::TooLarge { limit: 50_000, file } if file == "big"),
            "{e}"
        );
        p.limits.max_bytes = 200_000;
        let set = render(&p, &[SecretBytes::from("x".repeat(100))]).unwrap();
        assert_eq!(set.content_bytes(), 100 + 100_000);
        // Objects only templates read are bounded too.
        p.object_files = false;
        p.limits.max_bytes = 50;
        assert!(matches!(
            render(&p, &[SecretBytes::from("x".repeat(100))]),
            Err(RenderError::TooLarge { .. })
        ));
    }

    #[test]
    fn count_mismatch_is_an_error_not_a_panic() {
        let p = plan_of("- {objectName: a, objectType: secretsmanager}");
        assert!(matches!(render(&p, &[]), Err(RenderError::Mismatch { .. })));
    }
}
