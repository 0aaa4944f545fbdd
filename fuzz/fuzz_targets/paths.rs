//! The path rules: an accepted file name never leaves the volume.
#![no_main]

use aws_secrets_csi_core::spc::FilePath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = FilePath::parse(name) {
        let root = std::path::Path::new("/volume");
        let joined = root.join(path.as_str());
        assert!(joined.starts_with(root));
        assert!(!joined.components().any(|c| matches!(
            c,
            std::path::Component::ParentDir | std::path::Component::CurDir
        )));
        assert!(
            path.components()
                .all(|c| !c.is_empty() && !c.starts_with(".."))
        );
    }
});
