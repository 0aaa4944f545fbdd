//! PKCS#12 reading (go-pkcs12's `DecodeChain`, which ESO calls) and writing
//! (go-pkcs12's `Modern` encoder: PBES2 with PBKDF2-HMAC-SHA-256 and
//! AES-256-CBC, HMAC-SHA-256 MAC, 2,048 iterations), base64 out as ESO.
//!
//! The reader is written here rather than taken from `p12-keystore` so every
//! key derivation is checked against [`MAX_KDF_ITERATIONS`] before it runs
//! (that crate allows 10^6 per derivation and any number of key bags).

use base64::Engine as _;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyIvInit};
use der::asn1::{Any, ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence};
use hmac::{Hmac, KeyInit, Mac};
use pkcs12::cms::content_info::{CmsVersion, ContentInfo};
use pkcs12::cms::encrypted_data::EncryptedData;
use pkcs12::cms::enveloped_data::EncryptedContentInfo;
use pkcs12::kdf::{Pkcs12KeyType, derive_key};
use pkcs12::pfx::{Pfx, Version};
use pkcs12::safe_bag::SafeBag;
use pkcs12::{CertBag, DigestInfo, MacData};
use sha1::Sha1;
use sha2::{Sha224, Sha256, Sha384, Sha512};
use x509_cert::attr::Attribute;
use x509_cert::spki::AlgorithmIdentifierOwned;
use zeroize::Zeroizing;

use super::{CertError, MAX_KDF_ITERATIONS, check_size, gopem, keys, parse_cert};

const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
const PBE_SHA_3DES: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.3");
const PBE_SHA_RC2_40: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.1.6");
const PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
const PBKDF2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.12");
const HMAC_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.7");
const HMAC_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.9");
const HMAC_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.11");
const AES128_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2");
const AES192_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.22");
const AES256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA224: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.4");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const CERT_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.3");
const SHROUDED_KEY_BAG: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");
const X509_CERT: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.22.1");
const FRIENDLY_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.20");
const LOCAL_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.21");
const JAVA_TRUSTED: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113894.746875.1.1");
const ANY_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// go-pkcs12 `Modern`: iterations of both the PBKDF2 and the MAC derivation.
const WRITE_ITERATIONS: u32 = 2048;
const SALT_LEN: usize = 16;

fn p12err(msg: impl Into<String>) -> CertError {
    CertError::Pkcs12(msg.into())
}

fn der_err(e: der::Error) -> CertError {
    p12err(format!("error reading P12 data: {e}"))
}

/// PBKDF2-params with its optional fields (the `pkcs12` crate's type requires `prf`).
#[derive(Clone, Debug, Sequence)]
struct Pbkdf2Params {
    salt: OctetString,
    iteration_count: u32,
    key_length: Option<u32>,
    prf: Option<AlgorithmIdentifierOwned>,
}

#[derive(Clone, Debug, Sequence)]
struct Pbes2Params {
    kdf: AlgorithmIdentifierOwned,
    encryption: AlgorithmIdentifierOwned,
}

#[derive(Clone, Debug, Sequence)]
struct EncryptedPrivateKeyInfo {
    encryption_algorithm: AlgorithmIdentifierOwned,
    encrypted_data: OctetString,
}

/// go-pkcs12's `bmpStringZeroTerminated`: UCS-2 big-endian plus two zero bytes.
fn bmp_password(password: &str) -> Result<Zeroizing<Vec<u8>>, CertError> {
    let mut out = Zeroizing::new(Vec::with_capacity(password.len() * 2 + 2));
    for c in password.chars() {
        let c = u16::try_from(u32::from(c))
            .map_err(|_| p12err("string contains characters that cannot be encoded in UCS-2"))?;
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&[0, 0]);
    Ok(out)
}

fn check_iterations(iterations: i64) -> Result<i32, CertError> {
    if iterations < 1 {
        return Err(p12err("iteration count must be positive"));
    }
    if iterations > i64::from(MAX_KDF_ITERATIONS) {
        return Err(p12err(format!(
            "iteration count {iterations} exceeds the limit of {MAX_KDF_ITERATIONS}"
        )));
    }
    i32::try_from(iterations).map_err(|_| p12err("iteration count out of range"))
}

