use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use std::collections::BTreeMap;

use crate::render::manifest::Served;
use crate::render::{self, FileSet};
use crate::secret::SecretBytes;
use crate::spc::{self, MountPlan};

/// Validate a SecretProviderClass offline and list the files it produces.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The manifest holding the SecretProviderClass.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Print a JSON array of {path, mode, source}.
    #[arg(long)]
    pub json: bool,
    /// Region for a class that names none (as the driver's AWS_REGION).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Render the files offline from sample values: a YAML or JSON map of
    /// objectName (or the object's file name) to its value. Lists each file
    /// with its size; values are printed only with --show-values.
    #[arg(long)]
    pub values: Option<PathBuf>,
    /// With --values, print what each file would hold.
    #[arg(long, requires = "values")]
    pub show_values: bool,
}

#[derive(Serialize)]
struct FileLine<'a> {
    path: &'a str,
    mode: String,
    source: &'a str,
}

/// Exit code 0 and the file list when valid; an error (exit 1) otherwise.
pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let file = super::ClassFile::read(&args.file)?;
    let class = &file.class;
    // Typos first, whether or not the class plans: they are often why not.
    for warning in spc::lint(&class.spec.parameters) {
        eprintln!("warning: {warning}");
    }
    // The driver's default limits: what `serve` accepts unless told more.
    let plan = spc::plan_class(
        &class.spec,
        args.region.as_deref(),
        spc::VolumeLimits::default(),
    )
    .map_err(|e| file.error(&e))?;
    let listing = match &args.values {
        None => render_listing(&plan, args.json),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let samples: BTreeMap<String, String> = serde_saphyr::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: sample values must be a map of objectName to value: {}",
                    path.display(),
                    e.to_string().lines().next().unwrap_or_default()
                )
            })?;
            let set = render_samples(&plan, &samples)
                .map_err(|e| anyhow::anyhow!("SecretProviderClass {}: {e}", file.id()))?;
            rendered_listing(&plan, &set, args.json, args.show_values)
        }
    };
    // `check --json | head`: a reader that stops early is not an error.
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{listing}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write the listing: {e}"))
        }
        _ => Ok(()),
    }
}

fn render_listing(plan: &MountPlan, json: bool) -> String {
    let written = plan.written();
    let lines: Vec<FileLine<'_>> = written
        .iter()
        .map(|(f, from)| FileLine {
            path: f.path.as_str(),
            mode: format!("{:04o}", f.mode),
            source: from,
        })
        .collect();
    if json {
        return serde_json::to_string_pretty(&lines).unwrap_or_default();
    }
    lines
        .iter()
        .map(|l| format!("{}  {}  (from {})", l.mode, l.path, l.source))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The files the class would write for these sample values, rendered as the
/// driver renders them (the same limits), with a manifest of sample
/// versions.
fn render_samples(plan: &MountPlan, samples: &BTreeMap<String, String>) -> anyhow::Result<FileSet> {
    let mut values = Vec::with_capacity(plan.objects.len());
    let mut missing = Vec::new();
    for o in &plan.objects {
        match samples
            .get(o.name())
            .or_else(|| samples.get(o.file.path.as_str()))
        {
            Some(v) => values.push(SecretBytes::from(v.as_str())),
            None => missing.push(o.name().to_owned()),
        }
    }
    if !missing.is_empty() {
        anyhow::bail!(
            "no sample value for {} (give each by its objectName in --values)",
            missing.join(", ")
        );
    }
    let mut set = render::render(plan, &values)?;
    let served: Vec<Served> = plan
        .objects
        .iter()
        .map(|_| Served {
            version: Some("sample".into()),
            ..Served::default()
        })
        .collect();
    if let Some(m) = render::manifest::render(plan, &served, None, crate::publish::now_ms()) {
        set = set.with(m);
    }
    Ok(set)
}

#[derive(Serialize)]
struct RenderedLine<'a> {
    path: &'a str,
    mode: String,
    bytes: usize,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

fn rendered_listing(plan: &MountPlan, set: &FileSet, json: bool, show: bool) -> String {
    let written = plan.written();
    let lines: Vec<RenderedLine<'_>> = set
        .files()
        .iter()
        .map(|f| RenderedLine {
            path: f.path.as_str(),
            mode: format!("{:04o}", f.mode),
            bytes: f.bytes.len(),
            source: written
                .iter()
                .find(|(spec, _)| spec.path == f.path)
                .map_or("", |(_, from)| from.as_str()),
            content: show.then(|| String::from_utf8_lossy(f.bytes.expose()).into_owned()),
        })
        .collect();
    if json {
        return serde_json::to_string_pretty(&lines).unwrap_or_default();
    }
    lines
        .iter()
        .map(|l| {
            let head = format!(
                "{}  {}  ({} bytes, from {})",
                l.mode, l.path, l.bytes, l.source
            );
            match &l.content {
                Some(c) => format!("{head}\n{}", indent(c)),
                None => head,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_in_text_and_json() {
        let params = [
            ("region".to_string(), "r".to_string()),
            ("objects".to_string(), "- {objectName: prod/db, objectType: secretsmanager, jmesPath: [{path: u, objectAlias: user, filePermission: \"0400\"}]}".to_string()),
        ]
        .into();
        let plan = spc::plan(&params, None).unwrap();
        assert_eq!(
            render_listing(&plan, false),
            "0644  prod_db  (from prod/db)\n0400  user  (from prod/db)"
        );
        let v: serde_json::Value = serde_json::from_str(&render_listing(&plan, true)).unwrap();
        assert_eq!(
            v[1],
            serde_json::json!({"path": "user", "mode": "0400", "source": "prod/db"})
        );
    }

    #[test]
    fn samples_render_the_templates_and_list_sizes_not_values() {
        let params = [
            ("region".to_string(), "r".to_string()),
            (
                "objects".to_string(),
                "- {objectName: prod/db, objectType: secretsmanager}".to_string(),
            ),
            (
                "templates".to_string(),
                "- {path: app.env, template: 'PW={{ .prod_db }}'}".to_string(),
            ),
            ("rotationManifest".to_string(), "m.json".to_string()),
        ]
        .into();
        let plan = spc::plan(&params, None).unwrap();
        let samples: BTreeMap<String, String> = [("prod/db".into(), "hunter2".into())].into();
        let set = render_samples(&plan, &samples).unwrap();
        let text = rendered_listing(&plan, &set, false, false);
        assert!(
            text.contains("0644  app.env  (10 bytes, from templates[0])"),
            "{text}"
        );
        assert!(
            text.contains("0644  prod_db  (7 bytes, from prod/db)"),
            "{text}"
        );
        assert!(text.contains("m.json"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let shown = rendered_listing(&plan, &set, false, true);
        assert!(shown.contains("    | PW=hunter2"), "{shown}");
        let v: serde_json::Value =
            serde_json::from_str(&rendered_listing(&plan, &set, true, false)).unwrap();
        assert_eq!(v[0]["path"], "app.env");
        assert_eq!(v[0]["bytes"], 10);
        assert!(v[0].get("content").is_none());
        // A missing sample is named; a file name works as a key too.
        let e = render_samples(&plan, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no sample value for prod/db"), "{e}");
        let by_file: BTreeMap<String, String> = [("prod_db".into(), "x".into())].into();
        assert!(render_samples(&plan, &by_file).is_ok());
    }
}
