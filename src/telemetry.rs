//! Logging: `RUST_LOG` filters (default `info`; for the command-line tools,
//! the AWS SDK's own warnings off, since their errors say what happened in
//! one line), text or JSON lines.
//!
//! With step times on, every step of a publish (see [`step`]) logs how long
//! it took when it ends: where a slow mount spends its time, without a
//! profiler on the node.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// The log target of the publish steps' spans.
pub const STEPS: &str = "aws_secrets_csi::steps";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init(format: LogFormat, default: &str, step_times: bool) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if step_times && let Ok(steps) = format!("{STEPS}=debug").parse() {
        filter = filter.add_directive(steps);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(if step_times {
            FmtSpan::CLOSE
        } else {
            FmtSpan::NONE
        })
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The span of one step of a publish (`step` names it: class, fetch...);
/// disabled, and nearly free, unless step times are on.
#[macro_export]
macro_rules! step {
    ($name:expr) => {
        tracing::debug_span!(target: $crate::telemetry::STEPS, "step", step = $name)
    };
    // Work that outlives the publish that started it.
    (detached $name:expr) => {
        tracing::debug_span!(target: $crate::telemetry::STEPS, parent: None, "step", step = $name)
    };
}