/// The password as the two encodings PKCS#12 uses: BMP for the PKCS#12 KDF,
/// UTF-8 for PBES2 (go-pkcs12 decodes the BMP form back, as RFC 8018 asks).
struct Password {
    bmp: Zeroizing<Vec<u8>>,
    utf8: Zeroizing<Vec<u8>>,
}

fn verify_mac(mac: &MacData, content: &[u8], password: &[u8]) -> Result<bool, CertError> {
    let iterations = check_iterations(i64::from(mac.iterations))?;
    let salt = mac.mac_salt.as_bytes();
    let expected = mac.mac.digest.as_bytes();
    macro_rules! check {
        ($d:ty) => {{
            let key = Zeroizing::new(derive_key::<$d>(
                password,
                salt,
                Pkcs12KeyType::Mac,
                iterations,
                <$d as sha2::digest::OutputSizeUser>::output_size(),
            ));
            let mut m = <Hmac<$d> as KeyInit>::new_from_slice(&key)
                .map_err(|_| p12err("invalid MAC key length"))?;
            m.update(content);
            m.verify_slice(expected).is_ok()
        }};
    }
    let alg = mac.mac.algorithm.oid;
    Ok(match alg {
        SHA1 => check!(Sha1),
        SHA224 => check!(Sha224),
        SHA256 => check!(Sha256),
        SHA384 => check!(Sha384),
        SHA512 => check!(Sha512),
        _ => return Err(p12err(format!("unknown digest algorithm: {alg}"))),
    })
}

