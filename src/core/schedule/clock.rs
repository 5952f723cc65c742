//! Time sources for the scheduler: the wall clock (what fire times are compared with) and a monotonic
//! clock (what sleeps run on; on Linux it stops while the machine is suspended). Comparing the two after
//! each wake-up reveals a suspend or a clock step.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

pub type Sleep = Pin<Box<dyn Future<Output = ()>>>;

pub trait Clock {
    /// The wall clock.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time since an arbitrary origin.
    fn monotonic(&self) -> Duration;
    /// Sleeps for `d` of monotonic time.
    fn sleep(&self, d: Duration) -> Sleep;
}

/// The real clocks: `Utc::now()` and tokio's monotonic timer.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A controllable clock for tests. Monotonic time is tokio's, so under a paused runtime
/// (`#[tokio::test(start_paused = true)]`) sleeps complete instantly and deterministically; the wall clock
/// is `start` plus elapsed monotonic time plus any [`TestClock::jump`]s.
#[derive(Debug, Clone)]
pub struct TestClock {
    start: DateTime<Utc>,
    origin: Instant,
    jumped_ms: Arc<AtomicI64>,
}

impl TestClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        TestClock {
            start,
            origin: Instant::now(),
            jumped_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Moves the wall clock without monotonic time passing: a suspend (forward) or a clock step (either way).
    pub fn jump(&self, by: chrono::Duration) {
        self.jumped_ms
            .fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed =
            chrono::Duration::from_std(self.origin.elapsed()).unwrap_or(chrono::Duration::MAX);
        self.start + elapsed + chrono::Duration::milliseconds(self.jumped_ms.load(Ordering::SeqCst))
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}
