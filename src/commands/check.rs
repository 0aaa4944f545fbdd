use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

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
    // `check --json | head`: a reader that stops early is not an error.
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", render_listing(&plan, args.json)).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write the listing: {e}"))
        }
        _ => Ok(()),
    }
}

fn render_listing(plan: &MountPlan, json: bool) -> String {
    let lines: Vec<FileLine<'_>> = plan
        .files()
        .map(|(f, o)| FileLine {
            path: f.path.as_str(),
            mode: format!("{:04o}", f.mode),
            source: o.name(),
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
}