/// CBC-decrypt and strip PKCS#7 padding, as go-pkcs12's `pbDecrypt` checks it.
fn cbc_decrypt<D>(dec: D, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CertError>
where
    D: BlockModeDecrypt,
{
    let block = <D as cbc::cipher::BlockSizeUser>::block_size();
    if data.is_empty() {
        return Err(p12err("empty encrypted data"));
    }
    if !data.len().is_multiple_of(block) {
        return Err(p12err("input is not a multiple of the block size"));
    }
    let mut buf = Zeroizing::new(data.to_vec());
    dec.decrypt_padded::<cbc::cipher::block_padding::NoPadding>(&mut buf)
        .map_err(|_| p12err("decryption error, incorrect padding"))?;
    let len = buf.len();
    let pad = buf.last().copied().map_or(0, usize::from);
    if pad == 0 || pad > block || buf[len - pad..].iter().any(|&b| usize::from(b) != pad) {
        return Err(p12err("decryption error, incorrect padding"));
    }
    buf.truncate(len - pad);
    Ok(buf)
}

fn cbc_with_key<C>(key: &[u8], iv: &[u8], data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CertError>
where
    C: cbc::cipher::BlockCipherDecrypt + cbc::cipher::KeyInit,
{
    let dec = cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| p12err("invalid key or IV length"))?;
    cbc_decrypt(dec, data)
}

/// Decrypt PKCS#12 PBE (3DES, RC2-40) or PBES2 (PBKDF2 + AES-CBC) content.
fn pb_decrypt(
    alg: &AlgorithmIdentifierOwned,
    data: &[u8],
    password: &Password,
) -> Result<Zeroizing<Vec<u8>>, CertError> {
    let params_der = || {
        alg.parameters
            .as_ref()
            .ok_or_else(|| p12err("missing algorithm parameters"))?
            .to_der()
            .map_err(der_err)
    };
    match alg.oid {
        PBE_SHA_3DES | PBE_SHA_RC2_40 => {
            let params =
                pkcs12::pbe_params::Pkcs12PbeParams::from_der(&params_der()?).map_err(der_err)?;
            let iterations = check_iterations(i64::from(params.iterations))?;
            let salt = params.salt.as_bytes();
            let key_len = if alg.oid == PBE_SHA_3DES { 24 } else { 5 };
            let key = Zeroizing::new(derive_key::<Sha1>(
                &password.bmp,
                salt,
                Pkcs12KeyType::EncryptionKey,
                iterations,
                key_len,
            ));
            let iv = derive_key::<Sha1>(&password.bmp, salt, Pkcs12KeyType::Iv, iterations, 8);
            if alg.oid == PBE_SHA_3DES {
                cbc_with_key::<des::TdesEde3>(&key, &iv, data)
            } else {
                let cipher = rc2::Rc2::new_with_eff_key_len(&key, 40);
                let dec = cbc::Decryptor::<rc2::Rc2>::inner_iv_slice_init(cipher, &iv)
                    .map_err(|_| p12err("invalid IV length"))?;
                cbc_decrypt(dec, data)
            }
        }
        PBES2 => {
            let params = Pbes2Params::from_der(&params_der()?).map_err(der_err)?;
            if params.kdf.oid != PBKDF2 {
                return Err(p12err(format!(
                    "kdf algorithm {} is not supported",
                    params.kdf.oid
                )));
            }
            let kdf = Pbkdf2Params::from_der(
                &params
                    .kdf
                    .parameters
                    .as_ref()
                    .ok_or_else(|| p12err("missing PBKDF2 parameters"))?
                    .to_der()
                    .map_err(der_err)?,
            )
            .map_err(der_err)?;
            let iterations = check_iterations(i64::from(kdf.iteration_count))?.unsigned_abs();
            let key_len = match params.encryption.oid {
                AES128_CBC => 16,
                AES192_CBC => 24,
                AES256_CBC => 32,
                other => return Err(p12err(format!("pbes2 algorithm {other} is not supported"))),
            };
            let iv = params
                .encryption
                .parameters
                .as_ref()
                .ok_or_else(|| p12err("missing IV"))?
                .decode_as::<OctetString>()
                .map_err(der_err)?;
            let mut key = Zeroizing::new(vec![0u8; key_len]);
            let salt = kdf.salt.as_bytes();
            match kdf.prf.as_ref().map(|p| p.oid) {
                None | Some(HMAC_SHA1) => {
                    pbkdf2::pbkdf2_hmac::<Sha1>(&password.utf8, salt, iterations, &mut key);
                }
                Some(HMAC_SHA256) => {
                    pbkdf2::pbkdf2_hmac::<Sha256>(&password.utf8, salt, iterations, &mut key);
                }
                Some(HMAC_SHA512) => {
                    pbkdf2::pbkdf2_hmac::<Sha512>(&password.utf8, salt, iterations, &mut key);
                }
                Some(other) => return Err(p12err(format!("prf {other} is not supported"))),
            }
            let iv = iv.as_bytes();
            match key_len {
                16 => cbc_with_key::<aes::Aes128>(&key, iv, data),
                24 => cbc_with_key::<aes::Aes192>(&key, iv, data),
                _ => cbc_with_key::<aes::Aes256>(&key, iv, data),
            }
        }
        other => Err(p12err(format!("algorithm {other} is not supported"))),
    }
}

/// go-pkcs12's `getSafeContents`: check the MAC, then every bag of the
/// `expected_items` safes (decrypted where encrypted), in order.
fn safe_bags(
    pfx_der: &[u8],
    password: &str,
    expected_items: usize,
) -> Result<(Vec<SafeBag>, Password), CertError> {
    check_size(pfx_der)?;
    let pfx = Pfx::from_der(pfx_der).map_err(der_err)?;
    if pfx.version != Version::V3 {
        return Err(p12err("can only decode v3 PFX PDU's"));
    }
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(p12err("only password-protected PFX is implemented"));
    }
    let content = pfx
        .auth_safe
        .content
        .decode_as::<OctetString>()
        .map_err(der_err)?;
    let content = content.as_bytes();
    let mac = pfx.mac_data.ok_or_else(|| p12err("no MAC in data"))?;
    let mut bmp = bmp_password(password)?;
    if !verify_mac(&mac, content, &bmp)? {
        // Some writers derive the empty password from no bytes at all.
        if password.is_empty() && verify_mac(&mac, content, &[])? {
            bmp = Zeroizing::new(Vec::new());
        } else {
            return Err(p12err("decryption password incorrect"));
        }
    }
    let password = Password {
        bmp,
        utf8: Zeroizing::new(password.as_bytes().to_vec()),
    };
    let safes = Vec::<ContentInfo>::from_der(content).map_err(der_err)?;
    if safes.len() != expected_items {
        return Err(p12err(if expected_items == 2 {
            "expected exactly two items in the authenticated safe"
        } else {
            "expected exactly one item in the authenticated safe"
        }));
    }
    let mut bags = Vec::new();
    for ci in safes {
        let data: Zeroizing<Vec<u8>> = match ci.content_type {
            ID_DATA => Zeroizing::new(
                ci.content
                    .decode_as::<OctetString>()
                    .map_err(der_err)?
                    .into_bytes()
                    .into_vec(),
            ),
            ID_ENCRYPTED_DATA => {
                let ed = ci.content.decode_as::<EncryptedData>().map_err(der_err)?;
                if ed.version != CmsVersion::V0 {
                    return Err(p12err("only version 0 of EncryptedData is supported"));
                }
                let ct = ed
                    .enc_content_info
                    .encrypted_content
                    .as_ref()
                    .map(OctetString::as_bytes)
                    .unwrap_or_default();
                pb_decrypt(&ed.enc_content_info.content_enc_alg, ct, &password)?
            }
            _ => {
                return Err(p12err(
                    "only data and encryptedData content types are supported in authenticated safe",
                ));
            }
        };
        bags.extend(Vec::<SafeBag>::from_der(&data).map_err(der_err)?);
    }
    Ok((bags, password))
}

