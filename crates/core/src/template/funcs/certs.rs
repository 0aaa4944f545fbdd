//! External Secrets' certificate and key functions (`crate::certs`), as
//! template functions with its names and argument order (the piped value
//! last).

use super::{Cx, Func, FuncError, arity, s};
use crate::certs::{self, CertError};
use crate::template::Value;

fn out(r: Result<Vec<u8>, CertError>) -> Result<Value, FuncError> {
    r.map(Value::str).map_err(|e| FuncError::Msg(e.to_string()))
}

fn text(a: &[Value], i: usize) -> Result<&str, FuncError> {
    std::str::from_utf8(s(a, i)?).map_err(|_| FuncError::Msg("argument is not UTF-8 text".into()))
}

pub(super) fn functions() -> Vec<(&'static str, Func)> {
    vec![
        ("filterPEM", |_: &Cx, a: &[Value]| {
            arity(a, 2)?;
            out(certs::filter_pem(text(a, 0)?, s(a, 1)?))
        }),
        ("filterCertChain", |_: &Cx, a: &[Value]| {
            arity(a, 2)?;
            out(certs::filter_cert_chain(text(a, 0)?, s(a, 1)?))
        }),
        ("certSANs", |_: &Cx, a: &[Value]| {
            arity(a, 1)?;
            certs::cert_sans(s(a, 0)?)
                .map(|names| Value::list(names.into_iter().map(Value::str).collect()))
                .map_err(|e| FuncError::Msg(e.to_string()))
        }),
        ("pkcs12key", |_: &Cx, a: &[Value]| {
            arity(a, 1)?;
            out(certs::pkcs12_key(s(a, 0)?))
        }),
        ("pkcs12keyPass", |_: &Cx, a: &[Value]| {
            arity(a, 2)?;
            out(certs::pkcs12_key_pass(text(a, 0)?, s(a, 1)?))
        }),
        ("pkcs12cert", |_: &Cx, a: &[Value]| {
            arity(a, 1)?;
            out(certs::pkcs12_cert(s(a, 0)?))
        }),
        ("pkcs12certPass", |_: &Cx, a: &[Value]| {
            arity(a, 2)?;
            out(certs::pkcs12_cert_pass(text(a, 0)?, s(a, 1)?))
        }),
        ("pemToPkcs12", |_: &Cx, a: &[Value]| {
            arity(a, 2)?;
            out(certs::pem_to_pkcs12(s(a, 0)?, s(a, 1)?))
        }),
        ("pemToPkcs12Pass", |_: &Cx, a: &[Value]| {
            arity(a, 3)?;
            out(certs::pem_to_pkcs12_pass(s(a, 0)?, s(a, 1)?, text(a, 2)?))
        }),
        ("fullPemToPkcs12", |_: &Cx, a: &[Value]| {
            arity(a, 2)?;
            out(certs::full_pem_to_pkcs12(s(a, 0)?, s(a, 1)?))
        }),
        ("fullPemToPkcs12Pass", |_: &Cx, a: &[Value]| {
            arity(a, 3)?;
            out(certs::full_pem_to_pkcs12_pass(
                s(a, 0)?,
                s(a, 1)?,
                text(a, 2)?,
            ))
        }),
        ("pemTruststoreToPKCS12", |_: &Cx, a: &[Value]| {
            arity(a, 1)?;
            out(certs::pem_truststore_to_pkcs12(s(a, 0)?))
        }),
        ("pemTruststoreToPKCS12Pass", |_: &Cx, a: &[Value]| {
            arity(a, 2)?;
            out(certs::pem_truststore_to_pkcs12_pass(s(a, 0)?, text(a, 1)?))
        }),
        ("jwkPublicKeyPem", |_: &Cx, a: &[Value]| {
            arity(a, 1)?;
            out(certs::jwk_public_key_pem(s(a, 0)?))
        }),
        ("jwkPrivateKeyPem", |_: &Cx, a: &[Value]| {
            arity(a, 1)?;
            out(certs::jwk_private_key_pem(s(a, 0)?))
        }),
        ("rsaDecrypt", |_: &Cx, a: &[Value]| {
            arity(a, 4)?;
            out(certs::rsa_decrypt(
                text(a, 0)?,
                text(a, 1)?,
                s(a, 2)?,
                s(a, 3)?,
            ))
        }),
    ]
}
