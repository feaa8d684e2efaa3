//! gRPC status codes by name, as the `code` label spells them, read from a
//! response's `grpc-status` (headers or trailers) or, without one, from its
//! HTTP status, as gRPC's HTTP/2 mapping says.

use http::{HeaderMap, StatusCode};

/// The names of the gRPC codes 0..=16, in order.
const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// A request that succeeded.
pub(crate) const OK: &str = "OK";
/// A request that failed on its way (no connection, reset): what the
/// transport errors count as.
pub(crate) const UNAVAILABLE: &str = "UNAVAILABLE";
/// A request dropped by its caller before its response ended (its deadline,
/// or a client that gave up).
pub(crate) const CANCELLED: &str = "CANCELLED";

/// The name of the gRPC code `code`; `UNKNOWN` for a number outside 0..=16.
pub(crate) fn name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// The code of a `grpc-status` header or trailer, if `headers` has one:
/// `UNKNOWN` if it is not a number.
pub(crate) fn of_headers(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    Some(
        value
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .map_or("UNKNOWN", name),
    )
}

/// The code of a response that ended without a `grpc-status`: gRPC's mapping
/// of HTTP statuses (a 200 without a status is a broken response: `UNKNOWN`).
pub(crate) fn of_http(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INTERNAL",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "UNIMPLEMENTED",
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(name(0), "OK");
        assert_eq!(name(4), "DEADLINE_EXCEEDED");
        assert_eq!(name(14), "UNAVAILABLE");
        assert_eq!(name(16), "UNAUTHENTICATED");
        assert_eq!(name(17), "UNKNOWN");
        assert_eq!(name(-1), "UNKNOWN");
    }

    #[test]
    fn grpc_status_is_read_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(of_headers(&headers), None);
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        assert_eq!(of_headers(&headers), Some("UNAVAILABLE"));
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert_eq!(of_headers(&headers), Some("OK"));
        headers.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(of_headers(&headers), Some("UNKNOWN"));
    }

    #[test]
    fn http_statuses_map_as_in_the_grpc_spec() {
        assert_eq!(of_http(StatusCode::SERVICE_UNAVAILABLE), "UNAVAILABLE");
        assert_eq!(of_http(StatusCode::NOT_FOUND), "UNIMPLEMENTED");
        assert_eq!(of_http(StatusCode::OK), "UNKNOWN");
    }
}