/// The content of a bag's explicit `[0]` value (the `pkcs12` crate's
/// `SafeBag` keeps the wrapper when decoding).
fn bag_content(bag: &SafeBag) -> Result<&[u8], CertError> {
    if bag.bag_value.first() == Some(&0xa0) {
        Ok(der::asn1::AnyRef::from_der(&bag.bag_value)
            .map_err(der_err)?
            .value())
    } else {
        Ok(&bag.bag_value)
    }
}

/// A certificate bag's X.509 certificate, checked to parse.
fn cert_bag_der(bag: &SafeBag) -> Result<Vec<u8>, CertError> {
    let cb = CertBag::from_der(bag_content(bag)?).map_err(der_err)?;
    if cb.cert_id != X509_CERT {
        return Err(p12err("only X509 certificates are supported"));
    }
    let der = cb.cert_value.into_bytes().into_vec();
    parse_cert(&der)?;
    Ok(der)
}

/// go-pkcs12 `DecodeChain`: the private key as PKCS#8 DER, the first
/// certificate, and the other certificates in bag order.
struct Chain {
    key: Zeroizing<Vec<u8>>,
    cert: Vec<u8>,
    ca_certs: Vec<Vec<u8>>,
}

fn decode_chain(pfx_der: &[u8], password: &str) -> Result<Chain, CertError> {
    let (bags, password) = safe_bags(pfx_der, password, 2)?;
    let mut key = None;
    let mut certs = Vec::new();
    for bag in &bags {
        match bag.bag_id {
            CERT_BAG => certs.push(cert_bag_der(bag)?),
            SHROUDED_KEY_BAG => {
                if key.is_some() {
                    return Err(p12err("expected exactly one key bag"));
                }
                let info = EncryptedPrivateKeyInfo::from_der(bag_content(bag)?).map_err(der_err)?;
                let plain = pb_decrypt(
                    &info.encryption_algorithm,
                    info.encrypted_data.as_bytes(),
                    &password,
                )?;
                key = Some(keys::normalize_pkcs8(&plain)?);
            }
            _ => {}
        }
    }
    let mut certs = certs.into_iter();
    let cert = certs.next().ok_or_else(|| p12err("certificate missing"))?;
    let key = key.ok_or_else(|| p12err("private key missing"))?;
    Ok(Chain {
        key,
        cert,
        ca_certs: certs.collect(),
    })
}

/// ESO `pkcs12keyPass(pass, input)`: the private key of a PKCS#12 archive as
/// a PKCS#8 `PRIVATE KEY` PEM block.
pub fn pkcs12_key_pass(pass: &str, input: &[u8]) -> Result<Vec<u8>, CertError> {
    let chain = decode_chain(input, pass).map_err(|e| CertError::Pkcs12Key(inner_msg(e)))?;
    Ok(gopem::encode("PRIVATE KEY", &chain.key))
}

/// ESO `pkcs12key(input)`: [`pkcs12_key_pass`] with the empty password.
pub fn pkcs12_key(input: &[u8]) -> Result<Vec<u8>, CertError> {
    pkcs12_key_pass("", input)
}

/// ESO `pkcs12certPass(pass, input)`: the certificates of a PKCS#12 archive as
/// PEM, ordered leaf to root when they form one chain, else in bag order.
pub fn pkcs12_cert_pass(pass: &str, input: &[u8]) -> Result<Vec<u8>, CertError> {
    let chain = decode_chain(input, pass).map_err(|e| CertError::Pkcs12Cert(inner_msg(e)))?;
    let mut pem = gopem::encode("CERTIFICATE", &chain.cert);
    for ca in &chain.ca_certs {
        pem.extend(gopem::encode("CERTIFICATE", ca));
    }
    // As ESO: an archive whose certificates are not one chain comes out unordered.
    Ok(super::ordered_chain_pem(&pem).unwrap_or(pem))
}

