use crate::StoreError;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A store-wide revision; becomes an object's `resourceVersion`.
pub type Revision = i64;

/// One key and its value at some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    pub kv: Option<KeyValue>,
    /// The store revision the read was served at.
    pub revision: Revision,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read at this revision instead of the latest. A paginated list passes the revision of its first page.
    pub revision: Option<Revision>,
    /// At most this many items (0 or `None`: no limit).
    pub limit: Option<i64>,
    /// Start at this key (inclusive) instead of at the prefix. Continue tokens decode to it.
    pub start_key: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the whole list was read at.
    pub revision: Revision,
    /// Whether keys remain after the last item.
    pub more: bool,
    /// How many keys remain after the last item (when `more`).
    pub remaining: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Modified,
    Deleted,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// The key and its new value; for `Deleted`, the value is empty and `mod_revision` is the
    /// revision of the deletion.
    pub kv: KeyValue,
    /// The value before this change (always present for `Modified` and `Deleted`).
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A stream of watch events; an `Err` item ends it.
pub type WatchStream = BoxStream<'static, Result<WatchEvent, StoreError>>;

/// A stream over a channel's receiver.
pub(crate) fn receiver_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
