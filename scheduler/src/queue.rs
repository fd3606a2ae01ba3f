//! The scheduling queue, as upstream's: an active queue ordered by priority then arrival, a backoff
//! queue (a pod that failed waits `podInitialBackoffSeconds`·2^(attempts-1), at most
//! `podMaxBackoffSeconds`), and the unschedulable pods, moved back when a cluster event may have made
//! room (a node added or changed, a pod deleted) or after five minutes regardless.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Default)]
struct State {
    /// (priority, Reverse(sequence), key)
    active: BinaryHeap<(i32, Reverse<u64>, String)>,
    in_active: HashMap<String, i32>,
    backoff: HashMap<String, Instant>,
    unschedulable: HashMap<String, Instant>,
    /// Unschedulable pods that a newly placed pod may help (they failed on pod affinity).
    waiting_for_pods: std::collections::HashSet<String>,
    attempts: HashMap<String, u32>,
    priority: HashMap<String, i32>,
    seq: u64,
}

pub struct SchedulingQueue {
    state: Mutex<State>,
    notify: Notify,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> SchedulingQueue {
        SchedulingQueue { state: Mutex::new(State::default()), notify: Notify::new(), initial_backoff, max_backoff }
    }

    fn push_active(s: &mut State, key: String, priority: i32) {
        if s.in_active.contains_key(&key) {
            return;
        }
        s.seq += 1;
        s.in_active.insert(key.clone(), priority);
        let seq = s.seq;
        s.active.push((priority, Reverse(seq), key));
    }

    /// A new or updated pending pod.
    pub fn add(&self, key: &str, priority: i32) {
        let mut s = self.state.lock().unwrap();
        s.priority.insert(key.to_string(), priority);
        if s.backoff.contains_key(key) || s.in_active.contains_key(key) {
            return;
        }
        s.unschedulable.remove(key);
        Self::push_active(&mut s, key.to_string(), priority);
        drop(s);
        self.notify.notify_one();
    }

    /// The pod is gone or bound: forget it everywhere.
    pub fn delete(&self, key: &str) {
        let mut s = self.state.lock().unwrap();
        s.in_active.remove(key);
        s.backoff.remove(key);
        s.unschedulable.remove(key);
        s.waiting_for_pods.remove(key);
        s.attempts.remove(key);
        s.priority.remove(key);
    }

    fn backoff_for(&self, attempts: u32) -> Duration {
        let d = self.initial_backoff.saturating_mul(1 << attempts.saturating_sub(1).min(20));
        d.min(self.max_backoff)
    }

    /// A scheduling attempt failed: unschedulable pods wait for an event, errors back off.
    pub fn requeue(&self, key: &str, unschedulable: bool) {
        let mut s = self.state.lock().unwrap();
        if !s.priority.contains_key(key) {
            return;
        }
        let n = {
            let a = s.attempts.entry(key.to_string()).or_insert(0);
            *a += 1;
            *a
        };
        if unschedulable {
            s.unschedulable.insert(key.to_string(), Instant::now());
        } else {
            let at = Instant::now() + self.backoff_for(n);
            s.backoff.insert(key.to_string(), at);
        }
    }

    /// An unschedulable pod that failed on pod affinity: a pod placed later may make it fit.
    pub fn wait_for_pods(&self, key: &str) {
        self.state.lock().unwrap().waiting_for_pods.insert(key.to_string());
    }

    /// A pod was placed: the unschedulable pods waiting for one (upstream's queueing hint for
    /// InterPodAffinity on pod adds) go back.
    pub fn move_pod_waiters(&self) {
        let mut s = self.state.lock().unwrap();
        if s.waiting_for_pods.is_empty() {
            return;
        }
        let keys: Vec<String> = s.waiting_for_pods.drain().collect();
        Self::to_backoff(self, &mut s, keys);
        drop(s);
        self.flush();
    }

    fn to_backoff(&self, s: &mut State, keys: Vec<String>) {
        for k in keys {
            if s.unschedulable.remove(&k).is_none() {
                continue;
            }
            let n = s.attempts.get(&k).copied().unwrap_or(0);
            let at = Instant::now() + self.backoff_for(n);
            s.backoff.insert(k, at);
        }
    }

    /// A cluster event that may help: unschedulable pods go to backoff (if still backing off) or active.
    pub fn move_all_unschedulable(&self) {
        let mut s = self.state.lock().unwrap();
        s.waiting_for_pods.clear();
        let keys: Vec<String> = s.unschedulable.drain().map(|(k, _)| k).collect();
        for k in keys {
            let n = s.attempts.get(&k).copied().unwrap_or(0);
            let at = Instant::now() + self.backoff_for(n);
            s.backoff.insert(k, at);
        }
        drop(s);
        self.flush();
    }

    /// Moves due backoff entries and stale unschedulable ones to the active queue.
    pub fn flush(&self) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        let due: Vec<String> = s.backoff.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
        let stale: Vec<String> =
            s.unschedulable.iter().filter(|(_, t)| t.elapsed() >= MAX_UNSCHEDULABLE).map(|(k, _)| k.clone()).collect();
        let moved = !due.is_empty() || !stale.is_empty();
        for k in due.into_iter().chain(stale) {
            s.backoff.remove(&k);
            s.unschedulable.remove(&k);
            let p = s.priority.get(&k).copied().unwrap_or(0);
            Self::push_active(&mut s, k, p);
        }
        drop(s);
        if moved {
            self.notify.notify_one();
        }
    }

    /// The highest-priority pod to schedule next.
    pub async fn pop(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.state.lock().unwrap();
                while let Some((_, _, key)) = s.active.pop() {
                    if s.in_active.remove(&key).is_some() {
                        return key;
                    }
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => self.flush(),
            }
        }
    }

    /// (active, backoff, unschedulable) sizes, for `scheduler_pending_pods`.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let s = self.state.lock().unwrap();
        (s.in_active.len(), s.backoff.len(), s.unschedulable.len())
    }

    pub fn attempts(&self, key: &str) -> u32 {
        self.state.lock().unwrap().attempts.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn priority_then_arrival_then_backoff() {
        let q = SchedulingQueue::new(Duration::from_millis(50), Duration::from_millis(200));
        q.add("a", 0);
        q.add("b", 100);
        q.add("c", 0);
        assert_eq!(q.pop().await, "b");
        assert_eq!(q.pop().await, "a");
        assert_eq!(q.pop().await, "c");
        q.requeue("a", true);
        assert_eq!(q.sizes(), (0, 0, 1));
        q.move_all_unschedulable();
        let started = Instant::now();
        assert_eq!(q.pop().await, "a");
        assert!(started.elapsed() >= Duration::from_millis(40), "backed off first");
        q.delete("a");
        q.requeue("a", false);
        assert_eq!(q.sizes(), (0, 0, 0), "deleted pods are not requeued");
    }
}
