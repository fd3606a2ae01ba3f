//! Kubernetes resource quantities (`500m`, `1Gi`, `2e3`) as numbers, for comparing requests with
//! limits and summing what pods request.

/// A quantity as a number of base units (`250m` → 0.25, `1Gi` → 1073741824).
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// `x` rounded up to an integer, where `x` came from decimal arithmetic in floating point: a value
/// within rounding error of an integer is that integer (`9m` is 9 millicores, though 9 × 0.001 ×
/// 1000 is 9.000000000000002).
pub fn ceil(x: f64) -> i64 {
    let r = x.round();
    if (x - r).abs() <= 1e-9 * x.abs().max(1.0) {
        r as i64
    } else {
        x.ceil() as i64
    }
}

/// Millicores of a CPU quantity, rounded up as upstream's `MilliValue`.
pub fn milli(q: &str) -> Option<i64> {
    parse(q).map(|v| ceil(v * 1000.0))
}

/// The integer value of a quantity, rounded up (bytes, counts).
pub fn value(q: &str) -> Option<i64> {
    parse(q).map(ceil)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(milli("250m"), Some(250));
        // Every whole millicore count survives the trip through floating point.
        for n in 1..5000 {
            assert_eq!(milli(&format!("{n}m")), Some(n), "{n}m");
        }
        assert_eq!(milli("0.1m"), Some(1), "a fraction rounds up");
        assert_eq!(milli("2"), Some(2000));
        assert_eq!(value("1Gi"), Some(1 << 30));
        assert_eq!(value("128974848"), Some(128974848));
        assert_eq!(value("1.5Mi"), Some(1572864));
        assert_eq!(parse("nope"), None);
    }
}
