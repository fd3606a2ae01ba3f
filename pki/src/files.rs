//! Writing files the way kubeadm's PKI needs them: atomically (temp file + rename) and with private keys
//! and kubeconfigs readable by their owner only.

use crate::PkiError;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file to write once every check has passed, so a failed run writes nothing.
#[derive(Debug)]
pub struct PendingWrite {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

pub const CERT_MODE: u32 = 0o644;
pub const SECRET_MODE: u32 = 0o600;

pub fn write_atomic(w: &PendingWrite) -> Result<(), PkiError> {
    let dir = w.path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| PkiError::file(dir, format!("cannot create directory: {e}")))?;
    let name = w.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(w.mode).open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(w.mode))?;
        f.write_all(&w.contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &w.path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PkiError::file(&w.path, format!("cannot write: {e}"))
    })
}

pub fn write_all(writes: &[PendingWrite]) -> Result<(), PkiError> {
    writes.iter().try_for_each(write_atomic)
}
