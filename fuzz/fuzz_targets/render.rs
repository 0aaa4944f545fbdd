//! Rendering: any JMESPath expression a class may hold, over any secret
//! value, gives files or an error, never a panic.
#![no_main]

use std::collections::BTreeMap;

use aws_secrets_csi_core::render::render;
use aws_secrets_csi_core::secret::SecretBytes;
use aws_secrets_csi_core::spc::plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expression, value) = text.split_once('\n').unwrap_or((text, "{}"));
    let Ok(quoted) = serde_json_quote(expression) else {
        return;
    };
    let objects = format!(
        "- objectName: s\n  objectType: secretsmanager\n  jmesPath:\n    - path: {quoted}\n      objectAlias: out\n"
    );
    let params: BTreeMap<String, String> = [
        ("region".to_string(), "r".to_string()),
        ("objects".to_string(), objects),
    ]
    .into();
    if let Ok(p) = plan(&params, None) {
        let _ = render(&p, &[SecretBytes::from(value)]);
    }
});

/// A YAML double-quoted scalar for `s` (JSON string syntax is valid YAML).
fn serde_json_quote(s: &str) -> Result<String, ()> {
    if s.chars().any(|c| c.is_control()) {
        return Err(());
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}
