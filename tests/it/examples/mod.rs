//! The example binaries driven through their command-line contract, as an
//! operator's script would; they must be built first (`cargo build
//! --examples`). The helloworld examples need the `tls` feature; the quick
//! starts do not.

#[cfg(feature = "tls")]
mod formats;
#[cfg(feature = "tls")]
mod health;
mod quickstart;
mod scenario;
#[cfg(feature = "tls")]
mod security;
