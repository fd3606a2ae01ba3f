//! kube-apiserver as a process, on both storage backends, driven by the real kubectl v1.35.

mod common;

use apiserver_storage::testing::EtcdServer;
use common::Server;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MANIFESTS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
  labels: {app: web}
data:
  a: "1"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
"#;

fn everyday_workflow(s: &Server) {
    let v = s.ok(&["version"]);
    assert!(v.contains("Server Version: v1.35.0+ferrokube"), "{v}");

    let ns = s.ok(&["get", "ns"]);
    let names: Vec<&str> = ns.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"], "{ns}");
    assert!(ns.lines().next().unwrap().starts_with("NAME ") && ns.contains("Active"), "{ns}");

    let f = s.file("app.yaml", MANIFESTS);
    assert_eq!(s.ok(&["apply", "-f", &f]), "configmap/demo created\ndeployment.apps/web created\n");
    assert_eq!(s.ok(&["apply", "-f", &f]), "configmap/demo unchanged\ndeployment.apps/web unchanged\n");

    let table = s.ok(&["get", "cm", "demo"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"]);
    assert!(table.lines().nth(1).unwrap().starts_with("demo   1 "), "{table}");
    assert_eq!(s.ok(&["get", "cm", "demo", "-o", "jsonpath={.data.a}"]), "1");
    assert_eq!(s.ok(&["get", "cm", "-o", "name"]), "configmap/demo\n");
    let yaml = s.ok(&["get", "deploy", "web", "-o", "yaml"]);
    for want in [
        "generation: 1",
        "revisionHistoryLimit: 10",
        "type: RollingUpdate",
        "imagePullPolicy: IfNotPresent",
        "terminationMessagePath: /dev/termination-log",
        "schedulerName: default-scheduler",
    ] {
        assert!(yaml.contains(want), "defaulted {want}: {yaml}");
    }

    assert_eq!(s.ok(&["label", "cm", "demo", "tier=front"]), "configmap/demo labeled\n");
    assert_eq!(s.ok(&["annotate", "cm", "demo", "note=one"]), "configmap/demo annotated\n");
    let err = s.fails(&["annotate", "cm", "demo", "note=two"]);
    assert!(err.contains("--overwrite is false"), "{err}");
    s.ok(&["annotate", "--overwrite", "cm", "demo", "note=two"]);
    assert_eq!(s.ok(&["get", "cm", "-l", "tier=front", "-o", "name"]), "configmap/demo\n");
    assert_eq!(s.ok(&["get", "cm", "-l", "tier notin (front)", "-o", "name"]), "");
    assert_eq!(s.ok(&["get", "cm", "--field-selector", "metadata.name=demo", "-o", "name"]), "configmap/demo\n");
    assert_eq!(s.ok(&["get", "cm", "demo", "-o", "jsonpath={.metadata.annotations.note}"]), "two");

    // Strategic merge patches merge containers by name: set image, apply and edit keep the rest.
    let two = MANIFESTS.replace(
        "        image: busybox:1.36\n",
        "        image: busybox:1.36\n        ports:\n        - containerPort: 80\n      - name: side\n        image: side:1\n        env:\n        - name: A\n          value: \"1\"\n",
    );
    s.ok(&["apply", "-f", &s.file("two.yaml", &two)]);
    assert_eq!(s.ok(&["set", "image", "deploy/web", "web=busybox:1.37"]), "deployment.apps/web image updated\n");
    let got = |path: &str| s.ok(&["get", "deploy", "web", "-o", &format!("jsonpath={path}")]);
    assert_eq!(got("{.spec.template.spec.containers[*].image}"), "busybox:1.37 side:1");
    assert_eq!(got("{.spec.template.spec.containers[0].ports[0].containerPort}"), "80");
    let edited = two.replace("value: \"1\"", "value: \"2\"");
    s.ok(&["apply", "-f", &s.file("two.yaml", &edited)]);
    assert_eq!(got("{.spec.template.spec.containers[1].env[0].value}"), "2");
    assert_eq!(
        got("{.spec.template.spec.containers[0].image}"),
        "busybox:1.36",
        "apply sets what the file says (three-way merge)"
    );
    assert_eq!(got("{.spec.template.spec.containers[0].ports[0].containerPort}"), "80");
    let editor = s.file("editor.sh", "#!/bin/sh\nsed -i 's/image: side:1/image: side:2/' \"$1\"\n");
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = s.kubectl_cmd().args(["edit", "deploy/web"]).env("KUBE_EDITOR", &editor).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "deployment.apps/web edited\n");
    assert_eq!(got("{.spec.template.spec.containers[*].image}"), "busybox:1.36 side:2");
    assert_eq!(got("{.spec.template.spec.containers[0].ports[0].containerPort}"), "80");

    assert_eq!(s.ok(&["scale", "deploy", "web", "--replicas=3"]), "deployment.apps/web scaled\n");
    assert_eq!(s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.generation}"]), "3 6");
    s.ok(&["patch", "cm", "demo", "--type=merge", "-p", r#"{"data":{"b":"2"}}"#]);
    s.ok(&["patch", "cm", "demo", "--type=json", "-p", r#"[{"op":"remove","path":"/data/a"}]"#]);
    assert_eq!(s.ok(&["get", "cm", "demo", "-o", "jsonpath={.data}"]), r#"{"b":"2"}"#);
    assert_eq!(
        s.ok(&["get", "cm", "demo", "-o", "custom-columns=NAME:.metadata.name,B:.data.b"]),
        "NAME   B\ndemo   2\n"
    );

    for i in 0..5 {
        s.ok(&[
            "apply",
            "--validate=false",
            "-f",
            &s.file(&format!("cm{i}.yaml"), &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: page-{i}\n")),
        ]);
    }
    let paged = s.ok(&["get", "cm", "--chunk-size=2", "-o", "name"]);
    assert_eq!(paged.lines().count(), 6, "{paged}");

    // kubectl's typed create commands send protobuf bodies.
    assert_eq!(s.ok(&["create", "namespace", "made"]), "namespace/made created\n");
    assert_eq!(s.ok(&["create", "configmap", "c1", "-n", "made", "--from-literal=a=b"]), "configmap/c1 created\n");
    assert_eq!(s.ok(&["create", "secret", "generic", "s1", "-n", "made", "--from-literal=x=y"]), "secret/s1 created\n");
    assert_eq!(
        s.ok(&["create", "deployment", "d1", "-n", "made", "--image=nginx:1.27", "--replicas=0", "--port=80"]),
        "deployment.apps/d1 created\n"
    );
    assert_eq!(s.ok(&["create", "service", "nodeport", "n1", "-n", "made", "--tcp=80:8080"]), "service/n1 created\n");
    assert_eq!(s.ok(&["get", "cm", "c1", "-n", "made", "-o", "jsonpath={.data.a}"]), "b");
    assert_eq!(s.ok(&["get", "secret", "s1", "-n", "made", "-o", "jsonpath={.type} {.data.x}"]), "Opaque eQ==");
    let d = s.ok(&["get", "deploy", "d1", "-n", "made", "-o", "yaml"]);
    for want in [
        "replicas: 0\n",
        "- containerPort: 80\n",
        "image: nginx:1.27\n",
        "type: RollingUpdate\n",
        "maxSurge: 25%\n",
        "status: {}\n",
    ] {
        assert!(d.contains(want), "{want} in {d}");
    }
    for unwanted in ["hostPort", "stdin", "creationTimestamp: \"1970", "creationTimestamp: null"] {
        assert!(!d.contains(unwanted), "{unwanted} in {d}");
    }
    let np: u32 =
        s.ok(&["get", "svc", "n1", "-n", "made", "-o", "jsonpath={.spec.ports[0].nodePort}"]).parse().unwrap();
    assert!((30000..=32767).contains(&np));
    assert_eq!(
        s.ok(&["get", "svc", "n1", "-n", "made", "-o", "jsonpath={.spec.ports[0].port} {.spec.ports[0].targetPort}"]),
        "80 8080"
    );
    s.ok(&["delete", "svc", "n1", "-n", "made"]);
    assert!(s.ok(&["get", "ns", "made", "-o", "yaml"]).contains("kubernetes.io/metadata.name: made"));

    // Upstream's columns for pods, services and nodes (server-side printing).
    let objs = s.file(
        "objs.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p1}\nspec:\n  containers: [{name: c, image: busybox:1.36}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {node-role.kubernetes.io/control-plane: \"\"}}\n",
    );
    s.ok(&["apply", "-f", &objs]);
    let words = |out: &str, line: usize| {
        out.lines().nth(line).unwrap_or("").split_whitespace().map(String::from).collect::<Vec<_>>()
    };
    let pods = s.ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(
        words(&pods, 0),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"]
    );
    assert_eq!(words(&pods, 1)[..4], ["p1", "0/1", "Pending", "0"]);
    let svc = s.ok(&["get", "svc", "web"]);
    assert_eq!(words(&svc, 0), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    let row = words(&svc, 1);
    assert_eq!([&row[..2], &row[3..5]].concat(), ["web", "ClusterIP", "<none>", "80/TCP"]);
    assert!(
        row[2].starts_with("10.0.0.") && row[2] != "10.0.0.1",
        "allocated from --service-cluster-ip-range: {}",
        row[2]
    );
    let nodes = s.ok(&["get", "nodes"]);
    assert_eq!(words(&nodes, 0), ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert_eq!(words(&nodes, 1)[..3], ["n1", "Unknown", "control-plane"]);
    s.ok(&["delete", "-f", &objs]);

    // Service networking: the kubernetes Service, its endpoints, ClusterIP and NodePort allocation.
    assert_eq!(
        s.ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].port}"]),
        "10.0.0.1 443"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let eps = s.ok(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}",
            "--ignore-not-found",
        ]);
        if eps == format!("127.0.0.1:{}", s.port) {
            break;
        }
        assert!(Instant::now() < deadline, "kubernetes endpoints: {eps:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        s.ok(&["get", "endpointslices", "kubernetes", "-o", "jsonpath={.endpoints[0].addresses[0]}"]),
        "127.0.0.1"
    );
    let np = s.file("np.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80}, {port: 443}]\n");
    s.ok(&["apply", "-f", &np]);
    let ports: Vec<u32> = s
        .ok(&["get", "svc", "np", "-o", "jsonpath={.spec.ports[*].nodePort}"])
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|p| (30000..=32767).contains(p)) && ports[0] != ports[1], "{ports:?}");
    let np_ip = s.ok(&["get", "svc", "np", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(s.ok(&["get", "ipaddresses", &np_ip, "-o", "jsonpath={.spec.parentRef.name}"]), "np");
    let dup = s.file("dup.yaml", &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: dup}}\nspec:\n  clusterIP: {np_ip}\n  ports: [{{port: 80}}]\n"));
    let err = s.fails(&["apply", "-f", &dup]);
    assert!(err.contains(&format!("failed to allocate IP {np_ip}: provided IP is already allocated")), "{err}");
    let taken = s.file("taken.yaml", &format!("apiVersion: v1\nkind: Service\nmetadata: {{name: taken}}\nspec:\n  type: NodePort\n  ports: [{{port: 80, nodePort: {}}}]\n", ports[0]));
    let err = s.fails(&["apply", "-f", &taken]);
    assert!(err.contains("provided port is already allocated"), "{err}");
    s.ok(&["delete", "svc", "np"]);
    assert!(s.fails(&["get", "ipaddresses", &np_ip]).contains("NotFound"), "the IP was released");
    s.ok(&["apply", "-f", &taken]);
    s.ok(&["delete", "svc", "taken"]);

    // Errors carry upstream's Status.
    let err = s.fails(&["get", "cm", "missing"]);
    assert_eq!(err.trim(), r#"Error from server (NotFound): configmaps "missing" not found"#);
    let bad = s.file("bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n");
    let err = s.fails(&["apply", "-f", &bad]);
    assert!(err.contains(r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#), "{err}");
    let err = s.fails(&["apply", "-n", "nope", "-f", &f]);
    assert!(err.contains(r#"namespaces "nope" not found"#), "{err}");
    let stale = s.ok(&["get", "cm", "demo", "-o", "json"]);
    s.ok(&["label", "cm", "demo", "bump=1"]);
    let err = {
        let p = s.file("stale.json", &stale);
        s.fails(&["replace", "-f", &p])
    };
    assert!(
        err.contains("the object has been modified; please apply your changes to the latest version and try again"),
        "{err}"
    );
    // Unknown fields: refused under kubectl's default strict validation, warned about under --validate=warn.
    let typo = s
        .file("typo.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n  nmae: x\ndatta:\n  a: \"1\"\n");
    let err = s.fails(&["apply", "-f", &typo]);
    assert!(
        err.contains(r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "datta", unknown field "metadata.nmae""#),
        "{err}"
    );
    let out = s.kubectl(&["apply", "--validate=warn", "-f", &typo]);
    assert!(out.status.success());
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(warned.contains(r#"Warning: unknown field "datta""#), "{warned}");
    s.ok(&["delete", "cm", "typo"]);

    // explain reads the OpenAPI v3 documents.
    let explain = s.ok(&["explain", "deployment.spec.strategy"]);
    assert!(explain.contains("FIELD: strategy <DeploymentStrategy>"), "{explain}");
    assert!(explain.contains("rollingUpdate\t<RollingUpdateDeployment>"), "{explain}");
    let resources = s.ok(&["api-resources"]);
    assert!(resources.lines().next().unwrap().starts_with("NAME "), "{resources}");
    assert!(
        resources
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["deployments", "deploy", "apps/v1", "true", "Deployment"]),
        "{resources}"
    );
    assert!(
        resources
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["namespaces", "ns", "v1", "false", "Namespace"]),
        "{resources}"
    );
    assert!(s.ok(&["api-versions"]).lines().any(|l| l == "apps/v1"));
    // Aggregated discovery: kubectl learns every group from /api and /apis alone.
    let cache = s.dir.path().join("discovery-cache");
    let out = s.kubectl(&["api-resources", "-v=6", "--cache-dir", cache.to_str().unwrap()]);
    let log = String::from_utf8_lossy(&out.stderr);
    let gets: Vec<&str> = log.lines().filter(|l| l.contains("\"Response\" verb=\"GET\"")).collect();
    assert_eq!(gets.len(), 2, "only /api and /apis: {gets:#?}");

    // Oversized bodies are refused with 413 and change nothing.
    let big = s.file("big.json", &format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}", "x".repeat(4 << 20)));
    let err = s.fails(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", &big]);
    assert!(err.contains("Request entity too large"), "{err}");
    let huge_object = s.file("huge.json", &format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}", "x".repeat(2 << 20)));
    let err = s.fails(&["create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", &huge_object]);
    assert!(err.contains("etcdserver: request is too large"), "{err}");
    assert!(s.fails(&["get", "cm", "big"]).contains("NotFound"));
    let err = s.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        &s.file("notjson.json", "{not json"),
    ]);
    assert!(err.contains("BadRequest") || err.contains("json parse error"), "{err}");

    // Bodies of the wrong shape are refused with a Status, never crash a handler.
    let raw_svc = "/api/v1/namespaces/default/services";
    for (body, want) in [
        (
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad1"},"spec":"x"}"#,
            "cannot be handled as a Service",
        ),
        (
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad2"},"spec":{"ports":[1]}}"#,
            "cannot unmarshal number into Go struct field ServiceSpec.spec.ports of type v1.ServicePort",
        ),
        (r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad3"}}"#, "spec.ports: Required value"),
        (
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"bad4"},"spec":{"type":"Weird","ports":[{"port":80,"protocol":"XTP"}]}}"#,
            "Unsupported value",
        ),
        (r#"{"apiVersion":"v1","kind":"Service","metadata":"x"}"#, "cannot be handled as a Service"),
        (r#"["not","an","object"]"#, "BadRequest"),
    ] {
        let err = s.fails(&["create", "--raw", raw_svc, "-f", &s.file("hostile.json", body)]);
        assert!(err.contains(want), "{body}: {err}");
    }
    let err = s.fails(&[
        "replace",
        "--raw",
        "/api/v1/namespaces/default",
        "-f",
        &s.file("ns.json", r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"},"spec":"x"}"#),
    ]);
    assert!(err.contains("cannot be handled as a Namespace"), "{err}");
    assert!(s.ok(&["get", "ns", "default", "-o", "name"]).contains("namespace/default"), "the server is still serving");

    let err = s.fails(&["get", "foos"]);
    assert!(err.contains(r#"the server doesn't have a resource type "foos""#), "{err}");

    // Watch sees a change made while it runs.
    let mut watch = s
        .kubectl_cmd()
        .args(["get", "cm", "-w", "--request-timeout=8s", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    s.ok(&[
        "apply",
        "--validate=false",
        "-f",
        &s.file("w.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\n"),
    ]);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.contains("configmap/demo") && seen.contains("configmap/watched"), "{seen}");

    assert_eq!(
        s.ok(&["delete", "-f", &f]),
        "configmap \"demo\" deleted from default namespace\ndeployment.apps \"web\" deleted from default namespace\n"
    );
    assert!(s.fails(&["get", "deploy", "web"]).contains("NotFound"));
    s.ok(&["delete", "cm", "-l", "app!=nothing", "--wait=false"]);
    assert_eq!(s.ok(&["get", "cm", "-o", "name"]), "");

    // events.k8s.io/v1 and core/v1 Events share one storage, each read in its own shape.
    let ev = s.file(
        "ev.yaml",
        "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: web.1}\neventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: ferrokube.io/test\nreportingInstance: t-1\naction: Scaling\nreason: ScalingReplicaSet\ntype: Normal\nnote: Scaled up replica set web-abc to 2\nregarding: {kind: Deployment, namespace: default, name: web, apiVersion: apps/v1}\n",
    );
    assert_eq!(s.ok(&["apply", "-f", &ev]), "event.events.k8s.io/web.1 created\n");
    let events = s.ok(&["get", "events"]);
    assert_eq!(words(&events, 0), ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
    assert!(
        events.contains("Normal   ScalingReplicaSet   deployment/web   Scaled up replica set web-abc to 2"),
        "{events}"
    );
    assert_eq!(
        s.ok(&["get", "events", "web.1", "-o", "jsonpath={.message}|{.involvedObject.name}|{.reportingComponent}"]),
        "Scaled up replica set web-abc to 2|web|ferrokube.io/test"
    );
    assert_eq!(
        s.ok(&["get", "events.v1.events.k8s.io", "web.1", "-o", "jsonpath={.note}|{.regarding.kind}"]),
        "Scaled up replica set web-abc to 2|Deployment"
    );
    s.ok(&["delete", "events", "web.1"]);

    // autoscaling/v1 and v2 are one HPA in two shapes.
    s.ok(&["apply", "-f", &s.file("dep.yaml", MANIFESTS)]);
    assert_eq!(
        s.ok(&["autoscale", "deploy", "web", "--min=1", "--max=5", "--cpu=70%"]),
        "horizontalpodautoscaler.autoscaling/web autoscaled\n"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={.apiVersion} {.spec.metrics[0].resource.target.averageUtilization}"
        ]),
        "autoscaling/v2 70"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "horizontalpodautoscalers.v1.autoscaling",
            "web",
            "-o",
            "jsonpath={.apiVersion} {.spec.targetCPUUtilizationPercentage}"
        ]),
        "autoscaling/v1 70"
    );
    s.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":55}}"#,
    ]);
    assert_eq!(
        s.ok(&[
            "get",
            "hpa",
            "web",
            "-o",
            "jsonpath={.spec.metrics[0].resource.target.averageUtilization} {.spec.maxReplicas}"
        ]),
        "55 5"
    );
    s.ok(&["delete", "hpa", "web"]);
    s.ok(&["delete", "-f", &s.file("dep.yaml", MANIFESTS)]);

    // Metadata-only clients (the garbage collector) get PartialObjectMetadata.
    let curl = |accept: &str, path: &str| -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-sk", "-H", &format!("Accept: {accept}"), &format!("https://127.0.0.1:{}{path}", s.port)])
            .output()
            .expect("curl is installed");
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let list =
        curl("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json", "/api/v1/namespaces");
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert!(list["items"][0]["metadata"]["uid"].is_string() && list["items"][0].get("spec").is_none());
    let one = curl("application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io", "/api/v1/namespaces/default");
    assert_eq!(
        (one["kind"].as_str(), one["metadata"]["name"].as_str()),
        (Some("PartialObjectMetadata"), Some("default"))
    );

    // Prometheus metrics with upstream's names and labels.
    let metrics = s.ok(&["get", "--raw", "/metrics"]);
    for want in [
        r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1"}"#,
        r#"apiserver_request_total{code="201",component="apiserver",dry_run="",group="apps",resource="deployments",scope="namespace",subresource="",verb="POST",version="v1"}"#,
        r#"apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"}"#,
        r#"apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="configmaps",scope="namespace",subresource="",verb="LIST",version="v1",le="0.005"}"#,
        r#"apiserver_storage_objects{resource="namespaces"} 5"#,
        // The test's one, and the server's legacy-token tracking ConfigMap in kube-system.
        r#"apiserver_storage_objects{resource="configmaps"} 2"#,
        r#"etcd_request_duration_seconds_count{operation="create",type="configmaps"}"#,
    ] {
        assert!(metrics.contains(want), "metrics lack {want}");
    }
    let verbose = s.ok(&["get", "--raw", "/readyz?verbose"]);
    assert!(verbose.contains("[+]etcd ok") && verbose.ends_with("readyz check passed\n"), "{verbose}");
    assert_eq!(s.ok(&["get", "--raw", "/livez/ping"]), "ok");
}

#[test]
fn kubectl_workflow_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    // A /29 leaves five Service IPs besides the kubernetes Service's: small enough to fill.
    let mut s = Server::start(vec![
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--service-cluster-ip-range=10.0.0.0/29".into(),
    ]);
    everyday_workflow(&s);
    let svc = |name: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n")
    };
    s.ok(&["apply", "-f", &s.file("keep-svc.yaml", &svc("keep-svc"))]);
    // Everything survives a restart, and resourceVersions keep increasing.
    s.ok(&[
        "apply",
        "--validate=false",
        "-f",
        &s.file("keep.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\ndata:\n  k: v\n"),
    ]);
    let rv: i64 = s.ok(&["get", "cm", "keep", "-o", "jsonpath={.metadata.resourceVersion}"]).parse().unwrap();
    s.restart();
    assert_eq!(s.ok(&["get", "cm", "keep", "-o", "jsonpath={.data.k}"]), "v");
    s.ok(&["label", "cm", "keep", "after=restart"]);
    let rv2: i64 = s.ok(&["get", "cm", "keep", "-o", "jsonpath={.metadata.resourceVersion}"]).parse().unwrap();
    assert!(rv2 > rv);
    // Allocations survive the restart: the remaining four IPs go to four new Services, then the range is full.
    let mut ips = vec!["10.0.0.1".to_string(), s.ok(&["get", "svc", "keep-svc", "-o", "jsonpath={.spec.clusterIP}"])];
    for i in 0..4 {
        let name = format!("fill-{i}");
        s.ok(&["apply", "-f", &s.file(&format!("{name}.yaml"), &svc(&name))]);
        ips.push(s.ok(&["get", "svc", &name, "-o", "jsonpath={.spec.clusterIP}"]));
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "no IP handed out twice: {ips:?}");
    let err = s.fails(&["apply", "-f", &s.file("full.yaml", &svc("full"))]);
    assert!(err.contains("range is full"), "{err}");
}

#[test]
fn kubectl_workflow_on_etcd() {
    let etcd = EtcdServer::start();
    let s = Server::start(vec!["--etcd-servers".into(), etcd.client_url.clone()]);
    everyday_workflow(&s);
    // Objects are where upstream keeps them.
    s.ok(&["apply", "-f", &s.file("d.yaml", MANIFESTS)]);
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.client_url, "get", "--prefix", "/registry/", "--keys-only"])
        .output()
        .unwrap();
    let keys = String::from_utf8_lossy(&out.stdout);
    for k in
        ["/registry/configmaps/default/demo", "/registry/deployments/default/web", "/registry/namespaces/kube-system"]
    {
        assert!(keys.lines().any(|l| l == k), "{k} in {keys}");
    }
}

/// Two API servers on one etcd, as behind a load balancer: each sees the other's writes through its own
/// watch cache, neither hands out an IP the other gave, and the kubernetes endpoints list the live ones.
#[test]
fn two_api_servers_share_one_etcd() {
    let etcd = EtcdServer::start();
    let backend = |addr: &str| {
        vec![
            "--etcd-servers".to_string(),
            etcd.client_url.clone(),
            "--advertise-address".into(),
            addr.to_string(),
            "--service-cluster-ip-range=10.0.0.0/28".into(),
        ]
    };
    let a = Server::start(backend("127.0.0.1"));
    let mut b = Server::start_on("127.0.0.2", backend("127.0.0.2"));
    // A watch through B sees an object created through A.
    let mut watch = b
        .kubectl_cmd()
        .args(["get", "cm", "-w", "--request-timeout=90s", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    a.ok(&["create", "configmap", "from-a", "--from-literal=k=v"]);
    // Read-your-writes through the other server.
    assert_eq!(b.ok(&["get", "cm", "from-a", "-o", "jsonpath={.data.k}"]), "v");
    let svc = |name: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n")
    };
    let mut ips = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { &a } else { &b };
        let name = format!("svc-{i}");
        s.ok(&["apply", "-f", &s.file(&format!("{name}.yaml"), &svc(&name))]);
        ips.push(s.ok(&["get", "svc", &name, "-o", "jsonpath={.spec.clusterIP}"]));
    }
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ips.len(), "no IP given twice across servers: {ips:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let eps = a.ok(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
            "--ignore-not-found",
        ]);
        if eps == "127.0.0.1 127.0.0.2" {
            break;
        }
        assert!(Instant::now() < deadline, "kubernetes endpoints: {eps:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        seen.contains("configmap/from-a"),
        "watch through B saw {seen:?}; kubectl said {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // B dies: its lease expires and the endpoints drop it.
    let _ = b.child.kill();
    let _ = b.child.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let eps = a.ok(&["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[*].ip}"]);
        if eps == "127.0.0.1" {
            break;
        }
        assert!(Instant::now() < deadline, "endpoints still list the dead server: {eps:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
