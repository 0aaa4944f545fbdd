//! Bounds and secrecy of the certificate functions (ESO's own cases run
//! from tests/conformance/eso-v2.9.0/certs.yaml).

use std::time::{Duration, Instant};

use base64::Engine as _;
use der::{Decode as _, Encode as _};

use super::*;

/// A small EC certificate with a SAN (ESO's pem_test.go `otherCert`).
const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBqjCCAU+gAwIBAgIRAPnGGsBUMbZhmh5QdnYdBmUwCgYIKoZIzj0EAwIwGjEY
MBYGA1UEAxMPaW50ZXJtZWRpYXRlLWNhMB4XDTIyMDIwOTEwMjUzMVoXDTIyMDIx
MDEwMjUzMVowDjEMMAoGA1UEAxMDZm9vMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD
QgAEqnxdeInykx8JZsLi13rZLekoG2cosQ3F+2InVNy7hCQ7soMqdaJsGQ6LFtov
ogUFtOOTRWrunblqNWGZsowHbKOBgTB/MA4GA1UdDwEB/wQEAwIHgDAdBgNVHSUE
FjAUBggrBgEFBQcDAQYIKwYBBQUHAwIwHQYDVR0OBBYEFLtundVbuKd73OWzo6SY
by0Ajeb2MB8GA1UdIwQYMBaAFCLg80J/bZBbOd+Y8+V94l5xM2zEMA4GA1UdEQQH
MAWCA2ZvbzAKBggqhkjOPQQDAgNJADBGAiEA4K4SbVNqrEtl7RfwBfJFMnWI+X8D
zMPMc4Xqzp2qTxcCIQDsySgtiakypZfWakpB49zJph0kLwGK8xhWvGMUw1N1/w==
-----END CERTIFICATE-----
";

/// A P-256 key in SEC1 (`EC PRIVATE KEY`): ESO's `jwkPrivECPKCS8` converted by openssl.
const EC_KEY: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIIybOcbKB1HrXTGm7bfB9isl+U/dpxrpdXIRXjE+YZa9oAoGCCqGSM49
AwEHoUQDQgAEfDjg3Nq4jPf8IOZ0277aPVal/8iXySnzLUJAZghUzZN3zrc97IE4
r9Dh26JKZbCAhHOLVE+UVlNH68AIyU+D5A==
-----END EC PRIVATE KEY-----
";

#[test]
fn inputs_over_the_size_cap_are_refused() {
    let big = vec![b'a'; MAX_INPUT_BYTES + 1];
    let too_large = CertError::InputTooLarge {
        size: MAX_INPUT_BYTES + 1,
        limit: MAX_INPUT_BYTES,
    };
    assert_eq!(filter_pem("CERTIFICATE", &big), Err(too_large.clone()));
    assert_eq!(filter_cert_chain("leaf", &big), Err(too_large.clone()));
    assert_eq!(cert_sans(&big), Err(too_large.clone()));
    assert!(matches!(
        pkcs12_key(&big),
        Err(CertError::Pkcs12Key(m)) if m.contains("exceeds the limit")
    ));
    assert_eq!(jwk_public_key_pem(&big), Err(too_large));
}

#[test]
fn a_mebibyte_of_certificates_filters_quickly_but_does_not_chain() {
    let pem = CERT.repeat((1 << 20) / CERT.len());
    assert!(pem.len() <= 1 << 20);
    let start = Instant::now();
    let out = filter_pem("certificate", pem.as_bytes()).expect("filters");
    assert_eq!(out, pem.as_bytes());
    assert!(start.elapsed() < Duration::from_secs(10));
    // 1,000+ certificates: refused before the quadratic linking.
    assert_eq!(
        filter_cert_chain("leaf", pem.as_bytes()),
        Err(CertError::TooManyCertificates {
            count: MAX_CHAIN_CERTS + 1,
            limit: MAX_CHAIN_CERTS
        })
    );
}

#[test]
fn duplicate_or_no_certificates_are_no_chain() {
    // Two copies of one leaf: neither signs the other, so two leaves.
    let pem = CERT.repeat(2);
    assert_eq!(
        filter_cert_chain("leaf", pem.as_bytes()),
        Err(CertError::DisjunctChain)
    );
    assert_eq!(filter_cert_chain("root", b""), Err(CertError::NoLeaf));
    assert_eq!(
        filter_cert_chain("unknown", CERT.as_bytes()),
        Ok(Vec::new())
    );
}

