//! Recording `events.k8s.io/v1` Events about objects (kube's `Recorder`, which also folds repeats
//! into a series as client-go's recorder does); a failure to record is logged, never fatal.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

/// Records `events.k8s.io/v1` Events about objects; failures are logged, never fatal.
/// An event waiting to be written: (regarding, warning, reason, note).
type Queued = (ObjectReference, bool, String, String);

#[derive(Clone)]
pub struct EventRecorder {
    inner: Recorder,
    queue: std::sync::Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<Queued>>>,
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
            inner: Recorder::new(client, Reporter { controller: component.into(), instance }),
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
        if let Err(e) = self.inner.publish(&ev, &regarding).await {
            tracing::debug!(reason, error = %e, "could not record event");
        }
    }

    /// Records in the background, in order: the caller's work is not held up by the API write (the
    /// kubelet emits several events per container start). Past 1000 queued events new ones are
    /// dropped, as client-go's broadcaster drops them when its queue is full.
    pub fn emit<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let tx = self.queue.get_or_init(|| {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Queued>(1000);
            let r = self.clone();
            tokio::spawn(async move {
                while let Some((regarding, warning, reason, note)) = rx.recv().await {
                    r.event(regarding, warning, &reason, &reason, note).await;
                }
            });
            tx
        });
        if tx.try_send((reference(obj), warning, reason.to_string(), note)).is_err() {
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
