//! The two keys of a `kubernetes.io/tls` Secret from a volume's file, as
//! the upstream driver makes them: `tls.crt` holds only the certificate
//! blocks, `tls.key` only the private key, in the PEM form TLS servers read
//! (RSA as PKCS#1 `RSA PRIVATE KEY`, EC as SEC1 `EC PRIVATE KEY`). A file
//! that is not PEM is read as PKCS#12 without a password (what the AWS
//! console's certificate export and `openssl pkcs12 -export -passout pass:`
//! make); unlike the upstream driver, the AES/PBKDF2 files of OpenSSL 3 are
//! read too, not only the legacy RC2/3DES ones. Pure: bytes in, bytes out.
//! Errors name what is wrong, never a byte of the file.

use pem::{EncodeConfig, LineEnding, Pem};
use pkcs8::der::{self, Decode, Encode};

const CERTIFICATE: &str = "CERTIFICATE";
/// PKCS#8 algorithm OIDs.
const RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

/// Why a file cannot fill a key of a TLS Secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error(
        "key {0:?} is not supported in a kubernetes.io/tls Secret: only tls.crt and tls.key are"
    )]
    Key(String),
    #[error(
        "holds no certificate (neither PEM CERTIFICATE blocks nor a PKCS#12 file without a password)"
    )]
    NoCertificate,
    #[error(
        "holds no private key (neither a PEM private key block nor a PKCS#12 file without a password)"
    )]
    NoPrivateKey,
    #[error("its private key ({0}) is not an RSA, EC or PKCS#8 key")]
    KeyFormat(String),
    #[error("is not PEM, and not a PKCS#12 file without a password: {0}")]
    Pkcs12(String),
}

/// The content of `key` (`tls.crt` or `tls.key`) from `data`.
pub fn cert_part(data: &[u8], key: &str) -> Result<Vec<u8>, TlsError> {
    match key {
        "tls.crt" => certificates(data),
        "tls.key" => private_key(data),
        other => Err(TlsError::Key(other.to_owned())),
    }
}

fn encode(tag: &str, der: Vec<u8>) -> Vec<u8> {
    pem::encode_config(
        &Pem::new(tag, der),
        EncodeConfig::new().set_line_ending(LineEnding::LF),
    )
    .into_bytes()
}

/// The PEM blocks of `data`; none when it is not PEM.
fn blocks(data: &[u8]) -> Vec<Pem> {
    pem::parse_many(data).unwrap_or_default()
}

fn certificates(data: &[u8]) -> Result<Vec<u8>, TlsError> {
    let pems = blocks(data);
    let mut out: Vec<u8> = pems
        .iter()
        .filter(|p| p.tag() == CERTIFICATE)
        .flat_map(|p| encode(CERTIFICATE, p.contents().to_vec()))
        .collect();
    if out.is_empty() && pems.is_empty() {
        let archive = pkcs12(data)?;
        out = archive
            .certs
            .into_iter()
            .flat_map(|c| encode(CERTIFICATE, c.cert.as_der().to_vec()))
            .collect();
    }
    if out.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(out)
}

fn private_key(data: &[u8]) -> Result<Vec<u8>, TlsError> {
    let pems = blocks(data);
    // The last block that is not a certificate, as upstream takes it (an
    // `EC PARAMETERS` block may come before the key).
    let (tag, der) = match pems.iter().rev().find(|p| p.tag() != CERTIFICATE) {
        Some(p) => (p.tag().to_owned(), p.contents().to_vec()),
        None if pems.is_empty() => {
            let archive = pkcs12(data)?;
            let key = archive
                .keys
                .into_iter()
                .next_back()
                .ok_or(TlsError::NoPrivateKey)?;
            ("PRIVATE KEY".to_owned(), key.key.as_der().to_vec())
        }
        None => return Err(TlsError::NoPrivateKey),
    };
    match tag.as_str() {
        "RSA PRIVATE KEY" | "EC PRIVATE KEY" => Ok(encode(&tag, der)),
        "PRIVATE KEY" => pkcs8_to_traditional(&der),
        other => Err(TlsError::KeyFormat(other.to_owned())),
    }
}

