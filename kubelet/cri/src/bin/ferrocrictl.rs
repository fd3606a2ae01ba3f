//! A small CRI command line for scripts and tests (a subset of crictl's verbs):
//!
//!   ferrocrictl --runtime-endpoint unix:///run/containerd/containerd.sock pods
//!   ferrocrictl ... ps            every container: id, pod uid, name, attempt, state
//!   ferrocrictl ... rmp --all     stops and removes every pod sandbox (and its containers)

use std::time::Duration;

fn usage() -> ! {
    eprintln!("usage: ferrocrictl --runtime-endpoint ENDPOINT (pods | ps | rmp --all | version)");
    std::process::exit(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut endpoint =
        std::env::var("CONTAINER_RUNTIME_ENDPOINT").unwrap_or_else(|_| "unix:///run/containerd/containerd.sock".into());
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runtime-endpoint" | "-r" => endpoint = it.next().unwrap_or_else(|| usage()),
            _ => rest.push(a),
        }
    }
    let rt = match cri::Runtime::connect(&endpoint, &endpoint, Duration::from_secs(120)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    };
    let mut svc = rt.runtime.clone();
    let fail = |e: tonic::Status| -> ! {
        eprintln!("{}: {}", endpoint, e.message());
        std::process::exit(1)
    };
    match rest.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["version"] => {
            let v = svc
                .version(cri::v1::VersionRequest { version: "v1".into() })
                .await
                .unwrap_or_else(|e| fail(e))
                .into_inner();
            println!("{} {} {}", v.runtime_name, v.runtime_version, v.runtime_api_version);
        }
        ["pods"] => {
            let l =
                svc.list_pod_sandbox(cri::v1::ListPodSandboxRequest { filter: None }).await.unwrap_or_else(|e| fail(e));
            for s in l.into_inner().items {
                let m = s.metadata.unwrap_or_default();
                let state = if s.state == cri::v1::PodSandboxState::SandboxReady as i32 { "Ready" } else { "NotReady" };
                println!("{}\t{}\t{}/{}\t{}", s.id, m.uid, m.namespace, m.name, state);
            }
        }
        ["ps"] => {
            let l =
                svc.list_containers(cri::v1::ListContainersRequest { filter: None }).await.unwrap_or_else(|e| fail(e));
            for c in l.into_inner().containers {
                let m = c.metadata.unwrap_or_default();
                let state = cri::v1::ContainerState::try_from(c.state).map(|s| s.as_str_name()).unwrap_or("UNKNOWN");
                let uid = c.labels.get(cri::labels::POD_UID).cloned().unwrap_or_default();
                println!("{}\t{}\t{}\t{}\t{}", c.id, uid, m.name, m.attempt, state);
            }
        }
        ["rmp", "--all"] | ["rmp", "-a"] => {
            let l =
                svc.list_pod_sandbox(cri::v1::ListPodSandboxRequest { filter: None }).await.unwrap_or_else(|e| fail(e));
            for s in l.into_inner().items {
                svc.stop_pod_sandbox(cri::v1::StopPodSandboxRequest { pod_sandbox_id: s.id.clone() })
                    .await
                    .unwrap_or_else(|e| fail(e));
                svc.remove_pod_sandbox(cri::v1::RemovePodSandboxRequest { pod_sandbox_id: s.id.clone() })
                    .await
                    .unwrap_or_else(|e| fail(e));
                println!("Removed sandbox {}", s.id);
            }
        }
        _ => usage(),
    }
}
