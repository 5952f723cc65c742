//! The scheduling decisions, free of I/O and of real time: given the jobs, the last handled fire of each and
//! "now", which runs start, wait or are skipped, and when to wake next. The daemon loop feeds it wall-clock
//! readings; tests feed it any times they like.
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{JobSpec, Missed, Overlap};

/// One run to start (or that was skipped or queued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    pub job: usize,
    /// The scheduled time this run stands for (the latest one when several were missed).
    pub scheduled: DateTime<Utc>,
    /// It starts late: after a suspend, downtime or restart (earlier scheduled times were passed over).
    pub catchup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// `overlap = "skip"` and the previous run is still going.
    Overlap,
    /// `overlap = "queue"` and a run is already waiting.
    QueueFull,
    /// `missed = "skip"` and the scheduled time passed while the machine or daemon was away.
    Missed,
}

impl SkipReason {
    pub fn message(self) -> &'static str {
        match self {
            SkipReason::Overlap => "previous run still running (overlap = \"skip\")",
            SkipReason::QueueFull => {
                "previous run still running and one run already queued (overlap = \"queue\")"
            }
            SkipReason::Missed => "missed while asleep or stopped (missed = \"skip\")",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Start(Fire),
    /// Waits for the running one to finish; [`Plan::finished`] hands it back.
    Queued(Fire),
    Skip(Fire, SkipReason),
}

impl Decision {
    pub fn fire(&self) -> &Fire {
        match self {
            Decision::Start(f) | Decision::Queued(f) | Decision::Skip(f, _) => f,
        }
    }
}

#[derive(Debug)]
struct Slot {
    /// Next scheduled time not yet handled.
    next: Option<DateTime<Utc>>,
    /// When to act on `next`: `next` plus this fire's random jitter.
    due: Option<DateTime<Utc>>,
    running: bool,
    queued: Option<Fire>,
}

/// Per-job scheduling state.
#[derive(Debug)]
pub struct Plan {
    specs: Vec<JobSpec>,
    slots: Vec<Slot>,
    rng: fastrand::Rng,
    late_tolerance: Duration,
}

impl Plan {
    /// `last[i]` is the last handled scheduled time of job `i` (or when it was first registered); `None`
    /// means never seen, so nothing counts as missed before `now`.
    pub fn new(
        specs: Vec<JobSpec>,
        last: &[Option<DateTime<Utc>>],
        now: DateTime<Utc>,
        seed: u64,
        late_tolerance: Duration,
    ) -> Plan {
        let mut plan = Plan {
            slots: Vec::new(),
            specs,
            rng: fastrand::Rng::with_seed(seed),
            late_tolerance,
        };
        for i in 0..plan.specs.len() {
            let from = last.get(i).copied().flatten().unwrap_or(now);
            let next = plan.specs[i].expr.next_after(from, &plan.specs[i].zone);
            let due = next.map(|t| t + plan.jitter(i));
            plan.slots.push(Slot {
                next,
                due,
                running: false,
                queued: None,
            });
        }
        plan
    }

    pub fn specs(&self) -> &[JobSpec] {
        &self.specs
    }

    fn jitter(&mut self, job: usize) -> chrono::Duration {
        let max = self.specs[job].jitter.as_millis() as u64;
        let ms = if max == 0 { 0 } else { self.rng.u64(0..=max) };
        chrono::Duration::milliseconds(ms as i64)
    }

    /// The next scheduled time of `job` (before jitter).
    pub fn next_fire(&self, job: usize) -> Option<DateTime<Utc>> {
        self.slots[job].next
    }

    /// When the earliest job is due (after jitter).
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.slots.iter().filter_map(|s| s.due).min()
    }

