//! Templates: any source over any secret value parses and runs to output
//! within the cap, or an error; never a panic, a hang or a huge allocation.
#![no_main]

use std::collections::BTreeMap;

use aws_secrets_csi_core::template::{Limits, Options, Template, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line is the secret value, the rest the template.
    let (value, source) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let Ok(t) = Template::parse("fuzz", source, &Options::default()) else {
        return;
    };
    let secret = BTreeMap::from([("v".to_string(), value.to_vec())]);
    let limits = Limits {
        max_output_bytes: 4096,
        max_steps: 100_000,
        max_alloc_bytes: 1 << 22,
        max_value_bytes: 1 << 16,
        ..Limits::default()
    };
    if let Ok(out) = t.execute(&Value::from_secret_data(&secret), &limits) {
        assert!(out.len() <= 4096);
    }
});
