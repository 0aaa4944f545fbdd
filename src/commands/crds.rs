use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::controller::crds as generated;

/// Print the External Secrets CRDs, generated from the typed API the
/// controller reads: `aws-secrets-csi crds | kubectl apply --server-side -f -`.
#[derive(Debug, clap::Args)]
pub struct CrdsArgs {
    /// Write each CRD to DIR/crd-<plural>.yaml instead of printing them
    /// (repeatable; deploy/controller is what the chart renders).
    #[arg(long = "dir", value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
}

pub fn crds(args: &CrdsArgs) -> anyhow::Result<()> {
    if args.dirs.is_empty() {
        let mut out = std::io::stdout().lock();
        out.write_all(generated::all_yaml().as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write the CRDs to stdout")?;
        return Ok(());
    }
    for dir in &args.dirs {
        for crd in generated::crds() {
            let path = dir.join(generated::file_name(&crd));
            std::fs::write(&path, generated::to_yaml(&crd))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
