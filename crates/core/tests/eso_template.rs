//! External Secrets Operator v2.9.0's template tests, ported as data
//! (tests/conformance/eso-v2.9.0/template.yaml), run against our engine the
//! way ESO's `Execute` runs templates: each key's template rendered with the
//! secret data, errors wrapped as ESO wraps them, `KeysAndValues` output read
//! as a YAML map, values decoded per the decoding strategy.

use std::collections::BTreeMap;

use aws_secrets_csi_core::template::{Limits, Options, Template, Value};
use base64::Engine as _;
use serde_json::Value as J;

fn str_map(c: &J, field: &str) -> Option<BTreeMap<String, String>> {
    let m = c.get(field)?.as_object()?;
    Some(
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    )
}

fn render(
    c: &J,
    templates: &BTreeMap<String, String>,
    data: &Value,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    let options = Options {
        left: c
            .get("left")
            .and_then(J::as_str)
            .unwrap_or("{{")
            .to_string(),
        right: c
            .get("right")
            .and_then(J::as_str)
            .unwrap_or("}}")
            .to_string(),
        ..Options::default()
    };
    let scope = c.get("scope").and_then(J::as_str).unwrap_or("Values");
    let base64 = c.get("decoding").and_then(J::as_str) == Some("Base64");
    let decode = |k: &str, v: Vec<u8>| -> Result<Vec<u8>, String> {
        if !base64 {
            return Ok(v);
        }
        base64::engine::general_purpose::STANDARD
            .decode(&v)
            .map_err(|_| format!("failed to decode rendered template value for key {k}"))
    };
    let mut out = BTreeMap::new();
    for (k, src) in templates {
        // KeysAndValues templates are named by their own text in ESO.
        let name = if scope == "KeysAndValues" {
            src.as_str()
        } else {
            k.as_str()
        };
        let t = Template::parse(name, src, &options)
            .map_err(|e| format!("unable to parse template at key {name}: {e}"))?;
        let v = t
            .execute(data, &Limits::default())
            .map_err(|e| format!("unable to execute template at key {name}: {e}"))?;
        if scope == "KeysAndValues" {
            let text =
                String::from_utf8(v).map_err(|_| "rendered YAML is not UTF-8".to_string())?;
            let parsed: BTreeMap<String, String> = if text.trim().is_empty() {
                BTreeMap::new()
            } else {
                serde_saphyr::from_str(&text)
                    .map_err(|e| format!("could not unmarshal template: {e}"))?
            };
            for (kk, vv) in parsed {
                let d = decode(&kk, vv.into_bytes())?;
                out.insert(kk, d);
            }
        } else {
            out.insert(k.clone(), decode(k, v)?);
        }
    }
    Ok(out)
}

#[test]
fn external_secrets_v2_9_0_template_conformance() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/eso-v2.9.0/template.yaml"
    );
    let text = std::fs::read_to_string(path).expect("conformance table");
    let doc: J = serde_saphyr::from_str(&text).expect("conformance YAML");
    let cases = doc["cases"].as_array().expect("cases");
    let (mut equal, mut waiting, mut skipped, mut failed) = (0, 0, 0, Vec::new());
    for c in cases {
        let name = format!(
            "{} ({})",
            c["name"].as_str().unwrap_or("?"),
            c["source"].as_str().unwrap_or("?")
        );
        let needs: Vec<&str> = c
            .get("needs")
            .and_then(J::as_array)
            .map(|a| a.iter().filter_map(J::as_str).collect())
            .unwrap_or_default();
        let funcs = Options::default().funcs;
        // `skip`: a case that cannot be data (its input is made at run
        // time); `needs`: a function not offered yet.
        if c.get("skip").and_then(J::as_bool) == Some(true) {
            skipped += 1;
            continue;
        }
        if needs.iter().any(|n| !funcs.contains(n)) {
            waiting += 1;
            continue;
        }
        let data: BTreeMap<String, Vec<u8>> = str_map(c, "data")
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        let data = Value::from_secret_data(&data);
        let want_err = c.get("error").and_then(J::as_str);
        let mut problems = Vec::new();
        for (tpl_field, exp_field) in [
            ("templates", "expected"),
            ("labels", "expected_labels"),
            ("annotations", "expected_annotations"),
        ] {
            let Some(templates) = str_map(c, tpl_field) else {
                continue;
            };
            match (render(c, &templates, &data), want_err) {
                (Ok(_), Some(e)) => problems.push(format!(
                    "{tpl_field}: expected an error containing {e:?}, got none"
                )),
                (Err(got), Some(e)) if !got.contains(e) => {
                    problems.push(format!("{tpl_field}: error {got:?} lacks {e:?}"))
                }
                (Err(_), Some(_)) => {}
                (Err(got), None) => problems.push(format!("{tpl_field}: unexpected error {got}")),
                (Ok(got), None) => {
                    if let Some(exp) = str_map(c, exp_field) {
                        let exp: BTreeMap<String, Vec<u8>> =
                            exp.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                        if got != exp {
                            let show = |m: &BTreeMap<String, Vec<u8>>| {
                                format!(
                                    "{:?}",
                                    m.iter()
                                        .map(|(k, v)| (k, String::from_utf8_lossy(v)))
                                        .collect::<Vec<_>>()
                                )
                            };
                            problems.push(format!(
                                "{tpl_field}: got {} want {}",
                                show(&got),
                                show(&exp)
                            ));
                        }
                    }
                }
            }
        }
        if problems.is_empty() {
            equal += 1;
        } else {
            failed.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    println!(
        "External Secrets v2.9.0 template conformance: {equal} of {} equal, {skipped} not portable as data, {waiting} waiting for a function, {} failed",
        cases.len(),
        failed.len()
    );
    for f in &failed {
        println!("  FAILED {f}");
    }
    assert!(
        failed.is_empty(),
        "{} conformance cases failed",
        failed.len()
    );
    assert!(equal > 0);
}
