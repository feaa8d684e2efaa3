//! PEM data for TLS: a file read when needed, or bytes in memory. Used by
//! [`EtcdConfig`](crate::EtcdConfig) and by the `tls` module.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// PEM data given as a file to read when needed, or in memory.
#[derive(Clone)]
pub(crate) enum Pem {
    File(PathBuf),
    Inline(Vec<u8>),
}

impl Pem {
    /// The PEM bytes; `what` names the file in errors ("etcd CA certificate").
    pub(crate) fn load(&self, what: &'static str) -> Result<Vec<u8>> {
        let bytes = match self {
            Pem::File(path) => std::fs::read(path).map_err(|source| Error::ReadFile {
                what,
                path: path.clone(),
                source,
            })?,
            Pem::Inline(bytes) => bytes.clone(),
        };
        // tonic would parse it only when connecting, and fail there with a
        // less specific error.
        if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(Error::Config {
                reason: format!("{what} {self:?} holds no PEM block (-----BEGIN ...)"),
            });
        }
        Ok(bytes)
    }
}

/// Shows the path, never the content: the PEM may be a private key.
impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(path) => path.fmt(f),
            Pem::Inline(bytes) => write!(f, "<{} bytes of PEM>", bytes.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_inline_pem() {
        let pem = Pem::Inline(b"-----BEGIN PRIVATE KEY-----\nsecret".to_vec());
        assert_eq!(format!("{pem:?}"), "<34 bytes of PEM>");
        assert!(pem.load("key").is_ok());
    }
}
