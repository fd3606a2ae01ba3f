//! The CNI network the kubelet configures for its runtime once the node has a pod CIDR: a `bridge`
//! (`ferrokube0`, gateway, masquerade, hairpin) with `host-local` addresses from `spec.podCIDR`, and
//! `portmap` for `hostPort`s. The runtime adds the loopback interface itself.

use std::path::Path;

pub const CONFLIST: &str = "10-ferrokube-bridge.conflist";

pub fn conflist(cidr: &str) -> serde_json::Value {
    let default_route = if cidr.contains(':') { "::/0" } else { "0.0.0.0/0" };
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "ferrokube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "ferrokube0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": cidr }]],
                    "routes": [{ "dst": default_route }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
}

/// Writes the conflist atomically (the runtime watches the directory).
pub fn write_conflist(dir: &str, cidr: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = Path::new(dir).join(CONFLIST);
    let tmp = Path::new(dir).join(format!(".{CONFLIST}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&conflist(cidr)).expect("json"))?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn conflist_uses_the_pod_cidr() {
        let c = super::conflist("10.244.1.0/24");
        assert_eq!(c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(c["plugins"][1]["type"], "portmap");
    }
}
