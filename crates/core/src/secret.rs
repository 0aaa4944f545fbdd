//! Types that hold secret material. Their `Debug` never shows the contents, so
//! a stray `{:?}` in a log line or an error cannot leak a value or a token.

use std::fmt;

use zeroize::Zeroize;

/// A secret value (or a file made from one). Wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretBytes {
    fn from(s: String) -> Self {
        SecretBytes(s.into_bytes())
    }
}

impl From<&str> for SecretBytes {
    fn from(s: &str) -> Self {
        SecretBytes(s.as_bytes().to_vec())
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
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
    fn debug_never_shows_contents() {
        let s = SecretBytes::from("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted 7 bytes>");
        let t = Token::new("eyJhbGciOi.secret".into());
        assert!(!format!("{t:?}").contains("eyJ"));
    }
}
