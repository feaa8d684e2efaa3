//! The scrape helper itself (`support::scrape`): the text format and chunked
//! bodies, on synthetic input.

use crate::support::scrape::{dechunk, Samples};

#[test]
fn the_text_format_parses_into_samples() {
    let samples = Samples::parse(
        "# HELP x_total Things\n# TYPE x_total counter\n\
         x_total{service=\"a\",endpoint=\"127.0.0.1:1\",code=\"OK\"} 10\n\
         y 1.5\nz_bucket{le=\"+Inf\",q=\"a\\\"b\"} 3\n",
    );
    assert_eq!(samples.value("x_total", &[("code", "OK")]), Some(10.0));
    assert_eq!(samples.value("y", &[]), Some(1.5));
    assert_eq!(
        samples.value("z_bucket", &[("q", "a\"b"), ("le", "+Inf")]),
        Some(3.0)
    );
    assert_eq!(samples.value("x_total", &[("code", "UNAVAILABLE")]), None);
    assert_eq!(
        dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
        "abcde"
    );
}
