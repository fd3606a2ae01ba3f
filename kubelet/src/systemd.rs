//! The `systemd` cgroup driver's pod slices. With this driver systemd owns the cgroup tree, so a
//! pod's cgroup is a slice unit (`kubepods-burstable-pod<uid>.slice`, a child of
//! `kubepods-burstable.slice` by its name) that the kubelet asks systemd for over D-Bus, with the
//! pod's limits as unit properties, as upstream's kubelet does through libcontainer's systemd
//! manager: `StartTransientUnit` (or `SetUnitProperties` when the slice exists), and `StopUnit` when
//! the pod is gone. The runtime (containerd with `SystemdCgroup = true`) puts the containers' scopes
//! in the slice.
//!
//! The bus is the system bus (`DBUS_SYSTEM_BUS_ADDRESS`, else `/run/dbus/system_bus_socket`).

use crate::cgroups::PodLimits;
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, Value};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

pub type Properties = Vec<(&'static str, Value<'static>)>;

/// The parent of a slice by systemd's naming: `a-b-c.slice` is in `a-b.slice`; `a.slice` in `-.slice`.
pub fn parent_slice(name: &str) -> String {
    let stem = name.trim_end_matches(".slice");
    match stem.rsplit_once('-') {
        Some((parent, _)) => format!("{parent}.slice"),
        None => "-.slice".into(),
    }
}

/// The unit properties of a pod slice, as libcontainer's systemd managers set them: accounting on,
/// no default dependencies, and on cgroup v1 `CPUShares`/`MemoryLimit`, on v2 `CPUWeight`
/// (runc's conversion of shares)/`MemoryMax`; the CFS quota as `CPUQuotaPerSecUSec` rounded up to
/// 10ms (systemd keeps whole percents); `TasksMax` for `podPidsLimit`.
pub fn slice_properties(name: &str, l: &PodLimits, v2: bool) -> Properties {
    let mut p: Properties = vec![
        ("Description", Value::from(format!("libcontainer container {name}"))),
        ("Wants", Value::from(vec![parent_slice(name)])),
        ("DefaultDependencies", Value::from(false)),
        ("MemoryAccounting", Value::from(true)),
        ("CPUAccounting", Value::from(true)),
        ("TasksAccounting", Value::from(true)),
    ];
    if v2 {
        p.push(("IOAccounting", Value::from(true)));
        p.push(("CPUWeight", Value::from(1 + ((l.cpu_shares.max(2) - 2) * 9999) / 262142)));
    } else {
        p.push(("BlockIOAccounting", Value::from(true)));
        p.push(("CPUShares", Value::from(l.cpu_shares)));
    }
    if let Some(q) = l.cpu_quota {
        // Per 100ms period → per second, rounded up to whole percents.
        let per_sec = (q as u64 * 10).div_ceil(10_000) * 10_000;
        p.push(("CPUQuotaPerSecUSec", Value::from(per_sec)));
        p.push(("CPUQuotaPeriodUSec", Value::from(100_000u64)));
    }
    if let Some(m) = l.memory {
        p.push((if v2 { "MemoryMax" } else { "MemoryLimit" }, Value::from(m as u64)));
    }
    if let Some(t) = l.pids {
        p.push(("TasksMax", Value::from(t as u64)));
    }
    p
}

pub async fn connect(address: Option<&str>) -> Result<zbus::Connection, String> {
    let r = match address {
        Some(a) => match zbus::connection::Builder::address(a) {
            Ok(b) => b.build().await,
            Err(e) => Err(e),
        },
        None => zbus::Connection::system().await,
    };
    r.map_err(|e| format!("connecting to systemd over D-Bus: {e}"))
}

async fn manager(conn: &zbus::Connection) -> Result<zbus::Proxy<'static>, String> {
    zbus::Proxy::new(conn, DEST, PATH, MANAGER).await.map_err(|e| e.to_string())
}

fn method_error(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        _ => None,
    }
}

