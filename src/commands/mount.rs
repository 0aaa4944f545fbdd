use std::path::PathBuf;

use crate::fetch::Fetcher;
use crate::identity::{AwsIdentity, WebIdentity};
use crate::publish::fetch_and_render;
use crate::secret::Token;
use crate::spc;
use crate::volume::{self, TmpfsOptions};

/// Run the whole pipeline without Kubernetes and write the files into a
/// directory.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The manifest holding the SecretProviderClass.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Where to write the files.
    #[arg(long)]
    pub target: PathBuf,
    /// Assume this role with the web-identity token in --token-file (as IRSA
    /// does); without it the standard AWS credentials are used.
    #[arg(long, requires = "token_file")]
    pub role_arn: Option<String>,
    /// A file holding a web-identity token (JWT) for --role-arn.
    #[arg(long, requires = "role_arn")]
    pub token_file: Option<PathBuf>,
    /// Write into the directory as it is instead of mounting a tmpfs there.
    #[arg(long)]
    pub no_tmpfs: bool,
    /// Size cap of the tmpfs.
    #[arg(long, default_value = "16Mi", value_parser = super::parse_size)]
    pub tmpfs_size: u64,
}

pub async fn mount(args: &MountArgs) -> anyhow::Result<()> {
    let class = super::load_class(&args.file)?;
    let id = super::class_id(&class);
    let sdk = super::aws_config().await;
    let default_region = sdk.region().map(|r| r.to_string());
    let plan = spc::plan_class(&class.spec, default_region.as_deref())
        .map_err(|e| anyhow::anyhow!("SecretProviderClass {id}: {e}"))?;
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    let identity = match (&args.role_arn, &args.token_file) {
        (Some(role), Some(file)) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", file.display()))?;
            let token = Token::new(token.trim().to_owned());
            let credentials = WebIdentity::new(sdk.clone())
                .assume_role(&plan.region, role, &token, "aws-secrets-csi-cli")
                .await?;
            AwsIdentity::Pod(credentials)
        }
        _ => AwsIdentity::Ambient,
    };
    let set = fetch_and_render(&Fetcher::new(sdk), &plan, &identity, &id).await?;
    let target = args.target.clone();
    let tmpfs = (!args.no_tmpfs).then(|| TmpfsOptions {
        size_bytes: args.tmpfs_size,
        ..Default::default()
    });
    let count = set.len();
    tokio::task::spawn_blocking(move || -> Result<(), volume::VolumeError> {
        let mounted = tmpfs.is_some() && volume::is_mount_point(&target)?;
        if mounted {
            // Already ours from an earlier run: swap the content in place.
            volume::write_file_set(&target, &set).map(|_| ())
        } else {
            volume::populate(&target, &set, tmpfs.as_ref())
        }
    })
    .await??;
    println!("wrote {count} file(s) to {}", args.target.display());
    Ok(())
}
