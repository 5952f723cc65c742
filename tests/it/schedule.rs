//! Integration tests: schedule.