/// ESO `pkcs12cert(input)`: [`pkcs12_cert_pass`] with the empty password.
pub fn pkcs12_cert(input: &[u8]) -> Result<Vec<u8>, CertError> {
    pkcs12_cert_pass("", input)
}

/// Not an ESO function: the certificates of a trust store (as written by
/// [`pem_truststore_to_pkcs12_pass`], go-pkcs12 `DecodeTrustStore`) as PEM,
/// for reading such output back.
pub fn pkcs12_truststore_certs(pass: &str, input: &[u8]) -> Result<Vec<u8>, CertError> {
    let (bags, _) = safe_bags(input, pass, 1)?;
    let mut pem = Vec::new();
    for bag in &bags {
        if bag.bag_id != CERT_BAG {
            return Err(p12err("expected only certificate bags"));
        }
        let trusted = bag
            .bag_attributes
            .as_ref()
            .is_some_and(|attrs| attrs.iter().any(|a| a.oid == JAVA_TRUSTED));
        if !trusted {
            return Err(p12err(
                "trust store contains a certificate that is not marked as trusted",
            ));
        }
        pem.extend(gopem::encode("CERTIFICATE", &cert_bag_der(bag)?));
    }
    Ok(pem)
}

/// Keep the inner reason of a `Pkcs12` error, to be wrapped by ESO's prefix.
fn inner_msg(e: CertError) -> String {
    match e {
        CertError::Pkcs12(m) => format!("pkcs12: {m}"),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------- writing

fn random<const N: usize>() -> Result<[u8; N], CertError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|_| p12err("no randomness available"))?;
    Ok(buf)
}

fn encode_err(e: der::Error) -> CertError {
    p12err(format!("error writing P12 data: {e}"))
}

fn any_of<T: der::EncodeValue + der::Tagged>(value: &T) -> Result<Any, CertError> {
    Any::encode_from(value).map_err(encode_err)
}

/// PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC) encryption with fresh salt and IV.
fn pbes2_encrypt(
    plain: &[u8],
    password: &str,
) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), CertError> {
    let salt = random::<SALT_LEN>()?;
    let iv = random::<16>()?;
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, WRITE_ITERATIONS, &mut *key);
    let enc = cbc::Encryptor::<aes::Aes256>::new_from_slices(&*key, &iv)
        .map_err(|_| p12err("invalid key or IV length"))?;
    let ct = enc.encrypt_padded_vec::<cbc::cipher::block_padding::Pkcs7>(plain);
    let kdf = Pbkdf2Params {
        salt: OctetString::new(salt.to_vec()).map_err(encode_err)?,
        iteration_count: WRITE_ITERATIONS,
        key_length: None,
        // go-pkcs12 writes the PRF without a NULL parameter.
        prf: Some(AlgorithmIdentifierOwned {
            oid: HMAC_SHA256,
            parameters: None,
        }),
    };
    let params = Pbes2Params {
        kdf: AlgorithmIdentifierOwned {
            oid: PBKDF2,
            parameters: Some(any_of(&kdf)?),
        },
        encryption: AlgorithmIdentifierOwned {
            oid: AES256_CBC,
            parameters: Some(any_of(&OctetString::new(iv.to_vec()).map_err(encode_err)?)?),
        },
    };
    Ok((
        AlgorithmIdentifierOwned {
            oid: PBES2,
            parameters: Some(any_of(&params)?),
        },
        ct,
    ))
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, CertError> {
    let mut values = SetOfVec::new();
    values.insert(value).map_err(encode_err)?;
    Ok(Attribute { oid, values })
}

fn attributes(attrs: Vec<Attribute>) -> Result<Option<SetOfVec<Attribute>>, CertError> {
    if attrs.is_empty() {
        return Ok(None);
    }
    let mut set = SetOfVec::new();
    for a in attrs {
        set.insert(a).map_err(encode_err)?;
    }
    Ok(Some(set))
}

