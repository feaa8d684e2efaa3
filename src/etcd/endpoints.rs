//! The endpoints of an [`EtcdConfig`](super::EtcdConfig), checked before
//! connecting: schemes that fit the TLS settings, `[scheme://]host:port`, and
//! host names that resolve. etcd-client would take a typo such as `htp://` for
//! a host name and fail later with a bare "dns error".

use std::time::Duration;

use crate::error::{Error, Result};

/// Checks that there are endpoints, each `[scheme://]host:port` with a scheme
/// that fits `tls` (whether TLS is configured).
pub(super) fn check(endpoints: &[String], tls: bool) -> Result<()> {
    let config = |reason: String| Err(Error::Config { reason });
    if endpoints.is_empty() {
        return config("no etcd endpoints".into());
    }
    for endpoint in endpoints {
        let scheme = endpoint.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("http") if tls => {
                return config(format!(
                    "etcd endpoint {endpoint:?} is plain http:// but TLS is configured; use https://"
                ))
            }
            Some("https") if !tls && cfg!(feature = "tls") => {
                return config(format!(
                    "etcd endpoint {endpoint:?} is https:// but no CA is configured (ca_file)"
                ))
            }
            Some("https") if !tls => {
                return config(format!(
                    "etcd endpoint {endpoint:?} is https://, which needs the `tls` feature of tonic-etcd"
                ))
            }
            Some("http" | "https") | None if host_port(endpoint).is_some() => {}
            Some("http" | "https") | None => {
                return config(format!(
                    "etcd endpoint {endpoint:?} is not [scheme://]host:port"
                ))
            }
            Some(other) => {
                return config(format!(
                    "etcd endpoint {endpoint:?} has scheme {other:?}; use http:// or https://"
                ))
            }
        }
    }
    Ok(())
}

/// Resolves each endpoint's host, within the connect timeout, so that a
/// typo in a name fails here, naming the endpoint, rather than as a bare
/// "dns error" on the first request. IP addresses need no lookup. One
/// endpoint that resolves is enough: the client balances over those.
pub(super) async fn resolve(endpoints: &[String], timeout: Duration) -> Result<()> {
    let mut first_failure = None;
    for endpoint in endpoints {
        let Some((host, port)) = host_port(endpoint) else {
            continue; // refused by check_endpoints already
        };
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Ok(());
        }
        let lookup = tokio::net::lookup_host((host, port));
        let failure = match tokio::time::timeout(timeout, lookup).await {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(_) => return Ok(()),
                None => std::io::Error::other("no address"),
            },
            Ok(Err(error)) => error,
            Err(_) => std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", timeout),
            ),
        };
        tracing::warn!(%endpoint, error = %failure, "etcd endpoint does not resolve");
        first_failure.get_or_insert((endpoint.clone(), failure));
    }
    match first_failure {
        Some((endpoint, source)) => Err(Error::Resolve { endpoint, source }),
        None => Ok(()),
    }
}

/// The host (IPv6 without brackets) and port of an endpoint
/// `[scheme://]host[:port][/]`. Without a port: 443 for `https://`, else 80,
/// as etcd-client's tonic channel does. `None` if it does not parse or has a
/// path.
pub(super) fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let https = endpoint.starts_with("https://");
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let uri: http::Uri = with_scheme.parse().ok()?;
    let host = uri.host().filter(|host| !host.is_empty())?;
    if !matches!(uri.path(), "" | "/") {
        return None;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    // `http::Uri` takes `host:x` as a host without a port; refuse it.
    let port = match uri.authority()?.as_str().rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => port.parse().ok()?,
        _ if https => 443,
        _ => 80,
    };
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_host_and_port() {
        let split = host_port;
        assert_eq!(
            split("http://127.0.0.1:2379"),
            Some(("127.0.0.1".into(), 2379))
        );
        assert_eq!(split("etcd-0:2380/"), Some(("etcd-0".into(), 2380)));
        assert_eq!(split("https://[::1]:2379"), Some(("::1".into(), 2379)));
        assert_eq!(split("https://etcd"), Some(("etcd".into(), 443)));
        assert_eq!(split("http://etcd:x"), None);
        assert_eq!(split("http://etcd:2379/v3"), None);
        assert_eq!(split("http://:2379"), None);
    }
}
