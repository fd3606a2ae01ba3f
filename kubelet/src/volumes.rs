//! Pod volumes under `<root-dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`: emptyDir (disk, or
//! tmpfs for `medium: Memory`), configMap, secret, downwardAPI and projected (written with
//! upstream's atomic writer: files live in a `..<timestamp>` directory that `..data` points at, so
//! an update is one symlink swap), hostPath (with its `type` checks) and persistentVolumeClaim bound
//! to a hostPath or local PersistentVolume.

use crate::kubelet::Kubelet;
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Volume,
};
use kube::api::Api;
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced object is missing: the message upstream shows in the `FailedMount` event.
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Api(#[from] kube::Error),
}

pub fn pod_dir(k: &Kubelet, uid: &str) -> PathBuf {
    Path::new(&k.config.root_dir).join("pods").join(uid)
}

fn plugin_of(v: &Volume) -> &'static str {
    if v.empty_dir.is_some() {
        "empty-dir"
    } else if v.config_map.is_some() {
        "configmap"
    } else if v.secret.is_some() {
        "secret"
    } else if v.projected.is_some() {
        "projected"
    } else if v.downward_api.is_some() {
        "downward-api"
    } else if v.host_path.is_some() {
        "host-path"
    } else if v.persistent_volume_claim.is_some() {
        "local-volume"
    } else {
        "unsupported"
    }
}

/// Where a volume's contents are on the host.
pub fn volume_path(k: &Kubelet, pod: &Pod, v: &Volume) -> PathBuf {
    if let Some(h) = &v.host_path {
        return PathBuf::from(&h.path);
    }
    pod_dir(k, pod.metadata.uid.as_deref().unwrap_or(""))
        .join("volumes")
        .join(format!("kubernetes.io~{}", plugin_of(v)))
        .join(&v.name)
}

fn mode_of(item: Option<i32>, default: Option<i32>) -> u32 {
    item.or(default).unwrap_or(0o644) as u32
}

/// Sets up every volume of `pod`; the first failure is returned (the pod waits, `FailedMount`).
/// `resolved_pvs` maps PVC volume names to the host path of their bound PV.
pub async fn setup(k: &Kubelet, pod: &Pod) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut paths = BTreeMap::new();
    for v in pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default() {
        let dir = volume_path(k, pod, &v);
        if let Some(e) = &v.empty_dir {
            if !dir.exists() {
                std::fs::create_dir_all(&dir)?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
                if e.medium.as_deref() == Some("Memory") {
                    let size = e
                        .size_limit
                        .as_ref()
                        .and_then(|q| apimachinery::quantity::value(&q.0))
                        .map(|b| format!(",size={b}"))
                        .unwrap_or_default();
                    mount_tmpfs(&dir, &format!("mode=0777{size}"))?;
                }
            }
        } else if let Some(cm) = &v.config_map {
            let files = config_map_files(k, &ns, &cm.name, cm.items.as_deref(), cm.optional, cm.default_mode).await?;
            write_atomic(&dir, &files)?;
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let files = secret_files(k, &ns, &name, s.items.as_deref(), s.optional, s.default_mode).await?;
            write_atomic(&dir, &files)?;
        } else if let Some(d) = &v.downward_api {
            let files = downward_files(pod, d.items.as_deref().unwrap_or(&[]), d.default_mode)?;
            write_atomic(&dir, &files)?;
        } else if let Some(p) = &v.projected {
            let mut files = BTreeMap::new();
            for src in p.sources.clone().unwrap_or_default() {
                if let Some(cm) = src.config_map {
                    files.extend(
                        config_map_files(k, &ns, &cm.name, cm.items.as_deref(), cm.optional, p.default_mode).await?,
                    );
                }
                if let Some(s) = src.secret {
                    files.extend(secret_files(k, &ns, &s.name, s.items.as_deref(), s.optional, p.default_mode).await?);
                }
                if let Some(d) = src.downward_api {
                    files.extend(downward_files(pod, d.items.as_deref().unwrap_or(&[]), p.default_mode)?);
                }
                if let Some(t) = src.service_account_token {
                    let token = crate::tokens::token_for(k, pod, &t).await?;
                    files.insert(t.path.clone(), (token.into_bytes(), mode_of(None, p.default_mode)));
                }
            }
            write_atomic(&dir, &files)?;
        } else if let Some(h) = &v.host_path {
            check_host_path(&h.path, h.type_.as_deref().unwrap_or(""))?;
        } else if let Some(c) = &v.persistent_volume_claim {
            let pvc = Api::<PersistentVolumeClaim>::namespaced(k.client.clone(), &ns)
                .get_opt(&c.claim_name)
                .await?
                .ok_or_else(|| VolumeError::Missing(format!("persistentvolumeclaim \"{}\" not found", c.claim_name)))?;
            let pv_name = pvc
                .spec
                .and_then(|s| s.volume_name)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| VolumeError::Missing(format!("PVC {ns}/{} has not been bound", c.claim_name)))?;
            let pv = Api::<PersistentVolume>::all(k.client.clone())
                .get_opt(&pv_name)
                .await?
                .ok_or_else(|| VolumeError::Missing(format!("persistentvolume \"{pv_name}\" not found")))?;
            let spec = pv.spec.unwrap_or_default();
            let path = spec.host_path.map(|h| h.path).or(spec.local.map(|l| l.path)).ok_or_else(|| {
                VolumeError::Invalid(format!("persistentvolume \"{pv_name}\" is neither hostPath nor local"))
            })?;
            std::fs::create_dir_all(&path)?;
            paths.insert(v.name.clone(), PathBuf::from(path));
            continue;
        } else {
            return Err(VolumeError::Invalid(format!(
                "volume {:?}: this volume type is not supported by this kubelet",
                v.name
            )));
        }
        paths.insert(v.name.clone(), dir);
    }
    Ok(paths)
}