/// A bag whose value is the explicit `[0]` wrapping of `content`.
fn bag(
    id: ObjectIdentifier,
    content: &impl Encode,
    attrs: Vec<Attribute>,
) -> Result<SafeBag, CertError> {
    Ok(SafeBag {
        bag_id: id,
        bag_value: content.to_der().map_err(encode_err)?,
        bag_attributes: attributes(attrs)?,
    })
}

fn cert_bag(der: &[u8], attrs: Vec<Attribute>) -> Result<SafeBag, CertError> {
    let cb = CertBag {
        cert_id: X509_CERT,
        cert_value: OctetString::new(der.to_vec()).map_err(encode_err)?,
    };
    bag(CERT_BAG, &cb, attrs)
}

fn encrypted_safe(bags: &[SafeBag], password: &str) -> Result<ContentInfo, CertError> {
    let plain = Zeroizing::new(bags.to_vec().to_der().map_err(encode_err)?);
    let (alg, ct) = pbes2_encrypt(&plain, password)?;
    let ed = EncryptedData {
        version: CmsVersion::V0,
        enc_content_info: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg: alg,
            encrypted_content: Some(OctetString::new(ct).map_err(encode_err)?),
        },
        unprotected_attrs: None,
    };
    Ok(ContentInfo {
        content_type: ID_ENCRYPTED_DATA,
        content: any_of(&ed)?,
    })
}

fn data_safe(bags: &[SafeBag]) -> Result<ContentInfo, CertError> {
    let plain = bags.to_vec().to_der().map_err(encode_err)?;
    Ok(ContentInfo {
        content_type: ID_DATA,
        content: any_of(&OctetString::new(plain).map_err(encode_err)?)?,
    })
}

/// The PFX of `safes` with an HMAC-SHA-256 MAC, base64 (standard, padded).
fn finish(safes: Vec<ContentInfo>, password: &str) -> Result<Vec<u8>, CertError> {
    let auth_safe = safes.to_der().map_err(encode_err)?;
    let salt = random::<SALT_LEN>()?;
    let bmp = bmp_password(password)?;
    let iterations = i32::try_from(WRITE_ITERATIONS).map_err(|_| p12err("iterations"))?;
    let key = Zeroizing::new(derive_key::<Sha256>(
        &bmp,
        &salt,
        Pkcs12KeyType::Mac,
        iterations,
        32,
    ));
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key).map_err(|_| p12err("invalid MAC key"))?;
    mac.update(&auth_safe);
    let digest = mac.finalize().into_bytes();
    let mac_data = MacData {
        mac: DigestInfo {
            algorithm: AlgorithmIdentifierOwned {
                oid: SHA256,
                parameters: None,
            },
            digest: OctetString::new(digest.to_vec()).map_err(encode_err)?,
        },
        mac_salt: OctetString::new(salt.to_vec()).map_err(encode_err)?,
        iterations,
    };
    let pfx = Pfx {
        version: Version::V3,
        auth_safe: ContentInfo {
            content_type: ID_DATA,
            content: any_of(&OctetString::new(auth_safe).map_err(encode_err)?)?,
        },
        mac_data: Some(mac_data),
    };
    let der = pfx.to_der().map_err(encode_err)?;
    Ok(base64::engine::general_purpose::STANDARD
        .encode(der)
        .into_bytes())
}

/// go-pkcs12 `Modern.Encode`: the certificates (leaf tagged with the key's
/// local key id) in an encrypted safe, the shrouded key in a plain one.
fn encode_chain(
    cert: &[u8],
    ca_certs: &[Vec<u8>],
    key_pem: &[u8],
    password: &str,
) -> Result<Vec<u8>, CertError> {
    check_size(key_pem)?;
    let (block, _) = gopem::decode(key_pem);
    let block = block.ok_or_else(|| p12err("no PEM block in the private key"))?;
    let key = keys::parse_private_key_to_pkcs8(&block.bytes)?;
    let fingerprint = <Sha1 as sha1::Digest>::digest(cert);
    let local_key_id = || {
        attribute(
            LOCAL_KEY_ID,
            any_of(&OctetString::new(fingerprint.to_vec()).map_err(encode_err)?)?,
        )
    };
    let mut cert_bags = vec![cert_bag(cert, vec![local_key_id()?])?];
    for ca in ca_certs {
        cert_bags.push(cert_bag(ca, Vec::new())?);
    }
    let (alg, ct) = pbes2_encrypt(&key, password)?;
    let shrouded = EncryptedPrivateKeyInfo {
        encryption_algorithm: alg,
        encrypted_data: OctetString::new(ct).map_err(encode_err)?,
    };
    let key_bag = bag(SHROUDED_KEY_BAG, &shrouded, vec![local_key_id()?])?;
    finish(
        vec![
            encrypted_safe(&cert_bags, password)?,
            data_safe(&[key_bag])?,
        ],
        password,
    )
}

