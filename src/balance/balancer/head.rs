//! [`Head`]: the head of a request, kept for another attempt.

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Method, Uri, Version};
use tonic::body::Body;

/// How many headers a [`Head`] keeps without allocating: tonic's unary
/// requests carry two (`te` and `content-type`) plus the caller's metadata.
const INLINE_HEADERS: usize = 4;

/// The head of a request, kept for another attempt: method, URI, version and
/// headers, but not the extensions. tonic's channel hands the request to
/// hyper, which reads no extension of a gRPC request, so the first attempt
/// carries them and later ones go without, rather than every request paying
/// for their copy. A few headers are kept inline, without allocating.
pub(super) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    inline: [Option<(HeaderName, HeaderValue)>; INLINE_HEADERS],
    /// The headers beyond the inline ones, in order.
    more: Vec<(HeaderName, HeaderValue)>,
}

impl Head {
    pub(super) fn of(parts: &Parts) -> Head {
        let mut inline = [const { None }; INLINE_HEADERS];
        let mut more = Vec::new();
        for (index, (name, value)) in parts.headers.iter().enumerate() {
            let header = (name.clone(), value.clone());
            match inline.get_mut(index) {
                Some(slot) => *slot = Some(header),
                None => more.push(header),
            }
        }
        Head {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            inline,
            more,
        }
    }

    /// The same request again, with `body` and no extensions.
    pub(super) fn request(&self, body: Body) -> http::Request<Body> {
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        let headers: &mut HeaderMap = request.headers_mut();
        for (name, value) in self.inline.iter().flatten().chain(&self.more) {
            headers.append(name.clone(), value.clone());
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_makes_the_same_request_again_without_extensions() {
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri("/helloworld.Greeter/SayHello")
            .version(Version::HTTP_2)
            .header("te", "trailers")
            .header("content-type", "application/grpc")
            .header("x-tag", "a")
            .header("x-tag", "b")
            .header("grpc-timeout", "100m")
            .header("x-last", "z")
            .body(())
            .unwrap();
        request.extensions_mut().insert(7u32);
        let (parts, ()) = request.into_parts();
        let head = Head::of(&parts);
        assert_eq!(head.more.len(), 2, "six headers: four inline, two more");
        let again = head.request(Body::empty());
        assert_eq!(again.method(), Method::POST);
        assert_eq!(again.uri(), "/helloworld.Greeter/SayHello");
        assert_eq!(again.version(), Version::HTTP_2);
        let pairs = |headers: &HeaderMap| -> Vec<(String, String)> {
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect()
        };
        assert_eq!(pairs(again.headers()), pairs(&parts.headers));
        assert!(again.extensions().get::<u32>().is_none());
    }
}