type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// The files of ConfigMap `name` (its `data` and `binaryData`); none when it is missing and optional.
async fn config_map_files(
    k: &Kubelet,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: Option<i32>,
) -> Result<Files, VolumeError> {
    match Api::<ConfigMap>::namespaced(k.client.clone(), ns).get_opt(name).await? {
        Some(obj) => {
            let mut data: BTreeMap<String, Vec<u8>> =
                obj.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            for (key, b) in obj.binary_data.unwrap_or_default() {
                data.insert(key, b.0);
            }
            project(&data, items, mode, "configmap references non-existent config key")
        }
        None if optional == Some(true) => Ok(Files::new()),
        None => Err(VolumeError::Missing(format!("configmap \"{name}\" not found"))),
    }
}

/// The files of Secret `name`; none when it is missing and optional.
async fn secret_files(
    k: &Kubelet,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: Option<i32>,
) -> Result<Files, VolumeError> {
    match Api::<Secret>::namespaced(k.client.clone(), ns).get_opt(name).await? {
        Some(obj) => {
            let data: BTreeMap<String, Vec<u8>> =
                obj.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            project(&data, items, mode, "secret references non-existent secret key")
        }
        None if optional == Some(true) => Ok(Files::new()),
        None => Err(VolumeError::Missing(format!("secret \"{name}\" not found"))),
    }
}

/// The files of a configMap/secret volume: every key, or only `items` (a missing key is an error
/// unless the volume is optional).
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
    missing: &str,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, VolumeError> {
    let mut out = BTreeMap::new();
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let v = data.get(&it.key).ok_or_else(|| VolumeError::Missing(format!("{missing}: {}", it.key)))?;
                out.insert(it.path.clone(), (v.clone(), mode_of(it.mode, default_mode)));
            }
        }
        _ => {
            for (key, v) in data {
                out.insert(key.clone(), (v.clone(), mode_of(None, default_mode)));
            }
        }
    }
    Ok(out)
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
) -> Result<BTreeMap<String, (Vec<u8>, u32)>, VolumeError> {
    let mut out = BTreeMap::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                p => crate::env::field_value(pod, p).map_err(VolumeError::Invalid)?,
            }
        } else if let Some(r) = &it.resource_field_ref {
            crate::env::resource_value(pod, r.container_name.as_deref().unwrap_or(""), r)
                .map_err(VolumeError::Invalid)?
        } else {
            String::new()
        };
        out.insert(it.path.clone(), (value.into_bytes(), mode_of(it.mode, default_mode)));
    }
    Ok(out)
}

/// `key="value"` lines, sorted, as upstream's downward API formats labels and annotations.
fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.map(|m| m.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")).unwrap_or_default()
}

