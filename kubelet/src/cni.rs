//! The CNI network the kubelet configures for its runtime once the node has a pod CIDR: a `bridge`
//! (`ferrokube0`, gateway, masquerade, hairpin) with `host-local` addresses from `spec.podCIDR`, and
//! `portmap` for `hostPort`s. The runtime adds the loopback interface itself. A second kubelet on the
//! same machine names its own bridge (`--cni-bridge-name`): one bridge holds one gateway address.

use std::path::Path;

pub const CONFLIST: &str = "10-ferrokube-bridge.conflist";

/// The default bridge.
pub const BRIDGE: &str = "ferrokube0";

pub fn conflist(cidr: &str, bridge: &str) -> serde_json::Value {
    let default_route = if cidr.contains(':') { "::/0" } else { "0.0.0.0/0" };
    // The network name keys host-local's address files; another bridge gets its own.
    let name = if bridge == BRIDGE { "ferrokube".to_string() } else { format!("ferrokube-{bridge}") };
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
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
pub fn write_conflist(dir: &str, cidr: &str, bridge: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = Path::new(dir).join(CONFLIST);
    let tmp = Path::new(dir).join(format!(".{CONFLIST}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&conflist(cidr, bridge)).expect("json"))?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn conflist_uses_the_pod_cidr() {
        let c = super::conflist("10.244.1.0/24", super::BRIDGE);
        assert_eq!(c["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!((c["name"].as_str(), c["plugins"][0]["bridge"].as_str()), (Some("ferrokube"), Some("ferrokube0")));
        let other = super::conflist("10.244.2.0/24", "fkb1");
        assert_eq!(
            (other["name"].as_str(), other["plugins"][0]["bridge"].as_str()),
            (Some("ferrokube-fkb1"), Some("fkb1"))
        );
        assert_eq!(c["plugins"][1]["type"], "portmap");
    }
}
