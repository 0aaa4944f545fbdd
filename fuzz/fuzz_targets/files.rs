//! Templated files: any `templates` parameter over any secret values plans
//! and renders to files within the volume's size, or an error; never a
//! panic, a hang or more bytes than the volume holds.
#![no_main]

use std::collections::BTreeMap;

use aws_secrets_csi_core::render::render;
use aws_secrets_csi_core::secret::SecretBytes;
use aws_secrets_csi_core::spc::{VolumeLimits, plan_within};
use libfuzzer_sys::fuzz_target;

const VOLUME_BYTES: u64 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the secret's value, the rest the parameter.
    let (value, templates) = text.split_once('\n').unwrap_or(("{}", text));
    let params: BTreeMap<String, String> = [
        ("region", "r"),
        (
            "objects",
            "- {objectName: s, objectType: secretsmanager, jmesPath: [{path: a, objectAlias: a}]}\n- {objectName: p, objectType: ssmparameter}",
        ),
        ("templates", templates),
        ("rotationManifest", "m.json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let limits = VolumeLimits {
        max_files: 64,
        max_bytes: VOLUME_BYTES,
    };
    let Ok(p) = plan_within(&params, None, limits) else {
        return;
    };
    if let Ok(set) = render(&p, &[SecretBytes::from(value), SecretBytes::from(value)]) {
        assert!(set.content_bytes() as u64 <= VOLUME_BYTES);
        assert!(set.len() <= 64);
    }
});