/// The certificate DER of the first PEM block, and the input after it.
fn first_cert(pem: &[u8]) -> Result<(Vec<u8>, &[u8]), CertError> {
    check_size(pem)?;
    let (block, rest) = gopem::decode(pem);
    let block = block.ok_or(CertError::NoPemBlock)?;
    parse_cert(&block.bytes)?;
    Ok((block.bytes, rest))
}

/// ESO's `parseCaCerts`: every PEM block up to the end must be a certificate.
fn all_certs(mut pem: &[u8]) -> Result<Vec<Vec<u8>>, CertError> {
    let mut certs = Vec::new();
    while !pem.is_empty() {
        if certs.len() == super::MAX_CHAIN_CERTS {
            return Err(CertError::TooManyCertificates {
                count: certs.len() + 1,
                limit: super::MAX_CHAIN_CERTS,
            });
        }
        let (der, rest) = first_cert(pem)?;
        certs.push(der);
        pem = rest;
    }
    Ok(certs)
}

/// ESO `pemToPkcs12Pass(cert, key, pass)`: a PKCS#12 of the first certificate
/// of `cert` and the key (PKCS#1, PKCS#8 or SEC1 PEM), base64-encoded.
pub fn pem_to_pkcs12_pass(cert: &[u8], key: &[u8], pass: &str) -> Result<Vec<u8>, CertError> {
    let (leaf, _) = first_cert(cert)?;
    encode_chain(&leaf, &[], key, pass)
}

/// ESO `pemToPkcs12(cert, key)`: [`pem_to_pkcs12_pass`] with the empty password.
pub fn pem_to_pkcs12(cert: &[u8], key: &[u8]) -> Result<Vec<u8>, CertError> {
    pem_to_pkcs12_pass(cert, key, "")
}

/// ESO `fullPemToPkcs12Pass(cert, key, pass)`: as [`pem_to_pkcs12_pass`] with
/// the certificates after the first as CA certificates.
pub fn full_pem_to_pkcs12_pass(cert: &[u8], key: &[u8], pass: &str) -> Result<Vec<u8>, CertError> {
    let (leaf, rest) = first_cert(cert)?;
    let cas = all_certs(rest)?;
    encode_chain(&leaf, &cas, key, pass)
}

/// ESO `fullPemToPkcs12(cert, key)`: [`full_pem_to_pkcs12_pass`] with the empty password.
pub fn full_pem_to_pkcs12(cert: &[u8], key: &[u8]) -> Result<Vec<u8>, CertError> {
    full_pem_to_pkcs12_pass(cert, key, "")
}

/// ESO `pemTruststoreToPKCS12Pass(cert, pass)`: a Java trust store (PKCS#12
/// with trusted-certificate bags) of the certificates, base64-encoded.
pub fn pem_truststore_to_pkcs12_pass(cert: &[u8], pass: &str) -> Result<Vec<u8>, CertError> {
    let certs = all_certs(cert)?;
    let mut bags = Vec::with_capacity(certs.len());
    for der in &certs {
        let subject = parse_cert(der)?.tbs_certificate().subject().to_string();
        let name = der::asn1::BmpString::from_utf8(&subject).map_err(encode_err)?;
        let trusted = attribute(JAVA_TRUSTED, any_of(&ANY_EKU)?)?;
        let friendly = attribute(FRIENDLY_NAME, any_of(&name)?)?;
        bags.push(cert_bag(der, vec![trusted, friendly])?);
    }
    finish(vec![encrypted_safe(&bags, pass)?], pass)
}

/// ESO `pemTruststoreToPKCS12(cert)`: [`pem_truststore_to_pkcs12_pass`] with the empty password.
pub fn pem_truststore_to_pkcs12(cert: &[u8]) -> Result<Vec<u8>, CertError> {
    pem_truststore_to_pkcs12_pass(cert, "")
}
