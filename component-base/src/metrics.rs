//! One Prometheus registry per process, rendered at `/metrics` in the text format.

use std::sync::OnceLock;

pub fn registry() -> &'static prometheus::Registry {
    static R: OnceLock<prometheus::Registry> = OnceLock::new();
    R.get_or_init(prometheus::Registry::new)
}

/// The registry in Prometheus' text exposition format.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry().gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}