    /// The decisions for every job due at `now`, applying the missed and overlap policies. Each scheduled
    /// time is handled exactly once: afterwards the job's next time is strictly after `now`.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        let mut out = Vec::new();
        for job in 0..self.slots.len() {
            let (Some(first), Some(due)) = (self.slots[job].next, self.slots[job].due) else {
                continue;
            };
            if due > now {
                continue;
            }
            let jitter = self.jitter(job);
            let spec = &self.specs[job];
            let latest = spec.expr.last_in(first, now, &spec.zone).unwrap_or(first);
            let tolerance = self.late_tolerance + spec.jitter;
            let late = (now - latest).to_std().unwrap_or_default() > tolerance;
            let fire = Fire {
                job,
                scheduled: latest,
                catchup: late || latest != first,
            };
            let next = spec.expr.next_after(now, &spec.zone);
            let slot = &mut self.slots[job];
            slot.next = next;
            slot.due = next.map(|t| t + jitter);
            let decision = if late && spec.missed == Missed::Skip {
                Decision::Skip(fire, SkipReason::Missed)
            } else if !slot.running {
                slot.running = true;
                Decision::Start(fire)
            } else if spec.overlap == Overlap::Skip {
                Decision::Skip(fire, SkipReason::Overlap)
            } else if slot.queued.is_none() {
                slot.queued = Some(fire.clone());
                Decision::Queued(fire)
            } else {
                Decision::Skip(fire, SkipReason::QueueFull)
            };
            out.push(decision);
        }
        out
    }

    /// Marks a run of `job` finished; returns the queued run to start now, if any.
    pub fn finished(&mut self, job: usize) -> Option<Fire> {
        let slot = &mut self.slots[job];
        slot.running = false;
        let next = slot.queued.take();
        slot.running = next.is_some();
        next
    }

    /// Drops queued runs (on shutdown), returning them.
    pub fn drain_queued(&mut self) -> Vec<Fire> {
        self.slots
            .iter_mut()
            .filter_map(|s| s.queued.take())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schedule::{Expr, Zone};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(expr: &str) -> JobSpec {
        JobSpec::new("job", Expr::parse(expr).unwrap()).with_zone(Zone::Utc)
    }

    const TOL: Duration = Duration::from_secs(10);

    #[test]
    fn on_time_fire_then_next() {
        let now = at("2026-01-01T10:00:00Z");
        let mut plan = Plan::new(vec![spec("0 * * * *")], &[None], now, 1, TOL);
        assert_eq!(plan.next_wake(), Some(at("2026-01-01T11:00:00Z")));
        assert!(plan.due(at("2026-01-01T10:59:59Z")).is_empty());
        let d = plan.due(at("2026-01-01T11:00:00.002Z"));
        assert_eq!(
            d,
            [Decision::Start(Fire {
                job: 0,
                scheduled: at("2026-01-01T11:00:00Z"),
                catchup: false
            })]
        );
        assert_eq!(plan.next_fire(0), Some(at("2026-01-01T12:00:00Z")));
    }

    #[test]
    fn once_policy_catches_up_once_after_sleep() {
        let now = at("2026-01-01T10:00:00Z");
        let mut plan = Plan::new(vec![spec("0 * * * *")], &[None], now, 1, TOL);
        // Asleep from 10:30 to 18:30: 8 hourly runs were due.
        let d = plan.due(at("2026-01-01T18:30:00Z"));
        assert_eq!(
            d,
            [Decision::Start(Fire {
                job: 0,
                scheduled: at("2026-01-01T18:00:00Z"),
                catchup: true
            })]
        );
        assert!(plan.due(at("2026-01-01T18:30:01Z")).is_empty());
        assert_eq!(plan.next_fire(0), Some(at("2026-01-01T19:00:00Z")));
    }

    #[test]
    fn skip_policy_skips_missed_but_not_slightly_late() {
        let now = at("2026-01-01T10:00:00Z");
        let mut plan = Plan::new(
            vec![spec("0 * * * *").with_missed(Missed::Skip)],
            &[None],
            now,
            1,
            TOL,
        );
        let d = plan.due(at("2026-01-01T18:30:00Z"));
        assert!(
            matches!(d[..], [Decision::Skip(_, SkipReason::Missed)]),
            "{d:?}"
        );
        plan.finished(0);
        // Two seconds late is not "missed".
        let d = plan.due(at("2026-01-01T19:00:02Z"));
        assert!(
            matches!(d[..], [Decision::Start(Fire { catchup: false, .. })]),
            "{d:?}"
        );
    }

    #[test]
    fn restart_with_stored_last_fire_catches_up_once() {
        let last = Some(at("2026-01-01T03:00:00Z"));
        let mut plan = Plan::new(
            vec![spec("0 3 * * *")],
            &[last],
            at("2026-01-04T09:00:00Z"),
            1,
            TOL,
        );
        let d = plan.due(at("2026-01-04T09:00:00Z"));
        assert_eq!(
            d,
            [Decision::Start(Fire {
                job: 0,
                scheduled: at("2026-01-04T03:00:00Z"),
                catchup: true
            })]
        );
        assert!(plan.due(at("2026-01-04T09:00:01Z")).is_empty());
        assert_eq!(plan.next_fire(0), Some(at("2026-01-05T03:00:00Z")));
    }

    #[test]
    fn overlap_skip_and_queue() {
        let now = at("2026-01-01T00:00:00Z");
        let specs = vec![
            spec("* * * * * *"),
            spec("* * * * * *").with_overlap(Overlap::Queue),
        ];
        let mut plan = Plan::new(specs, &[None, None], now, 1, TOL);
        let t = |s: u32| now + chrono::Duration::seconds(s as i64);
        assert!(
            plan.due(t(1))
                .iter()
                .all(|d| matches!(d, Decision::Start(_)))
        );
        let d = plan.due(t(2));
        assert!(matches!(d[0], Decision::Skip(_, SkipReason::Overlap)));
        assert!(matches!(d[1], Decision::Queued(_)));
        let d = plan.due(t(3));
        assert!(matches!(d[0], Decision::Skip(_, SkipReason::Overlap)));
        assert!(matches!(d[1], Decision::Skip(_, SkipReason::QueueFull)));
        assert_eq!(plan.finished(0), None);
        assert_eq!(plan.finished(1).map(|f| f.scheduled), Some(t(2)));
        assert_eq!(plan.finished(1), None);
        assert!(
            plan.due(t(4))
                .iter()
                .all(|d| matches!(d, Decision::Start(_)))
        );
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let now = at("2026-01-01T00:00:00Z");
        let jitter = Duration::from_secs(30);
        let mut plan = Plan::new(
            vec![spec("* * * * *").with_jitter(jitter)],
            &[None],
            now,
            7,
            TOL,
        );
        let mut delays = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let next = plan.next_fire(0).unwrap();
            let wake = plan.next_wake().unwrap();
            let delay = (wake - next).to_std().unwrap();
            assert!(delay <= jitter, "{delay:?}");
            delays.insert(delay.as_millis());
            let d = plan.due(wake);
            assert!(
                matches!(d[..], [Decision::Start(Fire { catchup: false, .. })]),
                "{d:?}"
            );
            assert_eq!(d[0].fire().scheduled, next);
            plan.finished(0);
        }
        assert!(
            delays.len() > 400,
            "jitter should vary: {} distinct delays",
            delays.len()
        );
    }
}
