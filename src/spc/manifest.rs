//! Reading a SecretProviderClass from a manifest file (for `check` and
//! `mount`): YAML, possibly several documents, exactly one class.

use serde_json::Value;

use super::SecretProviderClass;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("no SecretProviderClass (apiVersion secrets-store.csi.x-k8s.io/v1) in the file")]
    None,
    #[error("{0} SecretProviderClass documents in the file; give one")]
    Several(usize),
    #[error("the SecretProviderClass is malformed: {0}")]
    Malformed(String),
}

pub fn load_manifest(text: &str) -> Result<SecretProviderClass, ManifestError> {
    let docs: Vec<Value> = serde_saphyr::from_str_multiple(text)
        .map_err(|e| ManifestError::Yaml(first_line(&e.to_string())))?;
    let mut classes: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            d.get("kind").and_then(Value::as_str) == Some("SecretProviderClass")
                && d.get("apiVersion")
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.starts_with("secrets-store.csi.x-k8s.io/"))
        })
        .collect();
    match classes.len() {
        0 => Err(ManifestError::None),
        1 => serde_json::from_value(classes.remove(0))
            .map_err(|e| ManifestError::Malformed(e.to_string())),
        n => Err(ManifestError::Several(n)),
    }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    // The parser starts its own text with "error: "; ours is said once.
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// Where the text of `parameters.objects` starts in a manifest file, when
/// it is a block scalar (`objects: |`, as everyone writes it): the line
/// before its first line (1-based) and its indentation. A position inside
/// `objects` (line l, column c) is then line `start + l`, column
/// `indent + c` of the file.
pub fn objects_origin(text: &str) -> Option<(u64, u64)> {
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| {
        let t = l.trim_start();
        t.strip_prefix("objects:")
            .is_some_and(|rest| rest.trim_start().starts_with(['|', '>']))
    })?;
    let header_indent = lines[header].len() - lines[header].trim_start().len();
    let first = lines[header + 1..].iter().find(|l| !l.trim().is_empty())?;
    let indent = first.len() - first.trim_start().len();
    (indent > header_indent).then_some((header as u64 + 1, indent as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS: &str = "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: db, namespace: shop}\nspec:\n  provider: aws\n  parameters:\n    region: us-east-1\n    objects: |\n      - objectName: a\n        objectType: secretsmanager\n";

    #[test]
    fn loads_the_class_among_other_documents() {
        let text =
            format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: x}}\n---\n{CLASS}");
        let c = load_manifest(&text).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("db"));
        assert_eq!(c.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(c.spec.provider, "aws");
        assert!(c.spec.parameters["objects"].contains("objectName: a"));
    }

    #[test]
    fn the_objects_block_is_located_in_the_file() {
        // Line 8 is `objects: |`; its text starts on line 9, indented 6.
        assert_eq!(objects_origin(CLASS), Some((8, 6)));
        assert_eq!(objects_origin("objects: \"- a\"\n"), None);
    }

    #[test]
    fn zero_or_two_classes_are_errors() {
        assert_eq!(
            load_manifest("apiVersion: v1\nkind: Pod\n").unwrap_err(),
            ManifestError::None
        );
        assert_eq!(
            load_manifest(&format!("{CLASS}---\n{CLASS}")).unwrap_err(),
            ManifestError::Several(2)
        );
        assert!(matches!(
            load_manifest("a: [").unwrap_err(),
            ManifestError::Yaml(_)
        ));
    }
}
