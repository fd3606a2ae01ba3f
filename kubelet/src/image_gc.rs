//! Image garbage collection, as upstream's image manager: every 5 minutes, when the image
//! filesystem is more than `imageGCHighThresholdPercent` full, images no container uses are removed,
//! least recently used first (then first detected), skipping those detected less than
//! `imageMinimumGCAge` ago, until usage is back to `imageGCLowThresholdPercent`; with
//! `imageMaximumGCAge`, an image unused for longer goes whatever the usage. The sandbox image and
//! images the runtime pins stay. The eviction manager also calls `remove_unused` under disk pressure.

use crate::kubelet::Kubelet;
use cri::v1 as c;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The images no container (running or not) uses, less the sandbox image and pinned ones.
async fn unused(k: &Kubelet) -> Option<(Vec<c::Image>, HashSet<String>)> {
    let mut rt = k.cri.runtime.clone();
    let mut images = k.cri.image.clone();
    let ctrs = rt.list_containers(c::ListContainersRequest { filter: None }).await.ok()?.into_inner().containers;
    let used: HashSet<String> =
        ctrs.into_iter().flat_map(|c| [c.image_ref, c.image.map(|i| i.image).unwrap_or_default()]).collect();
    let list = images.list_images(c::ListImagesRequest { filter: None }).await.ok()?.into_inner().images;
    let sandbox = &k.config.pod_infra_container_image;
    let mut in_use = HashSet::new();
    let mut out = Vec::new();
    for img in list {
        let names: Vec<&String> = img.repo_tags.iter().chain(img.repo_digests.iter()).collect();
        if used.contains(&img.id) || names.iter().any(|n| used.contains(*n)) {
            in_use.insert(img.id.clone());
        } else if !img.pinned && !names.contains(&sandbox) {
            out.push(img);
        }
    }
    Some((out, in_use))
}

/// Where the runtime keeps its images (CRI ImageFsInfo), when it says.
pub async fn image_fs_mount(k: &Kubelet) -> Option<String> {
    let mut images = k.cri.image.clone();
    images
        .image_fs_info(c::ImageFsInfoRequest {})
        .await
        .ok()
        .and_then(|r| r.into_inner().image_filesystems.into_iter().next())
        .and_then(|f| f.fs_id)
        .map(|id| id.mountpoint)
        .filter(|m| !m.is_empty())
}

async fn remove(k: &Kubelet, id: &str) -> bool {
    let mut images = k.cri.image.clone();
    let spec = c::ImageSpec { image: id.to_string(), ..Default::default() };
    match images.remove_image(c::RemoveImageRequest { image: Some(spec) }).await {
        Ok(_) => {
            tracing::info!(image = %id, "removed an unused image");
            true
        }
        Err(e) => {
            tracing::warn!(image = %id, error = %e.message(), "could not remove an unused image");
            false
        }
    }
}

/// Removes every unused image (disk pressure); how many went.
pub async fn remove_unused(k: &Kubelet) -> usize {
    let Some((images, _)) = unused(k).await else { return 0 };
    let mut n = 0;
    for img in images {
        n += remove(k, &img.id).await as usize;
    }
    n
}

/// What the collector knows of an image.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: String,
    pub size: u64,
    pub first_seen: Instant,
    pub last_used: Instant,
}

/// The images to remove to free `to_free` bytes: least recently used first, then first detected;
/// none younger than `min_age`.
pub fn choose(mut records: Vec<Record>, to_free: u64, now: Instant, min_age: Duration) -> Vec<String> {
    records.sort_by_key(|r| (r.last_used, r.first_seen));
    let mut freed = 0;
    let mut out = Vec::new();
    for r in records {
        if freed >= to_free {
            break;
        }
        if now.duration_since(r.first_seen) < min_age {
            continue;
        }
        freed += r.size;
        out.push(r.id);
    }
    out
}

/// The images unused for longer than `max_age` (`imageMaximumGCAge`; zero turns it off).
pub fn too_old(records: &[Record], now: Instant, max_age: Duration) -> Vec<String> {
    if max_age.is_zero() {
        return Vec::new();
    }
    records.iter().filter(|r| now.duration_since(r.last_used) > max_age).map(|r| r.id.clone()).collect()
}

