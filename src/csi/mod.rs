//! Step "csi": the CSI Identity and Node services on a unix socket. The
//! services only translate: requests go to `publish`, errors come back
//! through `status`, the one place that picks gRPC codes.

mod authority;
mod health;
mod identity_service;
mod node_service;
mod registration;
mod server;
mod status;

pub use health::{Health, serve_health};
pub use identity_service::IdentityService;
pub use node_service::NodeService;
// The wire types live below every step (crate::proto); re-exported here for
// the gRPC clients of tests and tools.
pub use crate::proto::*;
pub use registration::{
    InfoRequest, PluginInfo, Registration, RegistrationClient, RegistrationStatus,
    RegistrationVerdict, serve_registration,
};
pub use server::{CsiListener, Endpoint, serve};
pub use status::status_of;
