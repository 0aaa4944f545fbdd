//! External Secrets Operator as a peer: its binary (scripts/eso-peer.sh,
//! built from Go modules into a cache outside the repository) and its own
//! CRDs from its module.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The Operator's binary: `ESO_BIN`, else built once by scripts/eso-peer.sh.
pub fn eso_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ESO_BIN") {
        return PathBuf::from(path);
    }
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/eso-peer.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/eso-peer.sh");
    assert!(out.status.success(), "scripts/eso-peer.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// The Operator's own CRDs (v0.16.2 serves v1beta1), from its module in
/// the Go module cache.
pub fn eso_crds() -> PathBuf {
    let out = Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .expect("go");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
        .join("github.com/external-secrets/external-secrets@v0.16.2/deploy/crds/bundle.yaml")
}
