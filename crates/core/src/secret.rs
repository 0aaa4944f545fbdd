//! Types that hold secret material. Their `Debug` never shows the contents, so
//! a stray `{:?}` in a log line or an error cannot leak a value or a token.

use std::fmt;

use std::sync::Arc;

use zeroize::{Zeroize, Zeroizing};

/// A secret value (or a file made from one). Clones share one buffer, so a
/// class that names one value a thousand times holds it once; the buffer is
/// wiped from memory when the last clone drops.
#[derive(Clone, Default)]
pub struct SecretBytes(Arc<Zeroizing<Vec<u8>>>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Arc::new(Zeroizing::new(bytes)))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_slice()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.expose() == other.expose()
    }
}

impl Eq for SecretBytes {}

impl From<String> for SecretBytes {
    fn from(s: String) -> Self {
        SecretBytes::new(s.into_bytes())
    }
}

impl From<&str> for SecretBytes {
    fn from(s: &str) -> Self {
        SecretBytes::new(s.as_bytes().to_vec())
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// A service-account token (a JWT). Only `expose` gives the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(token: String) -> Self {
        Token(token)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted token>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_buffer() {
        let s = SecretBytes::from("v".repeat(1000));
        let c = s.clone();
        assert!(std::ptr::eq(s.expose().as_ptr(), c.expose().as_ptr()));
        assert_eq!(s, c);
        assert_eq!(SecretBytes::from("a"), SecretBytes::from("a"));
        assert_ne!(SecretBytes::from("a"), SecretBytes::from("b"));
    }

    #[test]
    fn debug_never_shows_contents() {
        let s = SecretBytes::from("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted 7 bytes>");
        let t = Token::new("eyJhbGciOi.secret".into());
        assert!(!format!("{t:?}").contains("eyJ"));
    }
}
