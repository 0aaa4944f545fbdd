use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::aws::AwsIdentity;
use crate::fetch::{Fetcher, Priority, RateBudget, Sharing};
use crate::identity::{AgentEndpoints, Identities, PodIdentityAgent};
use crate::metrics::Metrics;
use crate::publish::{fetch_and_render, fingerprint, pinned_values};
use crate::render::FileSet;
use crate::secret::Token;
use crate::spc::{self, MountPlan};
use crate::volume::{self, Layout, Mounted, TmpfsOptions, WriteOutcome};

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
    /// Keep the files current: refresh them every interval until SIGTERM or
    /// SIGINT, swapping them atomically when they change.
    #[arg(long)]
    pub watch: bool,
    /// The interval for --watch; default: the class's refreshInterval, else 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub refresh_interval: Option<Duration>,
}

pub async fn mount(args: &MountArgs) -> anyhow::Result<()> {
    if let Some(role) = &args.role_arn
        && !spc::is_role_arn(role)
    {
        anyhow::bail!(
            "--role-arn {role:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
        );
    }
    let sdk = super::aws_config().await;
    if args.role_arn.is_none() {
        require_credentials(&sdk).await?;
    }
    let metrics = Arc::new(Metrics::new());
    let fetcher = Fetcher::new(sdk.clone(), metrics.clone(), Arc::new(RateBudget::new(&[])));
    let agent = PodIdentityAgent::new(
        AgentEndpoints::default(),
        Duration::from_secs(2),
        Duration::from_secs(10),
    );
    let identities = Identities::new(sdk.clone(), agent, metrics);
    let default_region = sdk.region().map(|r| r.to_string());

    // The directory the user named, and the one above it as the root below
    // which it is resolved (without following links) at every step.
    let target = std::path::absolute(&args.target)?;
    let root = target
        .parent()
        .ok_or_else(|| anyhow::anyhow!("--target must name a directory below another"))?
        .to_path_buf();
    let tmpfs = (!args.no_tmpfs).then(|| TmpfsOptions {
        size_bytes: args.tmpfs_size,
        ..Default::default()
    });
    let layout = match tmpfs {
        Some(_) => Layout::Tmpfs,
        None => Layout::Directory,
    };
    // Files of an earlier run, for the rotation manifest's times (their
    // class is not known, so no value is reused from them).
    let (r, t) = (root.clone(), target.clone());
    let earlier = tokio::task::spawn_blocking(move || match layout {
        Layout::Tmpfs if volume::mounted(&r, &t).ok() != Some(Mounted::Ours) => None,
        _ => volume::read(&r, &t, layout).ok().flatten(),
    })
    .await?;
    let (plan, mut class_fingerprint, set) = render_once(
        args,
        &fetcher,
        &identities,
        &sdk,
        default_region.as_deref(),
        earlier.as_ref().map(|set| (None, set)),
    )
    .await?;
    let count = set.len();
    let (r, t) = (root.clone(), target.clone());
    tokio::task::spawn_blocking(move || -> Result<(), volume::VolumeError> {
        // Already ours from an earlier run (our tmpfs, or with --no-tmpfs the
        // directory the user named holding our layout): swap the content in
        // place.
        let in_place = match layout {
            Layout::Tmpfs => volume::mounted(&r, &t)? == Mounted::Ours,
            Layout::Directory => volume::read(&r, &t, layout).is_ok_and(|s| s.is_some()),
        };
        if in_place {
            volume::write(&r, &t, layout, &set).map(|_| ())
        } else {
            volume::populate(&r, &t, &set, tmpfs.as_ref())
        }
    })
    .await??;
    println!("wrote {count} file(s) to {}", args.target.display());
    if !args.watch {
        return Ok(());
    }

    let interval = args
        .refresh_interval
        .or(plan.refresh_interval)
        .unwrap_or(Duration::from_secs(120));
    println!(
        "refreshing every {}; stop with Ctrl-C",
        humantime::format_duration(interval)
    );
    let mut stop = std::pin::pin!(stop_signal());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = &mut stop => {
                // The files stay: whatever reads them keeps working; the
                // user removes them when done.
                println!(
                    "stopped; the files stay in {}{}",
                    args.target.display(),
                    if layout == Layout::Tmpfs { " (a tmpfs: `umount` it to remove them)" } else { "" }
                );
                return Ok(());
            }
        }
        let (r, t) = (root.clone(), target.clone());
        let previous = tokio::task::spawn_blocking(move || volume::read(&r, &t, layout)).await??;
        // A failed refresh leaves the files as they are; the next one retries.
        let reuse = previous.as_ref().map(|p| (Some(class_fingerprint), p));
        let rendered = render_once(
            args,
            &fetcher,
            &identities,
            &sdk,
            default_region.as_deref(),
            reuse,
        )
        .await;
        match rendered {
            Ok((_, fingerprint, set)) => {
                class_fingerprint = fingerprint;
                let (r, t) = (root.clone(), target.clone());
                let outcome =
                    tokio::task::spawn_blocking(move || volume::write(&r, &t, layout, &set))
                        .await??;
                match outcome {
                    WriteOutcome::Swapped => println!("refreshed: content changed, files swapped"),
                    WriteOutcome::Unchanged => println!("refreshed: no change"),
                }
            }
            Err(e) => eprintln!("refresh failed, files kept: {e}"),
        }
    }
}

