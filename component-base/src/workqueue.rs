//! client-go's rate-limited work queue: a key is queued at most once, a key being processed is never
//! handed to a second worker (a re-add while processing is queued again when `done` is called), failed
//! keys come back after the larger of a per-key exponential backoff (5ms doubling to 1000s) and an
//! overall token bucket (10/s, burst 100), and `forget` resets a key's backoff.
//!
//! ```
//! # tokio_test_block_on(async {
//! use component_base::workqueue::WorkQueue;
//! let q = WorkQueue::<String>::new("example");
//! q.add("a".to_string());
//! q.add("a".to_string());
//! assert_eq!(q.len(), 1);
//! let key = q.get().await.unwrap();
//! q.done(&key);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
//! # }
//! ```

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// `workqueue_*` metrics, labelled by queue name, as client-go's workqueue exports them.
pub struct Metrics {
    depth: prometheus::IntGaugeVec,
    adds: prometheus::IntCounterVec,
    retries: prometheus::IntCounterVec,
    queue_duration: prometheus::HistogramVec,
    work_duration: prometheus::HistogramVec,
}

pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let r = crate::metrics::registry();
        let buckets = prometheus::exponential_buckets(1e-8, 10.0, 10).expect("buckets");
        let m = Metrics {
            depth: prometheus::IntGaugeVec::new(
                prometheus::Opts::new("workqueue_depth", "Current depth of workqueue"),
                &["name"],
            )
            .expect("metric"),
            adds: prometheus::IntCounterVec::new(
                prometheus::Opts::new("workqueue_adds_total", "Total number of adds handled by workqueue"),
                &["name"],
            )
            .expect("metric"),
            retries: prometheus::IntCounterVec::new(
                prometheus::Opts::new("workqueue_retries_total", "Total number of retries handled by workqueue"),
                &["name"],
            )
            .expect("metric"),
            queue_duration: prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(
                    "workqueue_queue_duration_seconds",
                    "How long in seconds an item stays in workqueue before being requested.",
                )
                .buckets(buckets.clone()),
                &["name"],
            )
            .expect("metric"),
            work_duration: prometheus::HistogramVec::new(
                prometheus::HistogramOpts::new(
                    "workqueue_work_duration_seconds",
                    "How long in seconds processing an item from workqueue takes.",
                )
                .buckets(buckets),
                &["name"],
            )
            .expect("metric"),
        };
        let _ = r.register(Box::new(m.depth.clone()));
        let _ = r.register(Box::new(m.adds.clone()));
        let _ = r.register(Box::new(m.retries.clone()));
        let _ = r.register(Box::new(m.queue_duration.clone()));
        let _ = r.register(Box::new(m.work_duration.clone()));
        m
    })
}

struct State<K> {
    queue: VecDeque<K>,
    dirty: HashSet<K>,
    processing: HashSet<K>,
    added_at: HashMap<K, Instant>,
    started_at: HashMap<K, Instant>,
    failures: HashMap<K, u32>,
    /// Overall token bucket: tokens and when they were last refilled.
    tokens: f64,
    refilled: Instant,
    shut_down: bool,
}

struct Inner<K> {
    name: String,
    state: Mutex<State<K>>,
    notify: Notify,
}

/// A cloneable handle to one queue.
pub struct WorkQueue<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for WorkQueue<K> {
    fn clone(&self) -> Self {
        WorkQueue { inner: self.inner.clone() }
    }
}

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);
const BUCKET_QPS: f64 = 10.0;
const BUCKET_BURST: f64 = 100.0;

