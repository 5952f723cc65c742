//! Per-endpoint concurrency limit: at most `parallel` requests in flight to one Ollama; the rest wait in
//! baton's queue (FIFO), and the queue can be inspected (`ollama.queue` → `{running, waiting}`), which
//! Ollama itself does not show.
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
struct Gate {
    sem: Arc<Semaphore>,
    parallel: usize,
    waiting: AtomicUsize,
}

/// Endpoints (by URL) and their gates. Clones share the gates.
#[derive(Debug, Clone, Default)]
pub struct Limiter {
    gates: Arc<Mutex<HashMap<String, Arc<Gate>>>>,
}

/// How busy an endpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Queue {
    pub running: usize,
    pub waiting: usize,
}

/// Holds one of the endpoint's slots until dropped.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Limiter {
    fn gate(&self, url: &str, parallel: u32) -> Arc<Gate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(url.to_string())
            .or_insert_with(|| {
                let parallel = parallel.max(1) as usize;
                Arc::new(Gate {
                    sem: Arc::new(Semaphore::new(parallel)),
                    parallel,
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Waits for a free slot on `url` (created with `parallel` slots on first use).
    pub async fn acquire(&self, url: &str, parallel: u32) -> Slot {
        let gate = self.gate(url, parallel);
        if let Ok(permit) = gate.sem.clone().try_acquire_owned() {
            return Slot(permit);
        }
        gate.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&gate.waiting);
        // The semaphore is never closed, so acquiring only fails if it were; wait on a fresh one then.
        match gate.sem.clone().acquire_owned().await {
            Ok(permit) => Slot(permit),
            Err(_) => Slot(
                Arc::new(Semaphore::new(1))
                    .acquire_owned()
                    .await
                    .expect("fresh semaphore"),
            ),
        }
    }

    /// Running and waiting requests for `url` (zeros for an endpoint never used).
    pub fn queue(&self, url: &str) -> Queue {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        match gates.get(url) {
            None => Queue {
                running: 0,
                waiting: 0,
            },
            Some(g) => Queue {
                running: g.parallel - g.sem.available_permits(),
                waiting: g.waiting.load(Ordering::Relaxed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_parallel_run_and_the_rest_wait() {
        let limiter = Limiter::default();
        let url = "http://engine:11434";
        let mut slots = Vec::new();
        for _ in 0..2 {
            slots.push(limiter.acquire(url, 2).await);
        }
        assert_eq!(
            limiter.queue(url),
            Queue {
                running: 2,
                waiting: 0
            }
        );
        let l2 = limiter.clone();
        let waiter = tokio::spawn(async move { l2.acquire(url, 2).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            limiter.queue(url),
            Queue {
                running: 2,
                waiting: 1
            }
        );
        assert!(!waiter.is_finished());
        slots.pop();
        let slot = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            limiter.queue(url),
            Queue {
                running: 2,
                waiting: 0
            }
        );
        drop(slot);
        drop(slots);
        assert_eq!(
            limiter.queue(url),
            Queue {
                running: 0,
                waiting: 0
            }
        );
        assert_eq!(
            limiter.queue("http://other"),
            Queue {
                running: 0,
                waiting: 0
            }
        );
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let limiter = Limiter::default();
        let _slot = limiter.acquire("u", 1).await;
        let r = tokio::time::timeout(Duration::from_millis(10), limiter.acquire("u", 1)).await;
        assert!(r.is_err());
        assert_eq!(
            limiter.queue("u"),
            Queue {
                running: 1,
                waiting: 0
            }
        );
    }
}
