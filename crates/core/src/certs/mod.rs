//! External Secrets Operator's (v2.9.0) certificate and crypto template
//! functions (`filterPEM`, `pkcs12cert`, `jwkPrivateKeyPem`, `rsaDecrypt`,
//! ...) as pure functions over byte strings, for the template engine's
//! function table. Go's strings are byte strings, so inputs are `&[u8]` and
//! outputs `Vec<u8>` (`cert_sans` returns a list, as ESO's returns a slice).
//!
//! Inputs come from secret stores and may be hostile, so work is bounded:
//! see [`MAX_INPUT_BYTES`], [`MAX_CHAIN_CERTS`] and [`MAX_KDF_ITERATIONS`].
//! Errors name what failed and never carry key or secret bytes.

mod gopem;
mod keys;
mod pkcs12;

pub use keys::{jwk_private_key_pem, jwk_public_key_pem, rsa_decrypt};
pub use pkcs12::{
    full_pem_to_pkcs12, full_pem_to_pkcs12_pass, pem_to_pkcs12, pem_to_pkcs12_pass,
    pem_truststore_to_pkcs12, pem_truststore_to_pkcs12_pass, pkcs12_cert, pkcs12_cert_pass,
    pkcs12_key, pkcs12_key_pass, pkcs12_truststore_certs,
};

use der::Decode as _;
use x509_cert::Certificate;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectAltName, SubjectKeyIdentifier};

/// Largest input any function accepts: 2 MiB (a Kubernetes Secret holds at
/// most 1 MiB, an AWS secret 64 KiB), so a scan or parse stays in milliseconds.
pub const MAX_INPUT_BYTES: usize = 2 * 1024 * 1024;

/// Most certificates `filter_cert_chain` (and `pkcs12_cert` ordering) links:
/// linking is quadratic in their number (ESO's algorithm), 1,000 is ~10^6 comparisons.
pub const MAX_CHAIN_CERTS: usize = 1_000;

/// Most iterations of any one PKCS#12 key derivation (MAC or decryption) read.
/// OpenSSL writes 2,048, Java 10,000, Windows 2,000; a reader decrypts at most
/// four such derivations per file (MAC, two safes, one key), so this bounds a
/// hostile file to well under a second of CPU instead of hours.
pub const MAX_KDF_ITERATIONS: u32 = 200_000;

/// Why a certificate function failed. Messages follow ESO's where its tests
/// match on them and never include key, password or secret bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// An input over [`MAX_INPUT_BYTES`].
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    InputTooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// `filter_pem` found no block of the type and something that is not PEM.
    #[error("error filtering pem: found junk")]
    Junk,
    /// No PEM block where one was required.
    #[error("failed to decode PEM block")]
    NoPemBlock,
    /// A PEM block that is not a DER X.509 certificate.
    #[error("failed to parse certificate: {0}")]
    Certificate(String),
    /// More certificates than [`MAX_CHAIN_CERTS`].
    #[error("{count} certificates exceed the limit of {limit}")]
    TooManyCertificates {
        /// Certificates found.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The certificates form more than one chain.
    #[error("found multiple leaf or disjunct certificates")]
    DisjunctChain,
    /// No certificate is a leaf (none, or all sign another).
    #[error("no leaf certificate found")]
    NoLeaf,
    /// The chain loops.
    #[error("constructing chain resulted in cycle")]
    ChainCycle,
    /// `pkcs12_key*` could not read the archive.
    #[error("unable to decode pkcs12 with password: {0}")]
    Pkcs12Key(String),
    /// `pkcs12_cert*` could not read the archive.
    #[error("unable to decode pkcs12 certificate with password: {0}")]
    Pkcs12Cert(String),
    /// Reading or writing PKCS#12 failed otherwise.
    #[error("pkcs12: {0}")]
    Pkcs12(String),
    /// A private key in none of PKCS#1, PKCS#8 or SEC1, or of an unsupported algorithm.
    #[error("unable to parse private key type")]
    PrivateKeyType,
    /// A JWK that is not a supported, well-formed key.
    #[error("jwk: {0}")]
    Jwk(String),
    /// `rsa_decrypt` got a key it could not parse.
    #[error("could not parse private key: unable to parse private key type")]
    ParsePrivateKey,
    /// `rsa_decrypt` got a key that is not RSA.
    #[error("could not parse RSA private key")]
    NotRsa,
    /// OAEP decryption failed (wrong key, hash or ciphertext).
    #[error("error decrypting data with RSA: decryption error")]
    RsaDecrypt,
    /// `rsa_decrypt` got a scheme other than `None` and `RSA-OAEP`.
    #[error("decryption scheme {0} is not supported")]
    UnsupportedScheme(String),
}

