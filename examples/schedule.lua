-- An example schedule file for `baton daemon`: the user's routines on the wall clock.
-- Copy it next to your fleet file as schedule.lua (the daemon's default) together with the playbooks, and
-- set `scripts` below to where they are (paths are relative to this file). `baton schedule list` shows the
-- next runs; `baton schedule run end_of_day` runs one now. The playbooks read routines.lua next to the
-- fleet file (see README, "Playbooks").
local scripts = "../scripts/"

-- Weekdays at 18:00: commit (with a message from the local model) and push every repo, then start CI on
-- the server. Missed while the laptop slept? One catch-up run when it wakes.
schedule.cron("end_of_day", "0 18 * * MON-FRI", scripts .. "end_of_day.lua", { missed = "once", timeout = "30m" })

-- Every night at 02:30: test every repo on the server, keep the logs, diagnose failures with the local
-- model. A night missed is not worth catching up in the morning.
schedule.cron("nightly_ci", "30 2 * * *", scripts .. "nightly_ci.lua", { missed = "skip", timeout = "3h" })

-- Weekday mornings: load the local models before work starts.
schedule.cron("warm_models", "30 7 * * MON-FRI", scripts .. "warm_models.lua", { missed = "skip", timeout = "20m" })
