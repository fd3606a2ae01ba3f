//! A shared informer, as client-go's: one list+watch per resource (kube's `watcher`, which relists on
//! `410 Gone` and backs off on errors), a cache of the objects, and handlers told of every addition,
//! update (with the old object) and deletion. A relist is diffed against the cache, so objects deleted
//! while the watch was down are reported as deleted.

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// One change seen by an informer.
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (or was last, for a deletion).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

type Handler<K> = Arc<dyn Fn(&Change<K>) + Send + Sync>;

/// `namespace/name`, or `name` for cluster-scoped objects (client-go's `MetaNamespaceKeyFunc`).
pub fn key_of<K: Resource>(obj: &K) -> String {
    let m = obj.meta();
    match m.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", m.name.as_deref().unwrap_or("")),
        _ => m.name.clone().unwrap_or_default(),
    }
}

/// Splits a key into (namespace, name).
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

pub struct Informer<K> {
    cache: RwLock<HashMap<String, Arc<K>>>,
    handlers: Mutex<Vec<Handler<K>>>,
    synced_tx: watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    /// Starts watching `api`; handlers added later still see every change after they are added.
    pub fn start(api: Api<K>, config: watcher::Config) -> Arc<Informer<K>> {
        let (synced_tx, _) = watch::channel(false);
        let inf =
            Arc::new(Informer { cache: RwLock::new(HashMap::new()), handlers: Mutex::new(Vec::new()), synced_tx });
        let me = inf.clone();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, config).default_backoff().boxed();
            let mut relist: Option<HashMap<String, Arc<K>>> = None;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(Event::Init) => relist = Some(HashMap::new()),
                    Ok(Event::InitApply(o)) => {
                        if let Some(r) = relist.as_mut() {
                            r.insert(key_of(&o), Arc::new(o));
                        }
                    }
                    Ok(Event::InitDone) => {
                        if let Some(fresh) = relist.take() {
                            me.replace(fresh);
                        }
                        me.synced_tx.send_replace(true);
                    }
                    Ok(Event::Apply(o)) => me.apply(Arc::new(o)),
                    Ok(Event::Delete(o)) => me.delete(&key_of(&o), Arc::new(o)),
                    Err(e) => {
                        tracing::warn!(resource = %K::plural(&Default::default()), error = %e, "watch failed, retrying")
                    }
                }
            }
        });
        inf
    }

    /// Adds a handler; as client-go's `AddEventHandler`, it is first told of every object already
    /// cached (as additions), so a handler added after the first list misses nothing. An object that
    /// changes meanwhile may be reported twice.
    pub fn add_handler(&self, h: impl Fn(&Change<K>) + Send + Sync + 'static) {
        let h: Handler<K> = Arc::new(h);
        self.handlers.lock().unwrap().push(h.clone());
        for o in self.list() {
            h(&Change::Added(o));
        }
    }

    fn notify(&self, c: Change<K>) {
        let handlers = self.handlers.lock().unwrap().clone();
        for h in handlers {
            h(&c);
        }
    }

    fn apply(&self, new: Arc<K>) {
        let key = key_of(new.as_ref());
        let old = self.cache.write().unwrap().insert(key, new.clone());
        match old {
            None => self.notify(Change::Added(new)),
            Some(old) => self.notify(Change::Updated { old, new }),
        }
    }

    fn delete(&self, key: &str, last: Arc<K>) {
        self.cache.write().unwrap().remove(key);
        self.notify(Change::Deleted(last));
    }

    fn replace(&self, fresh: HashMap<String, Arc<K>>) {
        let old = std::mem::replace(&mut *self.cache.write().unwrap(), fresh.clone());
        for (k, o) in &old {
            if !fresh.contains_key(k) {
                self.notify(Change::Deleted(o.clone()));
            }
        }
        for (k, n) in fresh {
            match old.get(&k) {
                None => self.notify(Change::Added(n)),
                Some(o) if o.resource_version() != n.resource_version() => {
                    self.notify(Change::Updated { old: o.clone(), new: n })
                }
                Some(_) => {}
            }
        }
    }

    /// Waits for the first complete list.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced_tx.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn has_synced(&self) -> bool {
        *self.synced_tx.borrow()
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.cache.read().unwrap().get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.cache.read().unwrap().values().cloned().collect()
    }

    /// The objects of one namespace.
    pub fn list_namespace(&self, ns: &str) -> Vec<Arc<K>> {
        self.cache.read().unwrap().values().filter(|o| o.meta().namespace.as_deref() == Some(ns)).cloned().collect()
    }

    /// Every cached object, for handlers that must see the present state (a resync).
    pub fn resync(&self) {
        for o in self.list() {
            self.notify(Change::Updated { old: o.clone(), new: o });
        }
    }
}