pub(crate) fn check_size(input: &[u8]) -> Result<(), CertError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(CertError::InputTooLarge {
            size: input.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    Ok(())
}

/// ESO's `trimJunk`: drop everything before the first `-----BEGIN`.
fn trim_junk(input: &[u8]) -> &[u8] {
    match input.windows(10).position(|w| w == b"-----BEGIN") {
        Some(i) => &input[i..],
        None => input,
    }
}

/// ESO `filterPEM(pemType, input)`: the PEM blocks whose type equals `pem_type`
/// (ASCII case-insensitively), re-encoded and concatenated.
pub fn filter_pem(pem_type: &str, input: &[u8]) -> Result<Vec<u8>, CertError> {
    check_size(input)?;
    let mut data = trim_junk(input);
    let mut out = Vec::new();
    let mut rest: &[u8];
    loop {
        let (block, after) = gopem::decode(data);
        rest = after;
        data = after;
        let Some(block) = block else { break };
        if block.kind.eq_ignore_ascii_case(pem_type.as_bytes()) {
            gopem::encode_into(&mut out, &block);
        }
    }
    if out.is_empty() && !rest.is_empty() {
        return Err(CertError::Junk);
    }
    Ok(out)
}

/// What chain linking needs of a certificate.
struct ChainCert {
    der: Vec<u8>,
    /// The authority key identifier, `None` when absent (Go's nil).
    aki: Option<Vec<u8>>,
    ski: Option<Vec<u8>>,
}

impl ChainCert {
    fn parse(der: Vec<u8>) -> Result<Self, CertError> {
        let cert = parse_cert(&der)?;
        let tbs = cert.tbs_certificate();
        let aki = tbs
            .get_extension::<AuthorityKeyIdentifier>()
            .map_err(|e| CertError::Certificate(e.to_string()))?
            .and_then(|(_, a)| a.key_identifier)
            .map(|k| k.into_bytes().into_vec());
        let ski = tbs
            .get_extension::<SubjectKeyIdentifier>()
            .map_err(|e| CertError::Certificate(e.to_string()))?
            .map(|(_, s)| s.0.into_bytes().into_vec());
        Ok(ChainCert { der, aki, ski })
    }

    /// Go's `bytes.Equal(aki, ski)`: nil and empty compare equal.
    fn aki_is_ski(&self, signer: &ChainCert) -> bool {
        self.aki.as_deref().unwrap_or_default() == signer.ski.as_deref().unwrap_or_default()
    }

    fn is_root(&self) -> bool {
        self.aki.is_none() || self.aki_is_ski(self)
    }
}

pub(crate) fn parse_cert(der: &[u8]) -> Result<Certificate, CertError> {
    Certificate::from_der(der).map_err(|e| CertError::Certificate(e.to_string()))
}

/// Every PEM block of `data` parsed as a certificate, whatever its type (as ESO).
fn chain_certs(data: &[u8]) -> Result<Vec<ChainCert>, CertError> {
    let mut certs = Vec::new();
    let mut data = data;
    while let (Some(block), rest) = gopem::decode(data) {
        data = rest;
        if certs.len() == MAX_CHAIN_CERTS {
            return Err(CertError::TooManyCertificates {
                count: certs.len() + 1,
                limit: MAX_CHAIN_CERTS,
            });
        }
        certs.push(ChainCert::parse(block.bytes)?);
    }
    Ok(certs)
}

/// ESO's chain ordering (from the Azure provider): link each certificate to
/// the first other one whose subject key id is its authority key id, then walk
/// from the single certificate that signs none. Leaf first, root last.
fn order_chain(certs: Vec<ChainCert>) -> Result<Vec<ChainCert>, CertError> {
    let n = certs.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        if let Some(j) = (0..n).find(|&j| j != i && certs[i].aki_is_ski(&certs[j])) {
            is_parent[j] = true;
            parent[i] = Some(j);
        }
    }
    let mut leaves = (0..n).filter(|&i| !is_parent[i]);
    let leaf = leaves.next().ok_or(CertError::NoLeaf)?;
    if leaves.next().is_some() {
        return Err(CertError::DisjunctChain);
    }
    let mut order = Vec::with_capacity(n);
    let mut at = Some(leaf);
    while let Some(i) = at {
        if order.len() == n {
            return Err(CertError::ChainCycle);
        }
        order.push(i);
        at = parent[i];
    }
    let mut slots: Vec<Option<ChainCert>> = certs.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect())
}

