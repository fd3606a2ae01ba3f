//! Recording Events about objects: `events.k8s.io/v1` (kube's `Recorder`, which also folds repeats
//! into a series as client-go's recorder does) or, for the kubelet, `v1` Events with repeats counted;
//! a failure to record is logged, never fatal.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

/// Records `events.k8s.io/v1` Events about objects; failures are logged, never fatal.
/// An event waiting to be written: (regarding, warning, reason, action, note).
type Queued = (ObjectReference, bool, String, String, String);

#[derive(Clone)]
pub struct EventRecorder {
    inner: Backend,
    queue: std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<Queued>>>,
}

#[derive(Clone)]
enum Backend {
    /// `events.k8s.io/v1`, as upstream's scheduler and newer controllers write them.
    Events(Recorder),
    /// `v1` Events, as upstream's kubelet writes them (its `system:node` role grants only these).
    Core(std::sync::Arc<CoreRecorder>),
}

/// Writes `v1` Events as client-go's recorder does: `<object>.<hex nanoseconds>` names, `source`
/// and `reporting*` fields, and a repeat of the same event (object, type, reason, message) counted on
/// the existing Event with a patch of `count` and `lastTimestamp`.
struct CoreRecorder {
    client: Client,
    component: String,
    host: String,
    /// Event key (which includes the namespace) -> (Event name, count).
    seen: std::sync::Mutex<std::collections::HashMap<String, (String, i32)>>,
}

/// How many distinct events the core recorder remembers for counting repeats (client-go's LRU holds
/// 4096).
const MAX_REMEMBERED: usize = 4096;

impl CoreRecorder {
    async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource};
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
        let type_ = if warning { "Warning" } else { "Normal" };
        // Events about cluster-scoped objects (Nodes) go to `default`, as client-go's.
        let ns = regarding.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let key = format!(
            "{}/{}/{}/{}/{type_}/{reason}/{note}",
            regarding.kind.as_deref().unwrap_or(""),
            ns,
            regarding.name.as_deref().unwrap_or(""),
            regarding.uid.as_deref().unwrap_or("")
        );
        let now = k8s_openapi::jiff::Timestamp::now();
        let api: kube::Api<CoreEvent> = kube::Api::namespaced(self.client.clone(), &ns);
        let known = self.seen.lock().expect("events").get(&key).cloned();
        if let Some((name, count)) = known {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": Time(now)});
            match api.patch(&name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.seen.lock().expect("events").insert(key, (name, count + 1));
                    return Ok(());
                }
                // Expired (events live an hour) or deleted: write a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let object = regarding.name.as_deref().unwrap_or("");
        let name = format!("{object}.{:x}", now.as_nanosecond());
        let ev = CoreEvent {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: regarding.clone(),
            reason: Some(reason.into()),
            message: Some(note.into()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: None::<MicroTime>,
            source: Some(EventSource { component: Some(self.component.clone()), host: Some(self.host.clone()) }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        };
        api.create(&kube::api::PostParams::default(), &ev).await?;
        let mut seen = self.seen.lock().expect("events");
        if seen.len() >= MAX_REMEMBERED {
            seen.clear();
        }
        seen.insert(key, (name, 1));
        Ok(())
    }
}

pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let m = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        resource_version: m.resource_version.clone(),
        ..Default::default()
    }
}

impl EventRecorder {
    /// Events reported by `component` (`deployment-controller`, `kubelet`), from `instance`.
    pub fn new(client: Client, component: &str, instance: Option<String>) -> EventRecorder {
        EventRecorder {
            inner: Backend::Events(Recorder::new(client, Reporter { controller: component.into(), instance })),
            queue: Default::default(),
        }
    }

    /// A recorder of `v1` Events from `component` on `host`, as upstream's kubelet records them.
    pub fn core_v1(client: Client, component: &str, host: &str) -> EventRecorder {
        EventRecorder {
            inner: Backend::Core(std::sync::Arc::new(CoreRecorder {
                client,
                component: component.into(),
                host: host.into(),
                seen: Default::default(),
            })),
            queue: Default::default(),
        }
    }

    pub async fn event(&self, regarding: ObjectReference, warning: bool, reason: &str, action: &str, note: String) {
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        let result = match &self.inner {
            Backend::Events(r) => r.publish(&ev, &regarding).await,
            Backend::Core(r) => r.publish(&regarding, warning, reason, ev.note.as_deref().unwrap_or("")).await,
        };
        if let Err(e) = result {
            tracing::debug!(reason, error = %e, "could not record event");
        }
    }

    /// Records in the background, in order: the caller's work is not held up by the API write (the
    /// kubelet emits several events per container start). Past 1000 queued events new ones are
    /// dropped, as client-go's broadcaster drops them when its queue is full.
    pub fn emit<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        self.emit_ref(reference(obj), warning, reason, reason, note)
    }

    /// As `emit`, about `regarding`, with the `action` (events.k8s.io) the component took.
    pub fn emit_ref(&self, regarding: ObjectReference, warning: bool, reason: &str, action: &str, note: String) {
        let tx = self.queue.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Queued>(1000);
            let r = self.clone();
            tokio::spawn(async move {
                while let Some((regarding, warning, reason, action, note)) = rx.recv().await {
                    r.event(regarding, warning, &reason, &action, note).await;
                }
            });
            tx
        });
        if tx.try_send((regarding, warning, reason.to_string(), action.to_string(), note)).is_err() {
            tracing::debug!(reason, "event queue full; event dropped");
        }
    }

    pub async fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, note: String) {
        self.event(reference(obj), false, reason, reason, note).await
    }

    pub async fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, note: String) {
        self.event(reference(obj), true, reason, reason, note).await
    }
}
