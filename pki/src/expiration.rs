//! `ferroadm certs check-expiration`: kubeadm's two tables.

use crate::cert::LoadedCert;
use crate::kubeconfig::Kubeconfig;
use crate::ops::cert_paths;
use crate::spec::{CertSpec, CA_SPECS, KUBECONFIG_SPECS, LEAF_SPECS};
use crate::{PkiConfig, PkiError};
use time::OffsetDateTime;

/// apimachinery's `duration.ShortHumanDuration`: `45s`, `12m`, `30h`, `364d`, `9y`.
pub fn short_human_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds();
    if secs < -1 {
        "<invalid>".into()
    } else if secs < 0 {
        "0s".into()
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs / 60 < 60 {
        format!("{}m", secs / 60)
    } else if secs / 3600 < 48 {
        format!("{}h", secs / 3600)
    } else if secs / 3600 < 24 * 365 {
        format!("{}d", secs / 3600 / 24)
    } else {
        format!("{}y", secs / 3600 / 24 / 365)
    }
}

fn expires(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[month repr:short] [day], [year] [hour]:[minute] UTC");
    t.to_offset(time::UtcOffset::UTC).format(&fmt).unwrap_or_default()
}

/// Go's text/tabwriter as kubeadm configures it (minwidth 10, padding 3): every column but the last is
/// padded to its widest cell plus three spaces.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0).saturating_add(3).max(10)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn ca_external(cfg: &PkiConfig, ca: &CertSpec) -> bool {
    let (crt, key) = cert_paths(cfg, ca);
    crt.exists() && !key.exists()
}

/// The check-expiration report for the cert dir and kubeconfig dir.
pub fn check_expiration(cfg: &PkiConfig) -> Result<String, PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut entries: Vec<(String, Option<OffsetDateTime>, &'static str)> = Vec::new();
    for spec in LEAF_SPECS {
        let (crt, _) = cert_paths(cfg, spec);
        let not_after = if crt.exists() { Some(LoadedCert::load(&crt)?.info()?.not_after) } else { None };
        entries.push((spec.name.to_string(), not_after, spec.ca.expect("leaf CA")));
    }
    for spec in KUBECONFIG_SPECS.iter().filter(|s| s.renewable) {
        let path = cfg.kubeconfig_dir.join(spec.file);
        let not_after = if path.exists() {
            let (cert, _) = Kubeconfig::load(&path)?.client_cert_and_key(&path)?;
            Some(LoadedCert::from_pem(&path, &String::from_utf8_lossy(&cert))?.info()?.not_after)
        } else {
            None
        };
        entries.push((spec.file.to_string(), not_after, "ca"));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    let mut rows = vec![["CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY", "EXTERNALLY MANAGED"]
        .map(String::from)
        .to_vec()];
    for (name, not_after, ca) in entries {
        let external = ca_external(cfg, CertSpec::find(ca).expect("CA spec"));
        match not_after {
            Some(t) => {
                rows.push(vec![name, expires(t), short_human_duration(t - now), ca.to_string(), yes_no(external)])
            }
            None => rows.push(vec![format!("!MISSING! {name}")]),
        }
    }
    let mut out = table(&rows);
    out.push('\n');
    let mut rows =
        vec![["CERTIFICATE AUTHORITY", "EXPIRES", "RESIDUAL TIME", "EXTERNALLY MANAGED"].map(String::from).to_vec()];
    let mut cas: Vec<&CertSpec> = CA_SPECS.iter().collect();
    cas.sort_by_key(|s| s.name);
    for spec in cas {
        let (crt, _) = cert_paths(cfg, spec);
        if crt.exists() {
            let t = LoadedCert::load(&crt)?.info()?.not_after;
            rows.push(vec![
                spec.name.to_string(),
                expires(t),
                short_human_duration(t - now),
                yes_no(ca_external(cfg, spec)),
            ]);
        } else {
            rows.push(vec![format!("!MISSING! {}", spec.name)]);
        }
    }
    out.push_str(&table(&rows));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_like_apimachinery() {
        let d = time::Duration::seconds;
        assert_eq!(short_human_duration(d(-5)), "<invalid>");
        assert_eq!(short_human_duration(d(30)), "30s");
        assert_eq!(short_human_duration(d(90 * 60)), "1h");
        assert_eq!(short_human_duration(d(47 * 3600)), "47h");
        assert_eq!(short_human_duration(d(364 * 86400 + 3600)), "364d");
        assert_eq!(short_human_duration(d(10 * 365 * 86400 - 86400)), "9y");
    }

    #[test]
    fn table_pads_like_tabwriter() {
        let rows =
            vec![vec!["A".to_string(), "BB".into(), "C".into()], vec!["longer-name".into(), "x".into(), "y".into()]];
        assert_eq!(table(&rows), "A             BB        C\nlonger-name   x         y\n");
    }
}