/// A unit's `ActiveState` (`active`, `inactive`, ...); None when systemd has not loaded it.
pub async fn active_state(conn: &zbus::Connection, name: &str) -> Result<Option<String>, String> {
    let m = manager(conn).await?;
    let path: OwnedObjectPath = match m.call("GetUnit", &(name,)).await {
        Ok(p) => p,
        Err(e) if method_error(&e) == Some("org.freedesktop.systemd1.NoSuchUnit") => return Ok(None),
        Err(e) => return Err(format!("GetUnit {name}: {e}")),
    };
    let unit = zbus::Proxy::new(conn, DEST, path, "org.freedesktop.systemd1.Unit").await.map_err(|e| e.to_string())?;
    unit.get_property::<String>("ActiveState").await.map(Some).map_err(|e| format!("{name} ActiveState: {e}"))
}

/// Creates slice `name` with `props`, or brings an existing one's properties up to date, and waits
/// (at most 10s) for it to be active.
pub async fn ensure_slice(conn: &zbus::Connection, name: &str, props: Properties) -> Result<(), String> {
    let m = manager(conn).await?;
    let aux: Vec<(&str, Vec<(&str, Value)>)> = Vec::new();
    let started: Result<OwnedObjectPath, zbus::Error> =
        m.call("StartTransientUnit", &(name, "replace", &props, aux)).await;
    match started {
        Ok(_) => {}
        Err(e) if method_error(&e) == Some("org.freedesktop.systemd1.UnitExists") => {
            // Properties a transient unit cannot change afterwards are left out.
            let settable: Properties = props
                .into_iter()
                .filter(|(k, _)| !matches!(*k, "Description" | "Wants" | "DefaultDependencies"))
                .collect();
            let r: Result<(), zbus::Error> = m.call("SetUnitProperties", &(name, true, &settable)).await;
            r.map_err(|e| format!("SetUnitProperties {name}: {e}"))?;
        }
        Err(e) => return Err(format!("StartTransientUnit {name}: {e}")),
    }
    for _ in 0..100 {
        if active_state(conn, name).await?.as_deref() == Some("active") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("slice {name} did not become active"))
}

