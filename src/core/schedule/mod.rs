//! Cron schedules, the scheduler loop and run records.
