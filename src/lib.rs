//! aws-secrets-csi: a CSI node driver that mounts AWS Secrets Manager and SSM
//! Parameter Store values into pods. One module per step of the data flow
//! (see DESIGN.md): request -> cluster -> spc -> identity -> fetch -> render
//! -> volume, wired together by `publish` and served by `csi`.

pub mod cluster;
pub mod commands;
pub mod csi;
pub mod fetch;
pub mod identity;
pub mod metrics;
pub mod publish;
pub mod render;
pub mod request;
pub mod rotation;
pub mod secret;
pub mod spc;
pub mod state;
pub mod telemetry;
pub mod volume;
