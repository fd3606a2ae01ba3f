//! Container log rotation, as upstream's container log manager: every `containerLogMonitorInterval`
//! each running container's log over `containerLogMaxSize` is renamed to `<log>.<YYYYMMDD-hhmmss>`
//! and the runtime reopens the log (`ReopenContainerLog`); older rotated files are gzip-compressed
//! (all but the newest), and past `containerLogMaxFiles` files (the live one included) the oldest
//! are removed.

use crate::kubelet::Kubelet;
use cri::v1 as c;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub async fn run(k: Arc<Kubelet>) {
    loop {
        tokio::time::sleep(k.config.container_log_monitor_interval).await;
        if let Err(e) = rotate_all(&k).await {
            tracing::warn!(error = %e, "container log rotation");
        }
    }
}

async fn rotate_all(k: &Kubelet) -> Result<(), tonic::Status> {
    let mut rt = k.cri.runtime.clone();
    let running = c::ContainerStateValue { state: c::ContainerState::ContainerRunning as i32 };
    let list = rt
        .list_containers(c::ListContainersRequest {
            filter: Some(c::ContainerFilter { state: Some(running), ..Default::default() }),
        })
        .await?
        .into_inner()
        .containers;
    for ctr in list {
        let Ok(st) =
            rt.container_status(c::ContainerStatusRequest { container_id: ctr.id.clone(), verbose: false }).await
        else {
            continue;
        };
        let Some(path) = st.into_inner().status.map(|s| s.log_path).filter(|p| !p.is_empty()) else { continue };
        let path = PathBuf::from(path);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size <= k.config.container_log_max_size {
            continue;
        }
        let max_files = k.config.container_log_max_files;
        let id = ctr.id.clone();
        let rotated = tokio::task::spawn_blocking({
            let path = path.clone();
            move || prepare(&path, max_files)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let rotated = match rotated {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(log = %path.display(), error = %e, "could not rotate a container log");
                continue;
            }
        };
        if let Err(e) = rt.reopen_container_log(c::ReopenContainerLogRequest { container_id: id.clone() }).await {
            // The runtime still writes the renamed file: put it back.
            let _ = std::fs::rename(&rotated, &path);
            tracing::warn!(container = %id, error = %e.message(), "ReopenContainerLog failed; log not rotated");
            continue;
        }
        tracing::debug!(log = %path.display(), to = %rotated.display(), "rotated a container log");
    }
    Ok(())
}

/// The rotated files of `log` (`<log>.<stamp>[.gz]`), oldest first.
fn rotated_files(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else { return Vec::new() };
    let prefix = format!("{name}.");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix) && !n.ends_with(".tmp")))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Makes room and renames the live log: removes the oldest rotated files so that, with the live
/// log and the one about to be made, at most `max_files` remain; compresses the rest; renames
/// `log` to `<log>.<now>`. Returns the new name.
fn prepare(log: &Path, max_files: usize) -> Result<PathBuf, String> {
    let mut old = rotated_files(log);
    let keep = max_files.saturating_sub(2);
    while old.len() > keep {
        let f = old.remove(0);
        std::fs::remove_file(&f).map_err(|e| format!("removing {}: {e}", f.display()))?;
    }
    for f in old.iter().filter(|f| f.extension().is_none_or(|e| e != "gz")) {
        compress(f)?;
    }
    let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
    let to = PathBuf::from(format!("{}.{stamp}", log.display()));
    std::fs::rename(log, &to).map_err(|e| format!("renaming {}: {e}", log.display()))?;
    Ok(to)
}

/// `f` → `f.gz` (written to a temporary file first), then `f` is removed.
fn compress(f: &Path) -> Result<(), String> {
    use std::io::Write;
    let gz = PathBuf::from(format!("{}.gz", f.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", f.display()));
    let data = std::fs::read(f).map_err(|e| format!("reading {}: {e}", f.display()))?;
    let out = std::fs::File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    enc.write_all(&data)
        .and_then(|_| enc.finish())
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("compressing {}: {e}", f.display()))?;
    std::fs::rename(&tmp, &gz).map_err(|e| format!("renaming {}: {e}", tmp.display()))?;
    std::fs::remove_file(f).map_err(|e| format!("removing {}: {e}", f.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_max_files_and_compresses_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        for (i, stamp) in
            ["20260101-000001", "20260101-000002", "20260101-000003", "20260101-000004"].iter().enumerate()
        {
            std::fs::write(dir.path().join(format!("0.log.{stamp}")), format!("old {i}\n")).unwrap();
        }
        std::fs::write(&log, "live\n").unwrap();
        let to = prepare(&log, 4).unwrap();
        assert!(!log.exists());
        assert_eq!(std::fs::read_to_string(&to).unwrap(), "live\n");
        // 4 files in all once the runtime reopens 0.log: two rotated before, compressed, and the new one.
        let names: Vec<String> =
            rotated_files(&log).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(&names[..2], ["0.log.20260101-000003.gz", "0.log.20260101-000004.gz"]);
        let mut text = String::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(std::fs::File::open(dir.path().join("0.log.20260101-000004.gz")).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "old 3\n");
    }
}
