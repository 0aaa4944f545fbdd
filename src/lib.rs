//! aws-secrets-csi: a CSI node driver that mounts AWS Secrets Manager and SSM
//! Parameter Store values into pods. One module per step of the data flow
//! (see DESIGN.md): request -> cluster -> spc -> identity -> fetch -> render
//! -> volume, wired together by `publish` and served by `csi`. The pure
//! steps (planning, rendering, secret types) are the `aws-secrets-csi-core`
//! crate, re-exported here.
#![forbid(unsafe_code)]

pub mod aws;
pub mod cluster;
pub use aws_secrets_csi_core::{render, secret};
pub mod commands;
pub mod controller;
pub mod csi;
pub mod fetch;
pub mod http_endpoint;
pub mod identity;
pub mod metrics;
/// The CSI wire types generated from proto/csi.proto. They sit below every
/// step so that a step can name a request without depending on the gRPC
/// services in `csi`.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("csi.v1");
}
pub mod publish;
pub mod request;
pub mod rotation;
pub mod spc;
pub mod state;
pub mod telemetry;
pub mod volume;
