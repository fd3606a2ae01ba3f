//! What the kubelet reads of its machine: CPUs, memory, filesystem sizes, identity, swap.

use std::collections::BTreeMap;

pub struct Machine {
    pub cpus: i64,
    pub memory_bytes: i64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `MemTotal` (or any key) of /proc/meminfo, in bytes.
pub fn meminfo(key: &str) -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kb: i64 = rest.trim().trim_end_matches(" kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Total and available bytes, and total and free inodes, of the filesystem holding `path`.
pub fn fs_stats(path: &str) -> Option<(u64, u64, u64, u64)> {
    let c = std::ffi::CString::new(path).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let bs = s.f_frsize as u64;
    Some((s.f_blocks as u64 * bs, s.f_bavail as u64 * bs, s.f_files as u64, s.f_favail as u64))
}

/// Whether swap is on (any line after the header of /proc/swaps).
pub fn swap_on() -> bool {
    std::fs::read_to_string("/proc/swaps").map(|s| s.lines().skip(1).any(|l| !l.trim().is_empty())).unwrap_or(false)
}

fn os_image() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

pub fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Machine {
    pub fn read() -> Machine {
        let cpus = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname fills the struct it is given.
        let kernel = if unsafe { libc::uname(&mut uts) } == 0 {
            unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        Machine {
            cpus,
            memory_bytes: meminfo("MemTotal").unwrap_or(0),
            machine_id: read("/etc/machine-id"),
            system_uuid: read("/sys/class/dmi/id/product_uuid"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            kernel_version: kernel,
            os_image: os_image(),
            architecture: arch().into(),
        }
    }
}

/// A quantity map from `name → value` strings.
pub fn quantities(m: &BTreeMap<String, String>) -> BTreeMap<String, i64> {
    m.iter()
        .filter_map(|(k, v)| {
            let n = if k == "cpu" { apimachinery::quantity::milli(v)? } else { apimachinery::quantity::value(v)? };
            Some((k.clone(), n))
        })
        .collect()
}
