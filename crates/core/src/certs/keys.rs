//! Private keys: Go's `parsePrivateKey` / `MarshalPKCS8PrivateKey` round
//! trip, JWK to PEM (`jwkPublicKeyPem`, `jwkPrivateKeyPem`) and `rsaDecrypt`.

use base64::Engine as _;
use der::Decode as _;
use der::asn1::ObjectIdentifier;
use rsa::BoxedUint;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use rsa::{Oaep, PrivateKey as RsaPrivateKey, PublicKey as RsaPublicKey};
use zeroize::Zeroizing;

use super::{CertError, check_size, gopem};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

fn rsa_pkcs8(key: &RsaPrivateKey) -> Result<Zeroizing<Vec<u8>>, CertError> {
    key.to_pkcs8_der()
        .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
        .map_err(|_| CertError::PrivateKeyType)
}

macro_rules! ec_pkcs8 {
    ($curve:ident, $der:expr) => {
        $curve::SecretKey::from_pkcs8_der($der)
            .ok()
            .and_then(|k| k.to_pkcs8_der().ok())
            .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
            .ok_or(CertError::PrivateKeyType)
    };
}

/// Go's `ParsePKCS8PrivateKey` then `MarshalPKCS8PrivateKey`: the same key in
/// Go's canonical PKCS#8 (RSA with CRT values, EC with its public key and no
/// inner curve, Ed25519 seed only), attributes dropped.
pub(crate) fn normalize_pkcs8(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, CertError> {
    let info = pkcs8::PrivateKeyInfoRef::from_der(der).map_err(|_| CertError::PrivateKeyType)?;
    match info.algorithm.oid {
        RSA_ENCRYPTION => {
            rsa_pkcs8(&RsaPrivateKey::from_pkcs8_der(der).map_err(|_| CertError::PrivateKeyType)?)
        }
        EC_PUBLIC_KEY => match info.algorithm.parameters_oid().ok() {
            Some(P256) => ec_pkcs8!(p256, der),
            Some(P384) => ec_pkcs8!(p384, der),
            Some(P521) => ec_pkcs8!(p521, der),
            _ => Err(CertError::PrivateKeyType),
        },
        ED25519 => {
            let seed = der::asn1::OctetString::from_der(info.private_key.as_bytes())
                .map_err(|_| CertError::PrivateKeyType)?;
            let seed = Zeroizing::new(seed.into_bytes());
            if seed.len() != 32 {
                return Err(CertError::PrivateKeyType);
            }
            // SEQUENCE { 0, SEQUENCE { id-Ed25519 }, OCTET STRING { OCTET STRING seed } }
            let mut out = Zeroizing::new(vec![
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20,
            ]);
            out.extend_from_slice(&seed);
            Ok(out)
        }
        _ => Err(CertError::PrivateKeyType),
    }
}

/// ESO's `parsePrivateKey` (PKCS#1, then PKCS#8, then SEC1), as canonical PKCS#8.
pub(crate) fn parse_private_key_to_pkcs8(der: &[u8]) -> Result<Zeroizing<Vec<u8>>, CertError> {
    if let Ok(k) = RsaPrivateKey::from_pkcs1_der(der) {
        return rsa_pkcs8(&k);
    }
    if let Ok(k) = normalize_pkcs8(der) {
        return Ok(k);
    }
    macro_rules! sec1 {
        ($curve:ident) => {
            if let Ok(k) = $curve::SecretKey::from_sec1_der(der) {
                return k
                    .to_pkcs8_der()
                    .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
                    .map_err(|_| CertError::PrivateKeyType);
            }
        };
    }
    sec1!(p256);
    sec1!(p384);
    sec1!(p521);
    Err(CertError::PrivateKeyType)
}

/// The fields of a JWK that matter here.
#[derive(serde::Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

fn jwk_err(msg: impl Into<String>) -> CertError {
    CertError::Jwk(msg.into())
}

/// A base64url member (padding tolerated), by name in errors, never by value.
fn b64url(value: Option<&String>, name: &str) -> Result<Zeroizing<Vec<u8>>, CertError> {
    let v = value.ok_or_else(|| jwk_err(format!("missing \"{name}\"")))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map(Zeroizing::new)
        .map_err(|_| jwk_err(format!("\"{name}\" is not base64url")))
}

fn uint(bytes: &[u8], name: &str) -> Result<BoxedUint, CertError> {
    let bits = u32::try_from(bytes.len().max(1) * 8)
        .map_err(|_| jwk_err(format!("\"{name}\" too large")))?;
    BoxedUint::from_be_slice(bytes, bits)
        .map_err(|_| jwk_err(format!("\"{name}\" is not an integer")))
}

fn parse_jwk(json: &[u8]) -> Result<Jwk, CertError> {
    check_size(json)?;
    serde_json::from_slice(json).map_err(|e| {
        jwk_err(format!(
            "invalid JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}

/// Left-pad an EC coordinate to the field size.
fn coord(bytes: &[u8], size: usize, name: &str) -> Result<Vec<u8>, CertError> {
    let trimmed = &bytes[bytes
        .iter()
        .take_while(|&&b| b == 0)
        .count()
        .min(bytes.len())..];
    if trimmed.len() > size {
        return Err(jwk_err(format!("\"{name}\" is too long for the curve")));
    }
    let mut out = vec![0u8; size - trimmed.len()];
    out.extend_from_slice(trimmed);
    Ok(out)
}

macro_rules! ec_jwk {
    ($curve:ident, $size:expr, $jwk:expr, $private:expr) => {{
        let x = coord(&b64url($jwk.x.as_ref(), "x")?, $size, "x")?;
        let y = coord(&b64url($jwk.y.as_ref(), "y")?, $size, "y")?;
        let mut point = vec![0x04];
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        let public = $curve::PublicKey::from_sec1_bytes(&point)
            .map_err(|_| jwk_err("the point is not on the curve"))?;
        if $private {
            let d = Zeroizing::new(coord(&b64url($jwk.d.as_ref(), "d")?, $size, "d")?);
            let secret = $curve::SecretKey::from_slice(&d)
                .map_err(|_| jwk_err("\"d\" is not a valid private scalar"))?;
            if secret.public_key() != public {
                return Err(jwk_err("\"x\"/\"y\" are not the public key of \"d\""));
            }
            let der = secret
                .to_pkcs8_der()
                .map_err(|_| CertError::PrivateKeyType)?;
            Ok(gopem::encode("PRIVATE KEY", der.as_bytes()))
        } else {
            let der = public
                .to_public_key_der()
                .map_err(|_| jwk_err("cannot encode the public key"))?;
            Ok(gopem::encode("PUBLIC KEY", der.as_bytes()))
        }
    }};
}

fn jwk_pem(json: &[u8], private: bool) -> Result<Vec<u8>, CertError> {
    let jwk = parse_jwk(json)?;
    // As Go: a private JWK has no PKIX public form, a public one no PKCS#8 form.
    if jwk.d.is_some() != private {
        return Err(jwk_err(if private {
            "a public key has no private key PEM"
        } else {
            "a private key is not a public key"
        }));
    }
    match jwk.kty.as_str() {
        "RSA" => {
            let n = uint(&b64url(jwk.n.as_ref(), "n")?, "n")?;
            let e = uint(&b64url(jwk.e.as_ref(), "e")?, "e")?;
            if private {
                let d = uint(&b64url(jwk.d.as_ref(), "d")?, "d")?;
                let primes = match (&jwk.p, &jwk.q) {
                    (Some(_), Some(_)) => vec![
                        uint(&b64url(jwk.p.as_ref(), "p")?, "p")?,
                        uint(&b64url(jwk.q.as_ref(), "q")?, "q")?,
                    ],
                    _ => Vec::new(),
                };
                let key = RsaPrivateKey::from_components(n, e, d, primes)
                    .map_err(|e| jwk_err(format!("invalid RSA key: {e}")))?;
                Ok(gopem::encode("PRIVATE KEY", &rsa_pkcs8(&key)?))
            } else {
                let key = RsaPublicKey::new(n, e)
                    .map_err(|e| jwk_err(format!("invalid RSA key: {e}")))?;
                let der = key
                    .to_public_key_der()
                    .map_err(|_| jwk_err("cannot encode the public key"))?;
                Ok(gopem::encode("PUBLIC KEY", der.as_bytes()))
            }
        }
        "EC" => match jwk.crv.as_deref() {
            Some("P-256") => ec_jwk!(p256, 32, jwk, private),
            Some("P-384") => ec_jwk!(p384, 48, jwk, private),
            Some("P-521") => ec_jwk!(p521, 66, jwk, private),
            _ => Err(jwk_err("unsupported or missing \"crv\"")),
        },
        _ => Err(jwk_err("unsupported \"kty\"")),
    }
}

/// ESO `jwkPublicKeyPem(jwkjson)`: a public RSA or EC (P-256/384/521) JWK as
/// a PKIX `PUBLIC KEY` PEM block.
pub fn jwk_public_key_pem(jwk_json: &[u8]) -> Result<Vec<u8>, CertError> {
    jwk_pem(jwk_json, false)
}

/// ESO `jwkPrivateKeyPem(jwkjson)`: a private RSA or EC (P-256/384/521) JWK as
/// a PKCS#8 `PRIVATE KEY` PEM block.
pub fn jwk_private_key_pem(jwk_json: &[u8]) -> Result<Vec<u8>, CertError> {
    jwk_pem(jwk_json, true)
}

/// ESO `rsaDecrypt(scheme, hash, in, privateKey)`: `scheme` `None` returns
/// `ciphertext` as is; `RSA-OAEP` decrypts it (binary, not base64) with the
/// first PEM block of `private_key_pem` (PKCS#1 or PKCS#8 RSA), OAEP with
/// `hash` `SHA1`, `SHA256` or `SHA512` (any other word: SHA-256) and no label.
pub fn rsa_decrypt(
    scheme: &str,
    hash: &str,
    ciphertext: &[u8],
    private_key_pem: &[u8],
) -> Result<Vec<u8>, CertError> {
    match scheme {
        "None" => Ok(ciphertext.to_vec()),
        "RSA-OAEP" => {
            check_size(private_key_pem)?;
            check_size(ciphertext)?;
            let (block, _) = gopem::decode(private_key_pem);
            let block = block.ok_or(CertError::NoPemBlock)?;
            let pkcs8 =
                parse_private_key_to_pkcs8(&block.bytes).map_err(|_| CertError::ParsePrivateKey)?;
            let key = RsaPrivateKey::from_pkcs8_der(&pkcs8).map_err(|_| CertError::NotRsa)?;
            // rsa 0.10 exponentiates in constant time (RUSTSEC-2023-0071 fixed).
            let out = match hash {
                "SHA1" => key.decrypt(Oaep::<sha1::Sha1>::new(), ciphertext),
                "SHA512" => key.decrypt(Oaep::<sha2::Sha512>::new(), ciphertext),
                _ => key.decrypt(Oaep::<sha2::Sha256>::new(), ciphertext),
            };
            out.map_err(|_| CertError::RsaDecrypt)
        }
        other => Err(CertError::UnsupportedScheme(
            other.chars().take(64).collect(),
        )),
    }
}
