//! What both examples share besides the flags: logging and error rendering.

/// Logs of the library on stderr, `warn` and above unless `RUST_LOG` says more;
/// coloured only on a terminal, so that a script or a log file gets plain text.
pub fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// An error and its sources, `outer: inner: root` (the crate's renderer).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    tonic_etcd::ErrorChain(error).to_string()
}