/// Stops unit `name`; one systemd does not know is already gone.
pub async fn stop_unit(conn: &zbus::Connection, name: &str) -> Result<(), String> {
    let m = manager(conn).await?;
    let r: Result<OwnedObjectPath, zbus::Error> = m.call("StopUnit", &(name, "replace")).await;
    match r {
        Ok(_) => Ok(()),
        Err(e) if method_error(&e) == Some("org.freedesktop.systemd1.NoSuchUnit") => Ok(()),
        Err(e) => Err(format!("StopUnit {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_names_and_properties_as_libcontainer() {
        assert_eq!(parent_slice("kubepods-burstable-pod1_2.slice"), "kubepods-burstable.slice");
        assert_eq!(parent_slice("kubepods-pod1.slice"), "kubepods.slice");
        assert_eq!(parent_slice("kubepods.slice"), "-.slice");
        let l = PodLimits { cpu_shares: 512, cpu_quota: Some(50_500), memory: Some(64 << 20), pids: Some(100) };
        let v1 = slice_properties("kubepods-burstable-podx.slice", &l, false);
        let get = |p: &Properties, k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get(&v1, "CPUShares"), Some(Value::from(512u64)));
        assert_eq!(get(&v1, "CPUQuotaPerSecUSec"), Some(Value::from(510_000u64)), "505ms/s rounds up to 51%");
        assert_eq!(get(&v1, "MemoryLimit"), Some(Value::from(64u64 << 20)));
        assert_eq!(get(&v1, "TasksMax"), Some(Value::from(100u64)));
        assert_eq!(get(&v1, "Wants"), Some(Value::from(vec!["kubepods-burstable.slice".to_string()])));
        let v2 = slice_properties("kubepods-burstable-podx.slice", &l, true);
        assert_eq!(get(&v2, "CPUWeight"), Some(Value::from(20u64)));
        assert_eq!(get(&v2, "MemoryMax"), Some(Value::from(64u64 << 20)));
        assert!(get(&v2, "CPUShares").is_none());
    }

    /// systemd (Debian's 252) booted as PID 1 of new namespaces in a cgroup of its own, with a unit
    /// path holding only a target and the system bus (`e2e/boot-systemd.sh`).
    struct Systemd {
        child: std::process::Child,
        cgroup: String,
        _units: tempfile::TempDir,
    }

    impl Systemd {
        fn boot() -> Systemd {
            let units = tempfile::tempdir().unwrap();
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/boot-systemd.sh");
            let cgroup = format!("ferrokube-systemd-test-{}", std::process::id());
            let child = std::process::Command::new("/bin/sh")
                .arg(script)
                .arg("--new-net")
                .arg(units.path())
                .arg(&cgroup)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            Systemd { child, cgroup, _units: units }
        }

        /// PID 1 of the namespaces, as this machine numbers it.
        fn init_pid(&self) -> Option<u32> {
            let pid = self.child.id();
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        }

        async fn bus(&self) -> zbus::Connection {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(pid) = self.init_pid() {
                    let addr = format!("unix:path=/proc/{pid}/root/run/dbus/system_bus_socket");
                    if let Ok(c) = connect(Some(&addr)).await {
                        if active_state(&c, "ferrokube.target").await.ok().flatten().as_deref() == Some("active") {
                            return c;
                        }
                    }
                }
                assert!(std::time::Instant::now() < deadline, "systemd did not come up with its bus in 30s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }

        /// A file of the pod slice's cgroup as this machine sees it (cgroup v1 controller
        /// hierarchy, or v2).
        fn file(&self, controller: &str, slice_path: &str, name: &str) -> std::path::PathBuf {
            let base = std::path::Path::new("/sys/fs/cgroup");
            if base.join("cgroup.controllers").exists() {
                base.join(&self.cgroup).join(slice_path).join(name)
            } else {
                base.join(controller).join(&self.cgroup).join(slice_path).join(name)
            }
        }
    }

    impl Drop for Systemd {
        fn drop(&mut self) {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/boot-systemd.sh");
            let _ = std::process::Command::new("/bin/sh").arg(script).arg("--stop").arg(&self.cgroup).status();
            let _ = self.child.wait();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pod_slices_with_limits_in_a_real_systemd() {
        let sd = Systemd::boot();
        let bus = sd.bus().await;
        let name = "kubepods-burstable-pod0a1b2c3d_0000_4000_8000_000000000001.slice";
        let path = format!("kubepods.slice/kubepods-burstable.slice/{name}");
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let read = |controller: &str, v1: &str, v2name: &str| {
            let f = sd.file(controller, &path, if v2 { v2name } else { v1 });
            std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())).trim().to_string()
        };
        // requests 250m/32Mi, limits 500m/64Mi, podPidsLimit 100.
        let mut l = PodLimits { cpu_shares: 256, cpu_quota: Some(50_000), memory: Some(64 << 20), pids: Some(100) };
        ensure_slice(&bus, name, slice_properties(name, &l, v2)).await.unwrap();
        assert_eq!(active_state(&bus, "kubepods-burstable.slice").await.unwrap().as_deref(), Some("active"));
        assert_eq!(read("memory", "memory.limit_in_bytes", "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("pids", "pids.max", "pids.max"), "100");
        if v2 {
            assert_eq!(read("cpu", "", "cpu.max"), "50000 100000");
        } else {
            assert_eq!(read("cpu", "cpu.shares", ""), "256");
            assert_eq!(read("cpu", "cpu.cfs_quota_us", ""), "50000");
            assert_eq!(read("cpu", "cpu.cfs_period_us", ""), "100000");
        }
        // A second sync with other limits updates the existing slice.
        l.memory = Some(128 << 20);
        l.pids = Some(200);
        ensure_slice(&bus, name, slice_properties(name, &l, v2)).await.unwrap();
        assert_eq!(read("memory", "memory.limit_in_bytes", "memory.max"), (128u64 << 20).to_string());
        assert_eq!(read("pids", "pids.max", "pids.max"), "200");
        // The pod is gone: its slice stops and systemd removes the cgroup.
        stop_unit(&bus, name).await.unwrap();
        let dir = sd.file("memory", &path, "");
        for _ in 0..50 {
            if !dir.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!dir.exists(), "{} is still there", dir.display());
        stop_unit(&bus, name).await.expect("stopping a unit that is gone is fine");
    }
}