/// Reads the class file, obtains credentials and renders the files.
/// `previous` (the class fingerprint and files of the last run) supplies
/// values pinned to a version id when the class is unchanged.
async fn render_once(
    args: &MountArgs,
    fetcher: &Fetcher,
    identities: &Identities,
    sdk: &aws_config::SdkConfig,
    default_region: Option<&str>,
    previous: Option<(Option<u64>, &FileSet)>,
) -> anyhow::Result<(MountPlan, u64, FileSet)> {
    let file = super::ClassFile::read(&args.file)?;
    let class = &file.class;
    let class_fingerprint = fingerprint(&class.spec);
    let id = file.id();
    let limits = spc::VolumeLimits {
        max_bytes: args.tmpfs_size,
        ..Default::default()
    };
    let plan = spc::plan_class(&class.spec, default_region, limits).map_err(|e| file.error(&e))?;
    for warning in &plan.warnings {
        tracing::warn!("{warning}");
    }
    const SESSION: &str = "aws-secrets-csi-cli";
    let identity = match (&args.role_arn, &args.token_file) {
        (Some(role), Some(file)) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", file.display()))?;
            let token = Token::new(token.trim().to_owned());
            let mut credentials = identities
                .web_identity(&plan.region, role, &token, SESSION)
                .await?;
            if let Some(chain) = &plan.role_chain {
                credentials = identities
                    .chain_from(credentials, &plan.region, chain, SESSION)
                    .await?;
            }
            AwsIdentity::Pod(credentials)
        }
        _ => match &plan.role_chain {
            // The chain starts from the standard AWS credentials.
            Some(chain) => {
                use aws_credential_types::provider::ProvideCredentials;
                let provider = sdk.credentials_provider().ok_or_else(|| {
                    anyhow::anyhow!("assumeRoleArn needs AWS credentials to start from")
                })?;
                let ambient = provider.provide_credentials().await?;
                AwsIdentity::Pod(
                    identities
                        .chain_from(ambient, &plan.region, chain, SESSION)
                        .await?,
                )
            }
            None => AwsIdentity::Ambient,
        },
    };
    let known = match previous {
        Some((Some(f), files)) if f == class_fingerprint => pinned_values(&plan, files),
        _ => Vec::new(),
    };
    // Each round asks AWS: the command has no other pods to share with.
    let sharing = Sharing {
        scope: None,
        max_age: Duration::ZERO,
        priority: Priority::FirstMount,
    };
    let previous_manifest = previous.and_then(|(_, files)| {
        let spec = plan.manifest.as_ref()?;
        Some(
            files
                .files()
                .iter()
                .find(|f| f.path == spec.path)?
                .bytes
                .clone(),
        )
    });
    let fetched = fetch_and_render(
        fetcher,
        &plan,
        &identity,
        &known,
        &sharing,
        &id,
        None,
        previous_manifest.as_ref().map(|b| b.expose()),
    )
    .await?;
    Ok((plan, class_fingerprint, fetched.set))
}

/// Without --role-arn the standard AWS credentials are used: when there are
/// none, say so in one line, with the ways to give them, before any fetch
/// fails with a network error after the SDK tried instance metadata.
async fn require_credentials(sdk: &aws_config::SdkConfig) -> anyhow::Result<()> {
    use aws_credential_types::provider::ProvideCredentials;
    const HOW: &str = "no AWS credentials found: give --role-arn with --token-file (a web-identity token, as IRSA), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (a profile in ~/.aws/config), or run where instance metadata or a container role provides them";
    let Some(provider) = sdk.credentials_provider() else {
        anyhow::bail!("{HOW}");
    };
    match tokio::time::timeout(Duration::from_secs(10), provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) | Err(_) => anyhow::bail!("{HOW}"),
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    if let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    } else {
        std::future::pending::<()>().await;
    }
}