/// A PKCS#8 key -> PKCS#1 (RSA) or SEC1 (EC, with its curve, which the
/// PKCS#8 wrapper may hold instead); other kinds (Ed25519) stay PKCS#8.
fn pkcs8_to_traditional(der: &[u8]) -> Result<Vec<u8>, TlsError> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(der)
        .map_err(|_| TlsError::KeyFormat("PRIVATE KEY that is not PKCS#8".into()))?;
    let inner = info.private_key.as_bytes();
    match info.algorithm.oid.to_string().as_str() {
        RSA_ENCRYPTION => Ok(encode("RSA PRIVATE KEY", inner.to_vec())),
        EC_PUBLIC_KEY => {
            let bad = || TlsError::KeyFormat("EC key that is not SEC1 inside".into());
            let mut key = sec1::EcPrivateKey::from_der(inner).map_err(|_| bad())?;
            if key.parameters.is_none() {
                key.parameters = info
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                    .map(sec1::EcParameters::NamedCurve);
            }
            Ok(encode("EC PRIVATE KEY", key.to_der().map_err(|_| bad())?))
        }
        _ => Ok(encode("PRIVATE KEY", der.to_vec())),
    }
}

fn pkcs12(data: &[u8]) -> Result<p12_keystore::Pkcs12Archive, TlsError> {
    p12_keystore::Pkcs12Archive::from_pkcs12(data, "").map_err(|e| TlsError::Pkcs12(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // A throwaway P-256 key and self-signed certificate made for this test.
    const EC_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1ksfZLG1Vswo4cqx
YE5hMM8BaprUUTETTtJAk713xTmhRANCAASBfmx68o36GmuIgsF8xUV3impy4J+3
7xh0o2OBp6W9WVohGo9pCsa/Q2u0XmH4DbD0QTC9tSqGvpGN6yASnDLl
-----END PRIVATE KEY-----
";

    fn cert_block(body: &[u8]) -> String {
        String::from_utf8(encode(CERTIFICATE, body.to_vec())).unwrap()
    }

    #[test]
    fn only_certificates_go_to_tls_crt_in_their_order() {
        let bundle = format!(
            "{}{}{}",
            cert_block(b"leaf"),
            EC_PKCS8,
            cert_block(b"intermediate")
        );
        let crt = String::from_utf8(cert_part(bundle.as_bytes(), "tls.crt").unwrap()).unwrap();
        assert_eq!(crt, cert_block(b"leaf") + &cert_block(b"intermediate"));
        assert!(!crt.contains("PRIVATE"));
    }

    #[test]
    fn keys_become_the_traditional_form() {
        let bundle = format!("{}{}", cert_block(b"leaf"), EC_PKCS8);
        let key = String::from_utf8(cert_part(bundle.as_bytes(), "tls.key").unwrap()).unwrap();
        assert!(key.starts_with("-----BEGIN EC PRIVATE KEY-----\n"), "{key}");
        assert!(!key.contains("CERTIFICATE"));
        // The curve from the PKCS#8 wrapper is in the SEC1 key.
        let der = pem::parse(&key).unwrap().into_contents();
        let sec1 = sec1::EcPrivateKey::from_der(&der).unwrap();
        assert_eq!(
            sec1.parameters
                .and_then(|p| p.named_curve())
                .map(|o| o.to_string()),
            Some("1.2.840.10045.3.1.7".to_owned())
        );
        // PKCS#1 and SEC1 blocks pass as they are.
        let rsa = encode("RSA PRIVATE KEY", b"rsa-der".to_vec());
        assert_eq!(cert_part(&rsa, "tls.key").unwrap(), rsa);
    }

    #[test]
    fn what_cannot_be_a_tls_secret_is_named_without_content() {
        let crt = cert_block(b"leaf");
        assert_eq!(
            cert_part(crt.as_bytes(), "tls.key"),
            Err(TlsError::NoPrivateKey)
        );
        assert_eq!(
            cert_part(EC_PKCS8.as_bytes(), "tls.crt"),
            Err(TlsError::NoCertificate)
        );
        assert_eq!(
            cert_part(b"x", "ca.crt"),
            Err(TlsError::Key("ca.crt".into()))
        );
        let encrypted = encode("ENCRYPTED PRIVATE KEY", b"secret-bytes".to_vec());
        assert_eq!(
            cert_part(&encrypted, "tls.key"),
            Err(TlsError::KeyFormat("ENCRYPTED PRIVATE KEY".into()))
        );
        let e = cert_part(b"hunter2-not-pem-not-p12", "tls.crt").unwrap_err();
        assert!(matches!(e, TlsError::Pkcs12(_)), "{e}");
        assert!(!e.to_string().contains("hunter2"));
    }
}