/// Upstream's atomic writer: when the contents differ from what `..data` shows, they are written into
/// a fresh `..<timestamp>` directory, `..data` is swapped to it with one rename, top-level names are
/// symlinks through `..data`, and the old directory and stale names are removed.
pub fn write_atomic(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> Result<bool, VolumeError> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    if let Ok(cur) = std::fs::read_link(&data_link) {
        let cur_dir = dir.join(&cur);
        if same_contents(&cur_dir, files) {
            return Ok(false);
        }
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ts = format!("..{}_{:09}", now.as_secs(), now.subsec_nanos());
    let ts_dir = dir.join(&ts);
    std::fs::create_dir_all(&ts_dir)?;
    for (path, (bytes, mode)) in files {
        if path.starts_with('/') || path.split('/').any(|p| p == "..") {
            return Err(VolumeError::Invalid(format!("invalid path {path:?}: must be relative and not contain '..'")));
        }
        let f = ts_dir.join(path);
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&f, bytes)?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode & 0o7777))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    symlink(&ts, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    let tops: std::collections::BTreeSet<String> =
        files.keys().map(|p| p.split('/').next().unwrap_or(p).to_string()).collect();
    for top in &tops {
        let l = dir.join(top);
        if std::fs::symlink_metadata(&l).is_err() {
            symlink(Path::new("..data").join(top), &l)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        if old != Path::new(&ts) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(true)
}

fn same_contents(dir: &Path, files: &BTreeMap<String, (Vec<u8>, u32)>) -> bool {
    let mut count = 0;
    fn walk(base: &Path, d: &Path, count: &mut usize) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, count);
            } else {
                *count += 1;
            }
        }
        let _ = base;
    }
    walk(dir, dir, &mut count);
    if count != files.len() {
        return false;
    }
    files.iter().all(|(p, (bytes, mode))| {
        let f = dir.join(p);
        std::fs::read(&f).map(|b| &b == bytes).unwrap_or(false)
            && std::fs::metadata(&f).map(|m| m.permissions().mode() & 0o7777 == *mode & 0o7777).unwrap_or(false)
    })
}

fn mount_tmpfs(dir: &Path, opts: &str) -> std::io::Result<()> {
    let target = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    let data = std::ffi::CString::new(opts).map_err(std::io::Error::other)?;
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let r = unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, data.as_ptr().cast()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts whatever is mounted under the pod's directory, then removes it.
pub fn teardown(k: &Kubelet, uid: &str) {
    let dir = pod_dir(k, uid);
    if !dir.exists() {
        return;
    }
    let prefix = dir.to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<&str> =
        mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|t| t.starts_with(&prefix)).collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        if let Ok(c) = std::ffi::CString::new(t) {
            // SAFETY: a valid path string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(error = %e, dir = %dir.display(), "removing pod directory");
    }
}

/// upstream's hostPath `type` checks.
pub fn check_host_path(path: &str, t: &str) -> Result<(), VolumeError> {
    let p = Path::new(path);
    let meta = std::fs::metadata(p);
    use std::os::unix::fs::FileTypeExt;
    let err = |what: &str| Err(VolumeError::Invalid(format!("hostPath type check failed: {path} is not {what}")));
    match t {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(p)?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
            Ok(())
        }
        "Directory" | "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => err("a directory"),
        },
        "FileOrCreate" if meta.is_err() => {
            if p.parent().is_some_and(|parent| !parent.exists()) {
                return err("a file");
            }
            std::fs::OpenOptions::new().create(true).append(true).open(p)?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644))?;
            Ok(())
        }
        "File" | "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => err("a file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => err("a socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => err("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => err("a block device"),
        },
        other => Err(VolumeError::Invalid(format!("hostPath type {other:?} is not supported"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writer_swaps_data_and_drops_stale_keys() {
        let d = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("a".to_string(), (b"1".to_vec(), 0o644));
        files.insert("b".to_string(), (b"2".to_vec(), 0o600));
        assert!(write_atomic(d.path(), &files).unwrap());
        assert_eq!(std::fs::read_to_string(d.path().join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_link(d.path().join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(std::fs::metadata(d.path().join("b")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!write_atomic(d.path(), &files).unwrap(), "unchanged contents are not rewritten");
        let first = std::fs::read_link(d.path().join("..data")).unwrap();
        files.remove("b");
        files.insert("a".to_string(), (b"updated".to_vec(), 0o644));
        assert!(write_atomic(d.path(), &files).unwrap());
        assert_eq!(std::fs::read_to_string(d.path().join("a")).unwrap(), "updated");
        assert!(std::fs::symlink_metadata(d.path().join("b")).is_err(), "a removed key disappears");
        assert!(!d.path().join(first).exists(), "the old timestamped directory is removed");
    }

    #[test]
    fn host_path_types() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert!(check_host_path(f.to_str().unwrap(), "File").is_ok());
        let e = check_host_path(f.to_str().unwrap(), "Directory").unwrap_err();
        assert_eq!(e.to_string(), format!("hostPath type check failed: {} is not a directory", f.display()));
        let n = d.path().join("new");
        assert!(check_host_path(n.to_str().unwrap(), "DirectoryOrCreate").is_ok());
        assert!(n.is_dir());
        assert!(check_host_path("/nonexistent/x", "Socket").is_err());
    }
}
