//! The pure core of aws-secrets-csi: a SecretProviderClass's parameters ->
//! a [`spc::MountPlan`], fetched values -> a [`render::FileSet`], when to
//! restart a workload whose secrets rotated ([`restart::Schedule`]), and the
//! types that hold secret material. No I/O, no async: tested exhaustively,
//! property-tested and fuzzed apart from the driver (a fuzz build of this
//! crate takes a minute; one of the driver's dependencies takes twenty).
#![forbid(unsafe_code)]

pub mod aws_events;
pub mod certs;
pub mod change_log;
pub mod external;
pub mod names;
pub mod render;
pub mod restart;
pub mod secret;
pub mod shard;
pub mod spc;
pub mod target_secret;
pub mod template;
