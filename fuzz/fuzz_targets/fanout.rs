//! Fan-out: a class that names one value many times (objects with aliases,
//! jmesPath entries, nested paths) under any limits. Whatever the input,
//! a plan never has more files than the limit and a rendered volume never
//! holds more bytes than the limit: the work is bounded by the volume.
#![no_main]

use std::collections::BTreeMap;

use aws_secrets_csi_core::render::render;
use aws_secrets_csi_core::secret::SecretBytes;
use aws_secrets_csi_core::spc::{VolumeLimits, plan_within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let objects = 1 + usize::from(data[0]) % 64;
    let jmes = usize::from(u16::from_le_bytes([data[1], data[2]])) % 4096;
    let value_len = usize::from(u16::from_le_bytes([data[3], data[4]]));
    let limits = VolumeLimits {
        max_files: 1 + usize::from(data[5]) * 16,
        max_bytes: 1 + u64::from(u16::from_le_bytes([data[6], data[7]])) * 64,
    };
    let path = std::str::from_utf8(&data[8..])
        .ok()
        .filter(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".[]*|@".contains(c))
        })
        .unwrap_or("v");
    let mut yaml = String::new();
    for o in 0..objects {
        yaml.push_str(&format!(
            "- objectName: s\n  objectType: secretsmanager\n  objectAlias: o{o}\n"
        ));
        if o == 0 && jmes > 0 {
            yaml.push_str("  jmesPath:\n");
            for j in 0..jmes {
                yaml.push_str(&format!("    - {{path: \"{path}\", objectAlias: j{j}}}\n"));
            }
        }
    }
    let params: BTreeMap<String, String> = [
        ("region".to_string(), "r".to_string()),
        ("objects".to_string(), yaml),
    ]
    .into();
    let Ok(plan) = plan_within(&params, None, limits) else {
        return;
    };
    assert!(plan.files().count() <= limits.max_files);
    let value = SecretBytes::from(format!("{{\"v\":\"{}\"}}", "x".repeat(value_len)));
    let values = vec![value; plan.objects.len()];
    if let Ok(set) = render(&plan, &values) {
        assert!(set.content_bytes() as u64 <= limits.max_bytes);
        assert!(set.len() <= limits.max_files);
    }
});