impl<K: Clone + Eq + Hash + Send + 'static> WorkQueue<K> {
    pub fn new(name: &str) -> Self {
        WorkQueue {
            inner: Arc::new(Inner {
                name: name.to_string(),
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    added_at: HashMap::new(),
                    started_at: HashMap::new(),
                    failures: HashMap::new(),
                    tokens: BUCKET_BURST,
                    refilled: Instant::now(),
                    shut_down: false,
                }),
                notify: Notify::new(),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Queues `key` unless it is already waiting; a key being processed is queued again on `done`.
    pub fn add(&self, key: K) {
        let mut s = self.inner.state.lock().unwrap();
        if s.shut_down || s.dirty.contains(&key) {
            return;
        }
        metrics().adds.with_label_values(&[&self.inner.name]).inc();
        s.dirty.insert(key.clone());
        if s.processing.contains(&key) {
            return;
        }
        s.added_at.insert(key.clone(), Instant::now());
        s.queue.push_back(key);
        metrics().depth.with_label_values(&[&self.inner.name]).set(s.queue.len() as i64);
        drop(s);
        self.inner.notify.notify_one();
    }

    /// Queues `key` after `delay`.
    pub fn add_after(&self, key: K, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        let q = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(key);
        });
    }

    /// The delay a failed key waits: the larger of its exponential backoff and the overall bucket's.
    fn when(&self, key: &K) -> Duration {
        let mut s = self.inner.state.lock().unwrap();
        let n = s.failures.entry(key.clone()).or_insert(0);
        let exp = BASE_DELAY.as_secs_f64() * 2f64.powi((*n).min(40) as i32);
        *n += 1;
        let per_item = Duration::from_secs_f64(exp.min(MAX_DELAY.as_secs_f64()));
        let now = Instant::now();
        let elapsed = now.duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + elapsed * BUCKET_QPS).min(BUCKET_BURST);
        s.refilled = now;
        s.tokens -= 1.0;
        let bucket = if s.tokens >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-s.tokens / BUCKET_QPS) };
        per_item.max(bucket)
    }

    /// Queues `key` again after its backoff (a failed sync).
    pub fn add_rate_limited(&self, key: K) {
        metrics().retries.with_label_values(&[&self.inner.name]).inc();
        let delay = self.when(&key);
        self.add_after(key, delay);
    }

    /// Forgets `key`'s failures (a successful sync).
    pub fn forget(&self, key: &K) {
        self.inner.state.lock().unwrap().failures.remove(key);
    }

    pub fn num_requeues(&self, key: &K) -> u32 {
        self.inner.state.lock().unwrap().failures.get(key).copied().unwrap_or(0)
    }

    /// The next key to process, or `None` once the queue is shut down.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.inner.notify.notified();
            {
                let mut s = self.inner.state.lock().unwrap();
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    if let Some(t) = s.added_at.remove(&key) {
                        metrics()
                            .queue_duration
                            .with_label_values(&[&self.inner.name])
                            .observe(t.elapsed().as_secs_f64());
                    }
                    s.started_at.insert(key.clone(), Instant::now());
                    metrics().depth.with_label_values(&[&self.inner.name]).set(s.queue.len() as i64);
                    if !s.queue.is_empty() {
                        self.inner.notify.notify_one();
                    }
                    return Some(key);
                }
                if s.shut_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks `key` processed; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &K) {
        let mut s = self.inner.state.lock().unwrap();
        s.processing.remove(key);
        if let Some(t) = s.started_at.remove(key) {
            metrics().work_duration.with_label_values(&[&self.inner.name]).observe(t.elapsed().as_secs_f64());
        }
        if s.dirty.contains(key) {
            s.added_at.insert(key.clone(), Instant::now());
            s.queue.push_back(key.clone());
            drop(s);
            self.inner.notify.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.inner.state.lock().unwrap().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes every waiting worker with `None`.
    pub fn shut_down(&self) {
        self.inner.state.lock().unwrap().shut_down = true;
        self.inner.notify.notify_waiters();
        self.inner.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_never_processed_twice_at_once() {
        let q = WorkQueue::<&str>::new("t1");
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        let a = q.get().await.unwrap();
        assert_eq!(a, "a");
        q.add("a"); // while processing: held back
        assert_eq!(q.get().await.unwrap(), "b");
        assert!(q.is_empty());
        q.done(&"a");
        assert_eq!(q.get().await.unwrap(), "a");
        q.done(&"a");
        q.done(&"b");
        q.shut_down();
        assert_eq!(q.get().await, None);
    }

    #[tokio::test]
    async fn failures_back_off_exponentially_and_forget_resets() {
        let q = WorkQueue::<&str>::new("t2");
        let delays: Vec<Duration> = (0..5).map(|_| q.when(&"x")).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80].iter().map(|ms| Duration::from_millis(*ms)).collect::<Vec<_>>());
        assert_eq!(q.num_requeues(&"x"), 5);
        q.forget(&"x");
        assert_eq!(q.when(&"x"), Duration::from_millis(5));
        for _ in 0..60 {
            q.when(&"y");
        }
        assert_eq!(q.when(&"y"), MAX_DELAY);
    }

    #[tokio::test]
    async fn the_overall_bucket_limits_bursts() {
        let q = WorkQueue::<u32>::new("t3");
        let mut last = Duration::ZERO;
        for i in 0..120 {
            last = q.when(&i);
        }
        // 100 tokens of burst, then 10/s: the 120th waits about two seconds.
        assert!(last > Duration::from_millis(1500) && last < Duration::from_millis(2500), "{last:?}");
    }

    #[tokio::test]
    async fn rate_limited_adds_come_back() {
        let q = WorkQueue::<&str>::new("t4");
        q.add_rate_limited("k");
        let got = tokio::time::timeout(Duration::from_secs(2), q.get()).await.unwrap();
        assert_eq!(got, Some("k"));
    }
}