#[test]
fn sans_of_ipv4_mapped_and_v6_addresses_print_as_go() {
    assert_eq!(ip_string(&[10, 0, 0, 1]).as_deref(), Ok("10.0.0.1"));
    let mut mapped = [0u8; 16];
    mapped[10..].copy_from_slice(&[0xff, 0xff, 192, 168, 1, 2]);
    assert_eq!(ip_string(&mapped).as_deref(), Ok("192.168.1.2"));
    let mut v6 = [0u8; 16];
    v6[0..2].copy_from_slice(&[0x20, 0x01]);
    v6[15] = 1;
    assert_eq!(ip_string(&v6).as_deref(), Ok("2001::1"));
    assert!(ip_string(&[1, 2, 3]).is_err());
}

/// A PKCS#12 written here, with its MAC claiming `iterations`.
fn pfx_with_mac_iterations(iterations: i32) -> Vec<u8> {
    let b64 = pem_to_pkcs12_pass(CERT.as_bytes(), EC_KEY.as_bytes(), "pw").expect("writes");
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let mut pfx = ::pkcs12::Pfx::from_der(&der).expect("parses");
    if let Some(mac) = pfx.mac_data.as_mut() {
        mac.iterations = iterations;
    }
    pfx.to_der().expect("encodes")
}

#[test]
fn a_pkcs12_with_a_huge_iteration_count_is_refused_at_once() {
    let hostile = pfx_with_mac_iterations(2_000_000_000);
    let start = Instant::now();
    let err = pkcs12_key_pass("pw", &hostile).expect_err("refused");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        err.to_string().contains("exceeds the limit of 200000"),
        "{err}"
    );
    let cap = i32::try_from(MAX_KDF_ITERATIONS).expect("fits");
    // At the cap it is only a wrong MAC (the value was changed), not refused.
    let at_cap = pkcs12_cert_pass("pw", &pfx_with_mac_iterations(cap)).expect_err("bad MAC");
    assert!(
        at_cap.to_string().contains("password incorrect"),
        "{at_cap}"
    );
}

#[test]
fn written_pkcs12_reads_back_and_errors_keep_the_password_out() {
    let b64 = full_pem_to_pkcs12_pass(CERT.as_bytes(), EC_KEY.as_bytes(), "s3cr3t-passw0rd")
        .expect("writes");
    let der = base64::engine::general_purpose::STANDARD
        .decode(&b64)
        .expect("base64 out");
    assert_eq!(
        pkcs12_cert_pass("s3cr3t-passw0rd", &der).expect("reads"),
        CERT.as_bytes()
    );
    let key = pkcs12_key_pass("s3cr3t-passw0rd", &der).expect("reads");
    assert!(key.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    let err = pkcs12_key_pass("wrong-s3cr3t", &der).expect_err("wrong password");
    let text = format!("{err} {err:?}");
    assert!(text.contains("unable to decode pkcs12"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    // A truststore is not a key archive (one safe, not two).
    let store = pem_truststore_to_pkcs12(CERT.as_bytes()).expect("writes");
    let store = base64::engine::general_purpose::STANDARD
        .decode(store)
        .expect("base64");
    assert!(pkcs12_cert(&store).is_err());
    assert_eq!(
        pkcs12_truststore_certs("", &store).expect("reads"),
        CERT.as_bytes()
    );
}

#[test]
fn jwk_errors_name_members_not_values() {
    let err = jwk_private_key_pem(
        br#"{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","d":"c2VjcmV0LXNjYWxhcg"}"#,
    )
    .expect_err("not on the curve");
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    assert!(jwk_public_key_pem(br#"{"kty":"oct","k":"AAAA"}"#).is_err());
    assert!(jwk_public_key_pem(b"not json").is_err());
}

#[test]
fn rsa_decrypt_echoes_a_bounded_scheme_only() {
    let long = "X".repeat(1000);
    let err = rsa_decrypt(&long, "SHA256", b"ct", b"key").expect_err("unsupported");
    assert!(err.to_string().len() < 120, "{err}");
    assert_eq!(
        rsa_decrypt("None", "", b"as is", b""),
        Ok(b"as is".to_vec())
    );
    assert_eq!(
        rsa_decrypt("RSA-OAEP", "SHA1", b"ct", EC_KEY.as_bytes()),
        Err(CertError::NotRsa)
    );
}
