---@meta
-- The `schedule` global: cron jobs fired by `baton daemon [FILE]` (FILE default: `schedule.lua` next to the
-- fleet file). A schedule file is Lua that registers jobs; the daemon then fires them on the wall clock,
-- catches up after sleep, power-off or restarts, and records every run (`baton schedule history`).

---@class schedule
schedule = {}

---@class schedule.CronOpts
---What to do when runs were due while the machine slept or the daemon was stopped: `"once"` runs one
---catch-up however many were missed, `"skip"` waits for the next scheduled time. (default: "once")
---@field missed? "once"|"skip"
---What to do when a run is due while the previous one still runs: `"skip"` records it as skipped,
---`"queue"` runs it right after (at most one waits). (default: "skip")
---@field overlap? "skip"|"queue"
---Longest a run may take (seconds or "30s", "5m"); past it the run is stopped wherever its Lua is (also
---in a loop that never waits, or a callback called by C such as a `table.sort` comparator) and recorded as
---failed `timed out after …`. (default: the fleet's `limits.job_timeout`, else "1h")
---@field timeout? number|string
---Memory limit of the run's Lua state (bytes, or "256MiB", "1GiB"); past it the run fails with
---`not enough memory` and the daemon goes on. (default: the fleet's `limits.memory`, else "1GiB")
---@field memory? number|string
---A random delay up to this duration before each run, to spread load. (default: 0)
---@field jitter? number|string
---Whose wall clock the expression reads: `"local"`, `"UTC"` or an IANA name such as `"Europe/Berlin"`.
---(default: "local")
---@field tz? string
---When to tell the fleet's `notify` channels how a run ended (job name, outcome, duration, last log
---lines): `"failure"` (failed, timed out or cancelled), `"always"` or `"never"`. Sent by `baton daemon`, and
---by `baton schedule run` (unless `--quiet`).
---(default: "failure")
---@field notify? "failure"|"always"|"never"
---A playbook run that no daemon saw end (the daemon was killed, the machine restarted) is resumed when the
---daemon starts again, once, as `baton resume RUN` would: the calls it finished are not made again. Without
---it such a run is recorded as interrupted and the daemon says how to finish it. (default: false)
---@field resume? boolean

---What a job function receives.
---@class schedule.Run
---@field job string the job name
---@field run integer the run record id (see `baton schedule history`)
---@field scheduled string the scheduled time this run stands for, ISO 8601 local time
---@field catchup boolean a late run standing in for times missed while asleep or stopped
---@field manual boolean started by `baton schedule run`
---@field log string the run's log file (its `print` output goes there)

---A registered job, as `schedule.jobs()` and `schedule.cron` return it.
---@class schedule.Job
---@field name string
---@field expr string the cron expression as written
---@field tz string "local", "UTC" or the IANA zone name
---@field missed "once"|"skip"
---@field overlap "skip"|"queue"
---@field timeout number? seconds
---@field jitter number seconds
---@field target string "function" or the playbook path
---@field next string? next fire time, ISO 8601 in the job's zone (nil if it never fires again)
---@field last schedule.LastRun? the latest run recorded in the state database

---@class schedule.LastRun
---@field outcome "running"|"ok"|"failed"|"cancelled"
---@field scheduled string
---@field started string?
---@field ended string?
---@field error string?
---@field log string?

---Registers a job for `baton daemon`. `expr` is classic cron (`"0 18 * * MON-FRI"`: minute hour
---day-of-month month day-of-week; day-of-week 0-7 with 0 and 7 = Sunday; if both day fields are restricted
---either may match), 6 fields with seconds first (`"*/10 * * * * *"`), or `@hourly`, `@daily`, `@weekly`,
---`@monthly`, `@yearly`. A bad expression raises an error naming the field and what is wrong.
---
---`target` is a function (it receives a `schedule.Run`) or a playbook path (relative to this file; it gets
---the global `RUN`). Every run runs in a fresh Lua state on a thread of its own, so a job that spins, even
---inside one long C call, cannot delay the other jobs: a function job's state evaluates this file again (as
---it was when the daemon started; its output is discarded) and calls the job's function, so values kept at
---the file's top level do not carry from one run to the next.
---A run that raises, panics, runs out of memory or passes its timeout is recorded as failed; other jobs go on.
---
---Daylight-saving time: a job at fixed hours fires once per day (a time skipped by spring-forward runs one
---hour later, e.g. 02:30 at 03:30; a repeated fall-back time runs the first time only); a job that runs
---every hour follows real time.
---@param name string unique job name
---@param expr string cron expression
---@param target fun(run: schedule.Run)|string
---@param opts? schedule.CronOpts
---@return schedule.Job
function schedule.cron(name, expr, target, opts) end

---The next `n` fire times of `expr`, ISO 8601 in local time (e.g. `"2026-11-23T18:00:00+01:00"`).
---
---```lua
---for _, t in ipairs(schedule.next("0 18 * * MON-FRI", 3)) do print(t) end
---```
---@param expr string cron expression
---@param n? integer how many, 1 to 1000 (default: 5)
---@return string[]
function schedule.next(expr, n) end

---The jobs registered so far, each with its next fire time and last run.
---
---```lua
---schedule.cron("backup", "0 3 * * *", function() ssh.run("nas", "restic backup ~/docs") end)
---for _, j in ipairs(schedule.jobs()) do
---  print(j.name, j.expr, j.next, j.last and j.last.outcome or "never ran")
---end
---```
---@return schedule.Job[]
function schedule.jobs() end
