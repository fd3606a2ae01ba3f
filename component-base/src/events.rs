//! Recording `events.k8s.io/v1` Events about objects (kube's `Recorder`, which also folds repeats
//! into a series as client-go's recorder does); a failure to record is logged, never fatal.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

/// Records `events.k8s.io/v1` Events about objects; failures are logged, never fatal.
#[derive(Clone)]
pub struct EventRecorder {
    inner: Recorder,
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
        EventRecorder { inner: Recorder::new(client, Reporter { controller: component.into(), instance }) }
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

    pub async fn normal<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, note: String) {
        self.event(reference(obj), false, reason, reason, note).await
    }

    pub async fn warning<K: Resource<DynamicType = ()>>(&self, obj: &K, reason: &str, note: String) {
        self.event(reference(obj), true, reason, reason, note).await
    }
}
