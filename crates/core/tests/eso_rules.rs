//! Runs External Secrets v2.9.0's own test tables for its pure rules
//! (ported as data in tests/conformance/eso-v2.9.0/rules.yaml) through
//! the core's `external::{rewrite, decoding, conditions, refresh}`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_secrets_csi_core::external::conditions::{self, Condition, Namespace};
use aws_secrets_csi_core::external::decoding::{self, DecodingStrategy, NullBytePolicy};
use aws_secrets_csi_core::external::refresh::{
    self, RefreshInput, RefreshPolicy, SyncWindows, Windows,
};
use aws_secrets_csi_core::external::rewrite::{
    self, ConversionStrategy, Rewrite, RewriteMerge, SecretMap,
};
use aws_secrets_csi_core::secret::SecretBytes;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    source: String,
    rule: String,
    input: Value,
    expect: Value,
    #[serde(default)]
    difference: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    generation: i64,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Meta {
    fn version(&self) -> String {
        refresh::resource_version(self.generation, &self.labels, &self.annotations)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Status {
    synced_resource_version: Option<String>,
    synced_from: Option<Meta>,
    refresh_time: Option<String>,
}

fn field<T: serde::de::DeserializeOwned + Default>(input: &Value, key: &str) -> Result<T, String> {
    match input.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| e.to_string()),
    }
}

fn data(input: &Value) -> Result<SecretMap, String> {
    let m: BTreeMap<String, String> = field(input, "data")?;
    Ok(m.into_iter()
        .map(|(k, v)| (k, SecretBytes::from(v)))
        .collect())
}

fn data_out(m: &SecretMap) -> Value {
    let o: serde_json::Map<String, Value> = m
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::String(String::from_utf8_lossy(v.expose()).into_owned()),
            )
        })
        .collect();
    json!({ "data": o })
}

fn time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(text).map_err(|e| e.to_string())
}

/// Stands in for the template engine (wired elsewhere) for the one
/// template ESO's rewrite table uses.
fn stub_transform(template: &str, key: &str) -> Result<String, String> {
    if template == r#"{{ .value | upper | replace "-" "_" }}"# {
        Ok(key.to_uppercase().replace('-', "_"))
    } else {
        Err("template engine not wired in this test".to_owned())
    }
}

const AT: &str = "spec.dataFrom[0]";

/// The outcome of one case: the output as JSON, or the error's text.
fn run(case: &Case) -> Result<Value, String> {
    let input = &case.input;
    match case.rule.as_str() {
        "rewrite" => {
            let ops: Vec<Rewrite> = field(input, "rewrite")?;
            rewrite::rewrite_map(&ops, data(input)?, AT, &stub_transform)
                .map(|m| data_out(&m))
                .map_err(|e| e.to_string())
        }
        "merge" => {
            let merge: RewriteMerge = field(input, "merge")?;
            let op = Rewrite {
                regexp: None,
                transform: None,
                merge: Some(merge),
            };
            rewrite::rewrite_map(&[op], data(input)?, AT, &stub_transform)
                .map(|m| data_out(&m))
                .map_err(|e| e.to_string())
        }
        "conversion" => {
            let s: ConversionStrategy = field(input, "strategy")?;
            rewrite::convert_keys(
                s,
                data(input)?,
                "spec.dataFrom[0].extract.conversionStrategy",
            )
            .map(|m| data_out(&m))
            .map_err(|e| e.to_string())
        }
        "decoding" => {
            let s: DecodingStrategy = field(input, "strategy")?;
            decoding::decode_map(s, data(input)?, "spec.dataFrom[0].extract.decodingStrategy")
                .map(|m| data_out(&m))
                .map_err(|e| e.to_string())
        }
        "null_bytes" => {
            let p: NullBytePolicy = field(input, "policy")?;
            decoding::check_null_bytes_map(
                p,
                &data(input)?,
                "spec.data[0].remoteRef.nullBytePolicy",
            )
            .map(|()| json!({"ok": true}))
            .map_err(|e| e.to_string())
        }
        "conditions" => {
            let conds: Vec<Condition> = field(input, "conditions")?;
            let ns: Value = field(input, "namespace")?;
            let name: String = field(&ns, "name")?;
            let labels: BTreeMap<String, String> = field(&ns, "labels")?;
            conditions::namespace_allowed(
                &conds,
                Namespace {
                    name: &name,
                    labels: &labels,
                },
            )
            .map(|a| json!({ "allowed": a }))
            .map_err(|e| e.to_string())
        }
        "should_refresh" => {
            let policy: Option<RefreshPolicy> = field(input, "refreshPolicy")?;
            let interval_text: Option<String> = field(input, "refreshInterval")?;
            let interval =
                refresh::refresh_interval(interval_text.as_deref()).map_err(|e| e.to_string())?;
            let meta: Meta = field(input, "meta")?;
            let status: Status = field(input, "status")?;
            let synced = match (&status.synced_from, status.synced_resource_version) {
                (Some(m), _) => m.version(),
                (None, Some(s)) => s,
                (None, None) => String::new(),
            };
            let now: Option<String> = field(input, "now")?;
            let now = time(now.as_deref().unwrap_or("2026-06-01T12:00:00Z"))?;
            let refresh_time = status.refresh_time.as_deref().map(time).transpose()?;
            let current = meta.version();
            let r = RefreshInput {
                policy,
                interval,
                windows: None,
                resource_version: &current,
                synced_resource_version: &synced,
                refresh_time,
            };
            Ok(json!({ "refresh": refresh::should_refresh(&r, now) }))
        }
        "sync_window" => {
            let sw: Option<SyncWindows> = field(input, "syncWindows")?;
            let at: String = field(input, "at")?;
            let at = time(&at)?;
            match sw {
                None => Ok(json!({ "allowed": true })),
                Some(sw) => Windows::new(&sw)
                    .map(|w| json!({ "allowed": w.allows(at) }))
                    .map_err(|e| e.to_string()),
            }
        }
        other => Err(format!("unknown rule {other:?}")),
    }
}

#[test]
fn eso_v2_9_0_rules() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/eso-v2.9.0/rules.yaml"
    );
    let text = std::fs::read_to_string(path).expect("rules.yaml is readable");
    let file: File = serde_saphyr::from_str(&text).expect("rules.yaml parses");
    let (mut equal, mut intended, mut failed) = (0, 0, Vec::new());
    for case in &file.cases {
        let got = run(case);
        let ok = match (case.expect.get("error").and_then(Value::as_str), &got) {
            (Some(want), Err(e)) => e.contains(want),
            (None, Ok(v)) => *v == case.expect,
            _ => false,
        };
        match (ok, &case.difference) {
            (true, None) => equal += 1,
            (true, Some(_)) => intended += 1,
            (false, _) => failed.push(format!(
                "{} [{}] ({}): expected {}, got {:?}",
                case.name, case.rule, case.source, case.expect, got
            )),
        }
    }
    let total = file.cases.len();
    println!(
        "External Secrets v2.9.0 rules: {equal} of {total} equal, {intended} intended differences, {} failed",
        failed.len()
    );
    for f in &failed {
        println!("  FAILED {f}");
    }
    assert!(total > 90, "the table lost cases: {total}");
    assert!(failed.is_empty(), "{} cases failed", failed.len());
}
