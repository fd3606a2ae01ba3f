//! Upstream semantics a client sees beyond the everyday workflow: managedFields, the finalizers a delete
//! leaves for the garbage collector, strict decoding of duplicate fields, OpenAPI v2, table columns of
//! the less common kinds, and the in-flight limits.

mod common;

use common::Server;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn embedded() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(vec!["--data-dir".into(), dir.path().join("data").display().to_string()]);
    (dir, s)
}

fn get_json(s: &Server, args: &[&str]) -> Value {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&s.ok(&a)).unwrap()
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry for {manager} in {}", obj["metadata"]["managedFields"]))
}

#[test]
fn managed_fields_follow_each_manager() {
    let (_d, s) = embedded();
    s.ok(&["create", "deployment", "web", "--image=nginx"]);
    s.ok(&["label", "deploy", "web", "tier=front"]);
    s.ok(&["scale", "deploy", "web", "--replicas=3"]);
    let d = get_json(&s, &["deploy", "web"]);
    let create = entry(&d, "kubectl-create");
    assert_eq!(create["operation"], "Update");
    assert_eq!(create["apiVersion"], "apps/v1");
    assert_eq!(create["fieldsType"], "FieldsV1");
    assert!(create["time"].as_str().unwrap().ends_with('Z'));
    let container = &create["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"];
    assert_eq!(container["."], json!({}));
    assert_eq!(container["f:image"], json!({}));
    assert_eq!(create["fieldsV1"]["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
    assert!(create["fieldsV1"]["f:status"].is_null(), "status is not the creator's: {create}");
    assert_eq!(entry(&d, "kubectl-label")["fieldsV1"], json!({"f:metadata": {"f:labels": {"f:tier": {}}}}));
    let scale = d["metadata"]["managedFields"].as_array().unwrap().iter().find(|e| e["subresource"] == "scale");
    let scale = scale.expect("an entry for the scale subresource");
    assert_eq!(scale["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert!(create["fieldsV1"]["f:spec"]["f:replicas"].is_null(), "replicas moved to the scaler: {create}");

    // A field changed by another manager moves to it.
    s.ok(&["set", "image", "deploy/web", "nginx=nginx:2"]);
    let d = get_json(&s, &["deploy", "web"]);
    let container = |m: &str| {
        entry(&d, m)["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"].clone()
    };
    assert_eq!(container("kubectl-set")["f:image"], json!({}));
    assert!(container("kubectl-create")["f:image"].is_null());
    assert_eq!(container("kubectl-create")["f:name"], json!({}));

    // Removing a label removes it from its owner; an owner left with nothing is dropped.
    s.ok(&["label", "deploy", "web", "tier-"]);
    let d = get_json(&s, &["deploy", "web"]);
    assert!(d["metadata"]["managedFields"].as_array().unwrap().iter().all(|e| e["manager"] != "kubectl-label"));

    // A no-op write leaves the entries as they are.
    let before = d["metadata"]["managedFields"].clone();
    s.ok(&["annotate", "deploy", "web", "x=1"]);
    s.ok(&["annotate", "deploy", "web", "x-"]);
    assert_eq!(get_json(&s, &["deploy", "web"])["metadata"]["managedFields"], before);

    // Sending `[{}]` resets them (upstream's way to drop managed fields).
    s.ok(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"metadata":{"managedFields":[{}]}}"#]);
    let d = get_json(&s, &["deploy", "web"]);
    assert!(d["metadata"].get("managedFields").is_none(), "{}", d["metadata"]);

    // Status writes are recorded under the status subresource, spec writes never own status.
    s.ok(&["create", "configmap", "cm", "--from-literal=a=1"]);
    let cm = get_json(&s, &["cm", "cm"]);
    assert_eq!(entry(&cm, "kubectl-create")["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
}

#[test]
fn deletes_leave_the_garbage_collector_its_finalizers() {
    let (_d, s) = embedded();
    for name in ["orphaned", "foreground", "background"] {
        s.ok(&["create", "deployment", name, "--image=nginx"]);
    }
    s.ok(&["delete", "deploy", "orphaned", "--cascade=orphan", "--wait=false"]);
    let d = get_json(&s, &["deploy", "orphaned"]);
    assert_eq!(d["metadata"]["finalizers"], json!(["orphan"]));
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 0);
    s.ok(&["delete", "deploy", "foreground", "--cascade=foreground", "--wait=false"]);
    assert_eq!(get_json(&s, &["deploy", "foreground"])["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    // Asking again with another policy swaps the finalizer.
    s.ok(&["delete", "deploy", "foreground", "--cascade=orphan", "--wait=false"]);
    assert_eq!(get_json(&s, &["deploy", "foreground"])["metadata"]["finalizers"], json!(["orphan"]));
    // kubectl's default (background) deletes at once.
    s.ok(&["delete", "deploy", "background"]);
    assert!(s.fails(&["get", "deploy", "background"]).contains("NotFound"));
    // The collector's part, played here: once the finalizer is removed the object goes.
    s.ok(&["patch", "deploy", "orphaned", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#]);
    assert!(s.fails(&["get", "deploy", "orphaned"]).contains("NotFound"));
    // core/v1 ReplicationControllers orphan by default, as upstream.
    s.ok(&[
        "apply",
        "-f",
        &s.file(
            "rc.yaml",
            "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: rc}\nspec:\n  replicas: 0\n  selector: {app: rc}\n  template:\n    metadata: {labels: {app: rc}}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
        ),
    ]);
    s.ok(&["delete", "--raw", "/api/v1/namespaces/default/replicationcontrollers/rc"]);
    assert_eq!(get_json(&s, &["rc", "rc"])["metadata"]["finalizers"], json!(["orphan"]));
    // A policy upstream does not know is refused and changes nothing.
    let err = s.fails(&[
        "delete",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/foreground?propagationPolicy=Sideways",
    ]);
    assert!(
        err.contains(r#"The DeleteOptions "" is invalid: propagationPolicy: Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan""#),
        "{err}"
    );
    assert_eq!(get_json(&s, &["deploy", "foreground"])["metadata"]["finalizers"], json!(["orphan"]));
}

/// A value of the wrong type is a 400 with Go's decoding message, on create and on patch, and nothing
/// is stored: a stored bool where a string belongs would break every client's decoding of the list
/// and of every watch that carries it.
#[test]
fn wrongly_typed_values_are_rejected_before_storage() {
    let (_d, s) = embedded();
    let f = s.file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: typed}\nspec:\n  containers:\n  - {name: c, image: busybox, command: [true]}\n",
    );
    let err = s.fails(&["apply", "-f", &f]);
    assert!(
        err.contains(r#"Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal bool into Go struct field Container.spec.containers.command of type string"#),
        "{err}"
    );
    assert!(s.fails(&["get", "pod", "typed"]).contains("NotFound"), "nothing stored");
    // Numbers are quantities too, and int-or-string ports take either.
    let f = s.file(
        "ok.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: typed}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {limits: {cpu: 1, memory: 64Mi}}\n    readinessProbe: {httpGet: {port: 8080}}\n    livenessProbe: {httpGet: {port: http}}\n",
    );
    s.ok(&["apply", "-f", &f]);
    let err = s.fails(&["patch", "pod", "typed", "--type=merge", "-p", r#"{"spec":{"activeDeadlineSeconds":"soon"}}"#]);
    assert!(
        err.contains(
            "json: cannot unmarshal string into Go struct field PodSpec.spec.activeDeadlineSeconds of type int64"
        ),
        "{err}"
    );
    assert_eq!(s.ok(&["get", "pod", "typed", "-o", "jsonpath={.spec.activeDeadlineSeconds}"]), "");
}

#[test]
fn duplicate_fields_are_strict_errors_or_warnings() {
    let (_d, s) = embedded();
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup","name":"dup"},"data":{"a":"1","b":"x","a":"2"}}"#;
    let f = s.file("dup.json", body);
    let err = s.fails(&["create", "--raw", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "-f", &f]);
    assert!(
        err.contains(r#"ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"metadata.name\", duplicate field \"data.a\""#)
            || err.contains(r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: duplicate field "metadata.name", duplicate field "data.a""#),
        "{err}"
    );
    assert!(s.fails(&["get", "cm", "dup"]).contains("NotFound"), "nothing stored");
    let out = s
        .kubectl_cmd()
        .args(["create", "--raw", "/api/v1/namespaces/default/configmaps?fieldValidation=Warn", "-f", &f])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"Warning: duplicate field "data.a""#), "{stderr}");
    // The last value wins, as in upstream's decoder.
    assert_eq!(s.ok(&["get", "cm", "dup", "-o", "jsonpath={.data.a}"]), "2");
}

#[test]
fn openapi_v2_and_tables_of_the_less_common_kinds() {
    let (_d, s) = embedded();
    let v2: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2["definitions"]["io.k8s.api.core.v1.Pod"]["properties"]["spec"].is_object());
    assert_eq!(
        v2["definitions"]["io.k8s.api.core.v1.Container"]["properties"]["ports"]["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    assert!(v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["get"].is_object());

    let rows = |args: &[&str]| -> Vec<Vec<String>> {
        s.ok(args)
            .lines()
            .map(|l| l.split("   ").map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
            .collect()
    };
    s.ok(&["create", "priorityclass", "high", "--value=1000", "--description=x"]);
    let t = rows(&["get", "priorityclass", "high"]);
    assert_eq!(t[0], ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]);
    assert_eq!((t[1][0].as_str(), t[1][1].as_str(), t[1][2].as_str()), ("high", "1000", "false"));
    assert_eq!(t[1][4], "PreemptLowerPriority");

    s.ok(&["create", "rolebinding", "rb", "--clusterrole=view", "--user=alice", "--serviceaccount=default:robot"]);
    let t = rows(&["get", "rolebinding", "rb", "-o", "wide"]);
    assert_eq!(t[0], ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]);
    assert_eq!((t[1][0].as_str(), t[1][1].as_str()), ("rb", "ClusterRole/view"));
    assert_eq!((t[1][3].as_str(), t[1][4].as_str()), ("alice", "default/robot"));

    s.ok(&["create", "role", "reader", "--verb=get", "--resource=pods"]);
    let t = rows(&["get", "role", "reader"]);
    assert_eq!(t[0], ["NAME", "CREATED AT"]);
    assert!(t[1][1].ends_with('Z') && t[1][1].contains('T'), "{:?}", t[1]);

    s.ok(&[
        "apply",
        "-f",
        &s.file(
            "sc.yaml",
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: local\n  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: WaitForFirstConsumer\n",
        ),
    ]);
    let t = rows(&["get", "storageclass"]);
    assert_eq!(t[0], ["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"]);
    assert_eq!(
        t[1][..5],
        ["local (default)", "kubernetes.io/no-provisioner", "Delete", "WaitForFirstConsumer", "false"]
    );

    s.ok(&["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *"]);
    let t = rows(&["get", "cronjob", "tick"]);
    assert_eq!(t[0], ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]);
    assert_eq!(t[1][..6], ["tick", "*/5 * * * *", "<none>", "False", "0", "<none>"]);

    s.ok(&["create", "poddisruptionbudget", "pdb", "--selector=app=x", "--min-available=1"]);
    let t = rows(&["get", "pdb", "pdb"]);
    assert_eq!(t[0], ["NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"]);
    assert_eq!(t[1][..4], ["pdb", "1", "N/A", "0"]);
}

/// With one mutating request in flight (a POST whose body has not arrived), the next mutating request
/// gets 429 with `Retry-After`; reads are not held up; once the first ends, writes go through again.
#[test]
fn in_flight_limits_answer_429() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(vec![
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--max-mutating-requests-inflight=1".into(),
    ]);
    let head = "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    let port = s.port;
    let open_slow = move || {
        let mut c = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        c.stdin.as_mut().unwrap().write_all(head.as_bytes()).unwrap();
        c.stdin.as_mut().unwrap().flush().unwrap();
        c
    };
    let mut slow = open_slow();
    let url = format!("https://127.0.0.1:{}/api/v1/namespaces/default/configmaps", s.port);
    let post = || {
        let out = Command::new("curl")
            .args([
                "-sk",
                "--http1.1",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
            ])
            .args(["-d", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"c-"}}"#, &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_lowercase()
    };
    // The slow request holds the only slot once its head has been read.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut headers = post();
    let mut exits = Vec::new();
    while !headers.starts_with("http/1.1 429") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(Some(status)) = slow.try_wait() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(slow.stderr.as_mut().unwrap(), &mut err);
            exits.push(format!("{status}: {err}"));
            slow = open_slow();
        }
        headers = post();
    }
    assert!(headers.starts_with("http/1.1 429"), "{headers} (slow client exits: {exits:?})");
    assert!(headers.contains("retry-after: 1"), "{headers}");
    // Reads have their own limit.
    s.ok(&["get", "cm", "-o", "name"]);
    let _ = slow.kill();
    let _ = slow.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut headers = post();
    while !headers.starts_with("http/1.1 201") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        headers = post();
    }
    assert!(headers.starts_with("http/1.1 201"), "{headers}");
}

#[test]
fn defaults_and_validation_through_kubectl() {
    let (_d, s) = embedded();
    s.ok(&["create", "job", "once", "--image=busybox:1.36", "--", "true"]);
    let j = get_json(&s, &["job", "once"]);
    let uid = j["metadata"]["uid"].as_str().unwrap();
    assert_eq!(j["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}));
    assert_eq!(j["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"], "once");
    assert_eq!(j["metadata"]["labels"]["job-name"], "once");
    for (k, v) in [
        ("backoffLimit", json!(6)),
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("completionMode", json!("NonIndexed")),
    ] {
        assert_eq!(j["spec"][k], v, "{k}");
    }
    let job = |rp: &str| {
        format!("apiVersion: batch/v1\nkind: Job\nmetadata: {{name: bad}}\nspec:\n  template:\n    spec:\n      restartPolicy: {rp}\n      containers: [{{name: c, image: busybox}}]\n")
    };
    let err = s.fails(&["apply", "-f", &s.file("bad-job.yaml", &job("Always"))]);
    assert!(
        err.contains(r#"The Job "bad" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never""#),
        "{err}"
    );
    let err = s.fails(&[
        "apply",
        "-f",
        &s.file(
            "bad-deploy.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  selector: {matchLabels: {a: b}}\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      volumes: [{name: data}]\n      containers: [{name: c, image: busybox, volumeMounts: [{name: nope, mountPath: /d}]}]\n",
        ),
    ]);
    assert!(err.contains(r#"The Deployment "bad" is invalid: "#), "{err}");
    assert!(err.contains(r#"spec.template.spec.containers[0].volumeMounts[0].name: Not found: "nope""#), "{err}");
    assert!(
        err.contains("spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"),
        "{err}"
    );
    // Defaults a client sees on a pod.
    s.ok(&["run", "p", "--image=busybox:1.36", "--port=8080"]);
    let p = get_json(&s, &["pod", "p"]);
    assert_eq!(p["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
    // The service account is the ServiceAccount plugin's to set (off in these tests); the default
    // tolerations and the priority come from DefaultTolerationSeconds and Priority.
    assert_eq!(p["spec"].get("serviceAccountName"), None);
    assert_eq!(
        p["spec"]["tolerations"][0],
        serde_json::json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    );
    assert_eq!(p["spec"]["priority"], 0);
    assert_eq!(p["spec"]["containers"][0]["terminationMessagePolicy"], "File");
    // stringData is write-only: folded into data.
    s.ok(&[
        "apply",
        "-f",
        &s.file("sd.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: sd}\nstringData: {user: admin}\n"),
    ]);
    let sd = get_json(&s, &["secret", "sd"]);
    assert_eq!(sd["data"]["user"], "YWRtaW4=");
    assert!(sd.get("stringData").is_none());
    let err = s.fails(&[
        "apply",
        "-f",
        &s.file("ing.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: bad}\nspec:\n  rules:\n  - http:\n      paths: [{path: /, backend: {service: {name: web, port: {number: 80}}}}]\n"),
    ]);
    assert!(
        err.contains(r#"The Ingress "bad" is invalid: spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"#),
        "{err}"
    );
    s.ok(&["apply", "-f", &s.file("pvc.yaml", "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n")]);
    let err = s.fails(&["patch", "pvc", "data", "--type=merge", "-p", r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#]);
    assert!(err.contains("spec: Forbidden: spec is immutable after creation"), "{err}");
    let err = s.fails(&["create", "cronjob", "c", "--image=busybox", "--schedule=61 * * * *"]);
    assert!(err.contains("spec.schedule: Invalid value: \"61 * * * *\""), "{err}");
}