/// ESO's `fetchCertChains`: the certificates of `data` ordered leaf to root, as PEM.
pub(crate) fn ordered_chain_pem(data: &[u8]) -> Result<Vec<u8>, CertError> {
    let ordered = order_chain(chain_certs(data)?)?;
    let mut out = Vec::new();
    for cert in &ordered {
        out.extend(gopem::encode("CERTIFICATE", &cert.der));
    }
    Ok(out)
}

/// ESO `filterCertChain(certType, input)`: of the chain in `input`, the `leaf`,
/// the `intermediate`s (up to the root) or the `root` certificate as PEM;
/// empty when the chain has none of that kind or `cert_type` is another word.
pub fn filter_cert_chain(cert_type: &str, input: &[u8]) -> Result<Vec<u8>, CertError> {
    check_size(input)?;
    let ordered = order_chain(chain_certs(input)?)?;
    let pem = |c: &ChainCert| gopem::encode("CERTIFICATE", &c.der);
    Ok(match cert_type {
        "leaf" => match ordered.first() {
            Some(c) if c.aki.is_some() && !c.aki_is_ski(c) => pem(c),
            _ => Vec::new(),
        },
        "intermediate" => ordered
            .iter()
            .skip(1)
            .take_while(|c| !c.is_root())
            .flat_map(pem)
            .collect(),
        "root" => match ordered.last() {
            Some(c) if c.is_root() => pem(c),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    })
}

/// ESO `certSANs(input)`: the subject alternative names of the first PEM
/// block's certificate: DNS names, then IP addresses, then emails, then URIs
/// (grouped by kind as Go's `x509.Certificate` keeps them, not in SAN order).
pub fn cert_sans(input: &[u8]) -> Result<Vec<String>, CertError> {
    check_size(input)?;
    let (block, _) = gopem::decode(trim_junk(input));
    let block = block.ok_or(CertError::NoPemBlock)?;
    let cert = parse_cert(&block.bytes)?;
    let Some((_, SubjectAltName(names))) = cert
        .tbs_certificate()
        .get_extension::<SubjectAltName>()
        .map_err(|e| CertError::Certificate(e.to_string()))?
    else {
        return Ok(Vec::new());
    };
    let (mut dns, mut ips, mut emails, mut uris) = (vec![], vec![], vec![], vec![]);
    for name in names {
        match name {
            GeneralName::DnsName(s) => dns.push(s.to_string()),
            GeneralName::Rfc822Name(s) => emails.push(s.to_string()),
            GeneralName::UniformResourceIdentifier(s) => uris.push(s.to_string()),
            GeneralName::IpAddress(ip) => ips.push(ip_string(ip.as_bytes())?),
            _ => {}
        }
    }
    dns.extend(ips);
    dns.extend(emails);
    dns.extend(uris);
    Ok(dns)
}

/// Go's `net.IP.String` of a SAN address: IPv4 (also IPv4-mapped IPv6) dotted.
fn ip_string(bytes: &[u8]) -> Result<String, CertError> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(std::net::Ipv4Addr::from(v4).to_string());
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        let v6 = std::net::Ipv6Addr::from(v6);
        return Ok(match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        });
    }
    Err(CertError::Certificate(format!(
        "cannot parse IP address of length {}",
        bytes.len()
    )))
}

#[cfg(test)]
mod tests;
