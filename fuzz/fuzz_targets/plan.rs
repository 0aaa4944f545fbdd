//! The SecretProviderClass parameters, as a class author writes them: any
//! `objects` YAML and path translation must plan or be refused, never panic,
//! and every planned file must pass the path rules.
#![no_main]

use std::collections::BTreeMap;

use aws_secrets_csi_core::spc::{FilePath, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (translation, objects) = text.split_once('\n').unwrap_or(("", text));
    let params: BTreeMap<String, String> = [
        ("region".to_string(), "us-east-1".to_string()),
        ("failoverRegion".to_string(), "us-west-2".to_string()),
        ("pathTranslation".to_string(), translation.to_string()),
        ("objects".to_string(), objects.to_string()),
    ]
    .into();
    if let Ok(p) = plan(&params, None) {
        let files: Vec<_> = p.files().map(|(f, _)| f.path.clone()).collect();
        for (i, a) in files.iter().enumerate() {
            assert_eq!(FilePath::parse(a.as_str()).as_ref(), Ok(a));
            for b in &files[i + 1..] {
                assert!(!a.overlaps(b));
            }
        }
    }
});
