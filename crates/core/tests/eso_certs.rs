//! External Secrets Operator v2.9.0's own tests of its certificate and crypto
//! template functions, run as data against `aws_secrets_csi_core::certs`
//! (tests/conformance/eso-v2.9.0/certs.yaml).

use aws_secrets_csi_core::certs::{self, CertError};
use base64::Engine as _;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(untagged)]
enum Arg {
    Text(String),
    Binary { base64: String },
}

#[derive(Deserialize, Default)]
struct Expect {
    output: Option<String>,
    list: Option<Vec<String>>,
    error: Option<String>,
    pkcs12_like: Option<String>,
    truststore_like: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    source: String,
    function: String,
    args: Vec<Arg>,
    then: Option<String>,
    expect: Expect,
}

fn bytes(arg: &Arg) -> Vec<u8> {
    match arg {
        Arg::Text(s) => s.as_bytes().to_vec(),
        Arg::Binary { base64 } => base64::engine::general_purpose::STANDARD
            .decode(base64)
            .expect("fixture base64"),
    }
}

fn text(arg: &Arg) -> String {
    String::from_utf8(bytes(arg)).expect("a text argument")
}

/// What a function returned: bytes, or a list (`certSANs`).
enum Out {
    Bytes(Vec<u8>),
    List(Vec<String>),
}

fn call(function: &str, args: &[Arg]) -> Result<Out, CertError> {
    let b = |i: usize| bytes(&args[i]);
    let t = |i: usize| text(&args[i]);
    Ok(Out::Bytes(match function {
        "filterPEM" => certs::filter_pem(&t(0), &b(1))?,
        "filterCertChain" => certs::filter_cert_chain(&t(0), &b(1))?,
        "certSANs" => return certs::cert_sans(&b(0)).map(Out::List),
        "pkcs12key" => certs::pkcs12_key(&b(0))?,
        "pkcs12keyPass" => certs::pkcs12_key_pass(&t(0), &b(1))?,
        "pkcs12cert" => certs::pkcs12_cert(&b(0))?,
        "pkcs12certPass" => certs::pkcs12_cert_pass(&t(0), &b(1))?,
        "pemToPkcs12Pass" => certs::pem_to_pkcs12_pass(&b(0), &b(1), &t(2))?,
        "fullPemToPkcs12Pass" => certs::full_pem_to_pkcs12_pass(&b(0), &b(1), &t(2))?,
        "pemTruststoreToPKCS12Pass" => certs::pem_truststore_to_pkcs12_pass(&b(0), &t(1))?,
        "jwkPublicKeyPem" => certs::jwk_public_key_pem(&b(0))?,
        "jwkPrivateKeyPem" => certs::jwk_private_key_pem(&b(0))?,
        "rsaDecrypt" => certs::rsa_decrypt(&t(0), &t(1), &b(2), &b(3))?,
        other => panic!("no function {other} in the runner"),
    }))
}

fn unb64(s: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("PKCS#12 output is base64")
}

/// Key and certificates of a key-and-chain PKCS#12 (base64), as PEM.
fn chain_contents(b64: &[u8], pass: &str) -> Result<(Vec<u8>, Vec<u8>), CertError> {
    let der = unb64(b64);
    Ok((
        certs::pkcs12_key_pass(pass, &der)?,
        certs::pkcs12_cert_pass(pass, &der)?,
    ))
}

/// Why the case failed, or None when it passed.
fn check(case: &Case) -> Option<String> {
    let mut got = call(&case.function, &case.args);
    if let (Some(then), Ok(Out::Bytes(out))) = (&case.then, &got) {
        got = call(
            then,
            &[Arg::Text(String::from_utf8_lossy(out).into_owned())],
        );
    }
    let e = &case.expect;
    let pass = e.password.as_deref().unwrap_or("");
    match (got, e) {
        (
            Err(err),
            Expect {
                error: Some(want), ..
            },
        ) => (!err.to_string().contains(want.as_str()))
            .then(|| format!("error {err:?} does not contain {want:?}")),
        (Err(err), _) => Some(format!("unexpected error: {err}")),
        (Ok(_), Expect { error: Some(_), .. }) => Some("expected an error, got output".into()),
        (
            Ok(Out::List(list)),
            Expect {
                list: Some(want), ..
            },
        ) => (&list != want).then(|| format!("got {list:?}, want {want:?}")),
        (
            Ok(Out::Bytes(out)),
            Expect {
                output: Some(want), ..
            },
        ) => (out != want.as_bytes())
            .then(|| format!("got\n{}\nwant\n{want}", String::from_utf8_lossy(&out))),
        (
            Ok(Out::Bytes(out)),
            Expect {
                pkcs12_like: Some(want),
                ..
            },
        ) => {
            match (
                chain_contents(&out, pass),
                chain_contents(want.as_bytes(), pass),
            ) {
                (Ok(ours), Ok(theirs)) => (ours != theirs)
                    .then(|| "key or certificates differ from ESO's PKCS#12".to_string()),
                (ours, theirs) => Some(format!(
                    "reading back failed: ours {:?}, ESO's {:?}",
                    ours.err(),
                    theirs.err()
                )),
            }
        }
        (
            Ok(Out::Bytes(out)),
            Expect {
                truststore_like: Some(want),
                ..
            },
        ) => {
            let ours = certs::pkcs12_truststore_certs(pass, &unb64(&out));
            let theirs = certs::pkcs12_truststore_certs(pass, &unb64(want.as_bytes()));
            match (ours, theirs) {
                (Ok(o), Ok(t)) => (o != t || o.is_empty())
                    .then(|| "certificates differ from ESO's trust store".to_string()),
                (o, t) => Some(format!(
                    "reading back failed: ours {:?}, ESO's {:?}",
                    o.err(),
                    t.err()
                )),
            }
        }
        _ => Some("the case's expectation does not fit the function's output".into()),
    }
}

#[test]
fn external_secrets_certificate_functions() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/eso-v2.9.0/certs.yaml"
    );
    let yaml = std::fs::read_to_string(path).expect("certs.yaml");
    let cases: Vec<Case> = serde_saphyr::from_str(&yaml).expect("certs.yaml parses");
    assert!(cases.len() >= 50, "the table lost cases: {}", cases.len());
    let mut failed = 0;
    for case in &cases {
        if let Some(why) = check(case) {
            failed += 1;
            eprintln!("FAIL {} ({}): {why}", case.name, case.source);
        }
    }
    println!(
        "External Secrets v2.9.0 certificate functions: {} of {} equal, {failed} failed",
        cases.len() - failed,
        cases.len()
    );
    assert_eq!(failed, 0, "{failed} ESO certificate cases failed");
}
