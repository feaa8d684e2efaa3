//! The example binaries driven through their command-line contract, as an
//! operator's script would; they must be built first (`cargo build
//! --examples`). The examples themselves need the `tls` feature.

#[cfg(feature = "tls")]
mod formats;
mod scenario;
#[cfg(feature = "tls")]
mod security;