pub async fn run(k: Arc<Kubelet>) {
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut last_used: HashMap<String, Instant> = HashMap::new();
    loop {
        let now = Instant::now();
        if let Some((unused_images, in_use)) = unused(&k).await {
            for id in unused_images.iter().map(|i| &i.id).chain(in_use.iter()) {
                first_seen.entry(id.clone()).or_insert(now);
            }
            for id in &in_use {
                last_used.insert(id.clone(), now);
            }
            collect(&k, &unused_images, &first_seen, &last_used, now).await;
        }
        tokio::time::sleep(Duration::from_secs(300)).await;
    }
}

async fn collect(
    k: &Kubelet,
    unused: &[c::Image],
    first_seen: &HashMap<String, Instant>,
    last_used: &HashMap<String, Instant>,
    now: Instant,
) {
    let record = |i: &c::Image| Record {
        id: i.id.clone(),
        size: i.size,
        first_seen: first_seen.get(&i.id).copied().unwrap_or(now),
        last_used: last_used.get(&i.id).copied().unwrap_or_else(|| first_seen.get(&i.id).copied().unwrap_or(now)),
    };
    let old = too_old(&unused.iter().map(record).collect::<Vec<_>>(), now, k.config.image_maximum_gc_age);
    let mut removed = HashSet::new();
    for id in old {
        tracing::info!(image = %id, max_age = ?k.config.image_maximum_gc_age, "removing an image unused for longer than imageMaximumGCAge");
        if remove(k, &id).await {
            removed.insert(id);
        }
    }
    let high = k.config.image_gc_high;
    if high >= 100 {
        return;
    }
    let mount = image_fs_mount(k).await.unwrap_or_else(|| k.config.root_dir.clone());
    let Some((capacity, available, _, _)) = crate::machine::fs_stats(&mount) else { return };
    if capacity == 0 {
        return;
    }
    let used = capacity - available;
    let percent = used * 100 / capacity;
    if percent < high as u64 {
        return;
    }
    let to_free = used - capacity * k.config.image_gc_low as u64 / 100;
    let records: Vec<Record> = unused.iter().filter(|i| !removed.contains(&i.id)).map(record).collect();
    let chosen = choose(records, to_free, now, k.config.image_minimum_gc_age);
    tracing::info!(
        usage_percent = percent,
        high,
        to_free,
        images = chosen.len(),
        "image filesystem over the high threshold; collecting images"
    );
    let mut freed = 0;
    for id in &chosen {
        if remove(k, id).await {
            freed += unused.iter().find(|i| &i.id == id).map(|i| i.size).unwrap_or(0);
        }
    }
    if freed < to_free {
        tracing::warn!(
            "Failed to garbage collect required amount of images. Attempted to free {to_free} bytes, but only found {freed} bytes eligible to free."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_old_enough_images_go_first() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let r = |id: &str, size: u64, seen: u64, used: u64| Record {
            id: id.into(),
            size,
            first_seen: at(seen),
            last_used: at(used),
        };
        let records =
            vec![r("recent", 100, 0, 500), r("stale", 100, 0, 10), r("young", 500, 550, 550), r("older", 100, 0, 100)];
        let now = at(600);
        // 150 bytes: the two least recently used; the young image (first seen 50s ago) is skipped.
        assert_eq!(choose(records.clone(), 150, now, Duration::from_secs(120)), ["stale", "older"]);
        assert_eq!(choose(records.clone(), 10_000, now, Duration::from_secs(120)), ["stale", "older", "recent"]);
        assert_eq!(choose(records.clone(), 0, now, Duration::from_secs(120)), Vec::<String>::new());
        // imageMaximumGCAge: unused for more than 200s (last used at 500 is 100s ago; never used
        // counts from first detection).
        assert_eq!(too_old(&records, now, Duration::from_secs(200)), ["stale", "older"]);
        assert_eq!(too_old(&records, now, Duration::ZERO), Vec::<String>::new());
    }
}
