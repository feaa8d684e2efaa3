//! Reads a Prometheus text endpoint over real HTTP (`support::scrape`):
//! [`scrape`] sends `GET /metrics` and returns the body, [`Samples`] parses
//! the text format into samples a test can look up by name and labels.
//!
//! A plain HTTP/1.1 GET over a `TcpStream` (`Connection: close`, read to the
//! end) rather than an HTTP client crate: one request per scrape on
//! loopback needs neither pooling, redirects, TLS nor chunked uploads, and
//! the tests then depend on no client whose own behaviour they would test.
//! The exporter answers with a plain or chunked body; both are handled.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one scrape may take.
const SCRAPE_WITHIN: Duration = Duration::from_secs(5);

/// `GET http://addr/metrics`: the body of a `200 OK`, or why not.
pub async fn scrape(addr: SocketAddr) -> Result<String, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(SCRAPE_WITHIN, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {SCRAPE_WITHIN:?}"))??;
    let text = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("{addr} answered {status:?}"));
    }
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Ok(if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    })
}

/// The payload of a chunked body.
pub fn dechunk(mut body: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").ok_or("truncated chunk size")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).ok_or("truncated chunk")?);
        body = rest[size..]
            .strip_prefix("\r\n")
            .ok_or("chunk without CRLF")?;
    }
}

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of one scrape.
#[derive(Debug, Clone)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Parses the Prometheus text format (comments skipped; label values may
    /// hold escaped quotes).
    pub fn parse(text: &str) -> Samples {
        let mut samples = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let close = line.rfind('}').expect("labels end with }");
                    (
                        &line[..open],
                        parse_labels(&line[open + 1..close]),
                        &line[close + 1..],
                    )
                }
                None => {
                    let (name, rest) = line.split_once(' ').expect("name and value");
                    (name, BTreeMap::new(), rest)
                }
            };
            let value = rest.split_whitespace().next().expect("a value");
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value,
            });
        }
        Samples(samples)
    }

    /// The samples named `name` that carry every label of `labels`.
    pub fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample named `name` with `labels`; `None` if
    /// there is none; panics if there are several.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.find(name, labels).collect();
        assert!(
            found.len() <= 1,
            "several samples {name} {labels:?}: {found:?}"
        );
        found.first().map(|s| s.value)
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

/// Scrapes `addr` until `check` holds for its samples; panics with the last
/// scrape (or error) after `within`.
pub async fn wait_samples(
    addr: SocketAddr,
    within: Duration,
    what: &str,
    check: impl Fn(&Samples) -> bool,
) -> Samples {
    let deadline = Instant::now() + within;
    loop {
        let last = match scrape(addr).await {
            Ok(text) => {
                let samples = Samples::parse(&text);
                if check(&samples) {
                    return samples;
                }
                text
            }
            Err(error) => error,
        };
        if Instant::now() > deadline {
            panic!("{what}: not within {within:?}; last scrape of {addr}:\n{last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
