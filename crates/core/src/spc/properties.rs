//! Property tests of the parts that take hostile input: whatever a class
//! says, planning never panics, and every file it plans stays inside the
//! volume and apart from every other file.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{FilePath, plan};

/// Strings built from the characters that matter to paths and YAML.
fn nasty() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r"[a-z./\\_:\- \x00{}\[\]\x27\x22#&*!|>%@`]{0,24}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_paths_never_leave_the_volume(name in nasty()) {
        if let Ok(path) = FilePath::parse(&name) {
            prop_assert!(!path.as_str().starts_with('/'));
            for component in path.components() {
                prop_assert!(!component.is_empty() && component != "." && component != "..");
                prop_assert!(!component.starts_with(".."));
                prop_assert!(!component.contains('\0'));
            }
            let root = std::path::Path::new("/volume");
            let joined = root.join(path.as_str());
            prop_assert!(joined.starts_with(root));
            prop_assert!(joined.components().all(|c| !matches!(c, std::path::Component::ParentDir)));
        }
    }

    #[test]
    fn planning_arbitrary_yaml_never_panics(objects in ".{0,200}") {
        let params: BTreeMap<String, String> =
            [("region".to_string(), "us-east-1".to_string()), ("objects".to_string(), objects)].into();
        let _ = plan(&params, None);
    }

    #[test]
    fn planned_files_are_valid_and_apart(
        names in proptest::collection::vec(nasty(), 1..8),
        aliases in proptest::collection::vec(proptest::option::of(nasty()), 8),
        translation in prop_oneof![Just(""), Just("False"), Just("-")],
    ) {
        let mut yaml = String::new();
        for (i, name) in names.iter().enumerate() {
            yaml.push_str(&format!("- objectName: {:?}\n  objectType: secretsmanager\n", name));
            if let Some(alias) = &aliases[i] {
                yaml.push_str(&format!("  objectAlias: {:?}\n", alias));
            }
        }
        let params: BTreeMap<String, String> = [
            ("region".to_string(), "us-east-1".to_string()),
            ("pathTranslation".to_string(), translation.to_string()),
            ("objects".to_string(), yaml),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        if let Ok(p) = plan(&params, None) {
            let files: Vec<&FilePath> = p.files().map(|(f, _)| &f.path).collect();
            for (i, a) in files.iter().enumerate() {
                let reparsed = FilePath::parse(a.as_str());
                prop_assert_eq!(reparsed.as_ref(), Ok(*a));
                for b in &files[i + 1..] {
                    prop_assert!(!a.overlaps(b), "{} and {} overlap", a, b);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Rendering never panics, whatever the expression and the value; it
    /// either writes files or says why not.
    #[test]
    fn rendering_never_panics(
        expression in proptest::string::string_regex(r"[a-z0-9.\[\]*@|&!<>=(),:'\x22 ?{}\-`]{1,24}").unwrap(),
        value in proptest::string::string_regex(r#"[a-z0-9{}\[\]:,\x22. \-tnulrfe]{0,48}"#).unwrap(),
    ) {
        let objects = format!(
            "- objectName: s\n  objectType: secretsmanager\n  jmesPath:\n    - path: {}\n      objectAlias: out\n",
            serde_json::to_string(&expression).unwrap()
        );
        let params: BTreeMap<String, String> =
            [("region".to_string(), "r".to_string()), ("objects".to_string(), objects)].into();
        if let Ok(p) = plan(&params, None) {
            let _ = crate::render::render(&p, &[crate::secret::SecretBytes::from(value.as_str())]);
        }
    }

    /// Templated files never make a volume hold more than its size, and
    /// the manifest comes on top of no less than what was planned, for any
    /// value and any of these templates (repeating, ranging, nesting).
    #[test]
    fn templated_files_stay_within_the_volume(
        value in proptest::string::string_regex(r#"[a-z0-9{}\[\]:,\x22. \-]{0,64}"#).unwrap(),
        repeat in 0usize..5000,
        max_bytes in 1u64..20_000,
        which in 0usize..4,
    ) {
        let template = [
            format!("{{{{ repeat {repeat} .s }}}}"),
            format!("{{{{ range $i := until {repeat} }}}}{{{{ $.s }}}}{{{{ end }}}}"),
            "{{ .s | b64enc | b64enc }}{{ .s_p | quote }}".to_owned(),
            "{{ (.s | fromJson).a | default \"x\" }}".to_owned(),
        ][which].clone();
        let params: BTreeMap<String, String> = [
            ("region", "r".to_owned()),
            ("objects", "- {objectName: s, objectType: secretsmanager}\n- {objectName: /s/p, objectType: ssmparameter}".to_owned()),
            ("templates", format!("- path: t\n  template: {}\n", serde_json::to_string(&template).unwrap())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let limits = super::VolumeLimits { max_files: 16, max_bytes };
        let p = super::plan_within(&params, None, limits).unwrap();
        let values = [crate::secret::SecretBytes::from(value.as_str()), crate::secret::SecretBytes::from("p")];
        match crate::render::render(&p, &values) {
            Ok(set) => prop_assert!(set.content_bytes() as u64 <= max_bytes),
            Err(e) => prop_assert!(!e.to_string().contains(&value) || value.len() < 4, "{}", e),
        }
    }
}

/// Guards the property above against being vacuous: its template does make
/// plans, and they render.
#[test]
fn the_rendering_template_makes_plans() {
    for expression in ["a", "a[0].b || c", "[*].x", "length(@)", "\"a-b\""] {
        let objects = format!(
            "- objectName: s\n  objectType: secretsmanager\n  jmesPath:\n    - path: {}\n      objectAlias: out\n",
            serde_json::to_string(expression).unwrap()
        );
        let params: BTreeMap<String, String> = [
            ("region".to_string(), "r".to_string()),
            ("objects".to_string(), objects),
        ]
        .into();
        let p = plan(&params, None).unwrap_or_else(|e| panic!("{expression}: {e}"));
        let _ = crate::render::render(&p, &[crate::secret::SecretBytes::from(r#"{"a":"x"}"#)]);
    }
}
