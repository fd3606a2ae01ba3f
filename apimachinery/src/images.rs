//! Container image references.

/// upstream's default `imagePullPolicy`: `Always` for an image without a tag or digest or tagged
/// `:latest`, `IfNotPresent` otherwise.
pub fn default_pull_policy(image: &str) -> &'static str {
    let tail = image.rsplit('/').next().unwrap_or(image);
    let latest = !tail.contains(':') && !image.contains('@') || tail.ends_with(":latest");
    if latest {
        "Always"
    } else {
        "IfNotPresent"
    }
}

#[cfg(test)]
mod tests {
    use super::default_pull_policy;

    #[test]
    fn pull_policies() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(default_pull_policy("127.0.0.1:5000/img"), "Always");
        assert_eq!(default_pull_policy("127.0.0.1:5000/img:2"), "IfNotPresent");
        assert_eq!(default_pull_policy("img@sha256:abc"), "IfNotPresent");
    }
}
