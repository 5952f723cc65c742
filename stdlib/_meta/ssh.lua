---@meta
-- Remote commands over ssh: one multiplexed OpenSSH master per host (opened on first use, shared by every
-- coroutine, closed when the script ends). Hosts are fleet host names; a host with `ssh = false` and the
-- built-in `local` run commands on this machine through the same API. At most 8 sessions run at once on
-- one master (sshd's default MaxSessions is 10); further calls wait their turn.
--
-- Remote commands are run by the user's login shell on the host (a POSIX shell is assumed).

---@class ssh
ssh = {}

---@class ssh.Result
---@field ok boolean true when the exit code is 0
---@field code integer|nil exit code (124 after a timeout; 255 is also what ssh reports for a remote kill)
---@field signal integer|nil signal that ended a local command
---@field stdout string
---@field stderr string
---@field duration number seconds
---@field host string the fleet host name
---@field err string|nil `exit 1: <stderr tail>`, `timed out after 5s`, or the connection failure (when not ok)

---@class ssh.RunOpts
---@field cwd string|nil working directory on the host; `~/x` is relative to the remote home (default: the login directory)
---@field env table<string,string>|nil variables exported before the command (default: none)
---@field stdin string|nil data written to the command's standard input (default: none, stdin is empty)
---@field timeout number|string|nil kill the command (on the host too) after this long; gives code 124 (default: none)
---@field check boolean|nil raise on a non-zero exit or a connection failure (default: true)
---@field on_line fun(stream: "stdout"|"stderr", line: string)|nil called for each output line as it arrives; a line over 16 MiB stops the command (on the host too) and raises `stdout line N is longer than 16 MiB, …` (default: none)

--- Runs `cmd` on `host`. A string is run by the remote shell; a list is an argv whose every argument is
--- quoted, so no argument can inject shell syntax.
--- Raises `ssh.run(<host>): <cause>` (unknown fleet host, name resolution, connection refused, authentication,
--- host key mismatch, `exit 1: <stderr tail>`) unless `check = false`, which returns the result with `ok = false`.
---@param host string fleet host name
---@param cmd string|string[]
---@param opts ssh.RunOpts|nil
---@return ssh.Result
function ssh.run(host, cmd, opts) end

---@class ssh.SpawnOpts
---@field cwd string|nil working directory on the host (default: the login directory)
---@field env table<string,string>|nil variables exported for the job (default: none)
---@field notify boolean|nil tell the fleet's `notify` channels when the job ends (exit code, duration, log tail); `baton daemon` watches such jobs (default: false)
---@field tmux boolean|nil run inside the tmux session `baton-<id>` on the host, so `baton jobs attach ID` can watch it live; output still goes to the log; raises naming the host when it has no tmux (default: false)
---@field title string|nil a short name (one line, at most 80 characters) that heads its notification and `baton jobs` instead of the command, e.g. "nightly CI (app, lib)" (default: none: the id, and the command cut to one line)

---@class ssh.Job
---@field id string job id (use with `ssh.job(id)` from another script)
---@field host string fleet host name
---@field pid integer pid of the job's runner on the host
---@field log string path of the log file on the host (stdout and stderr, `~/.baton/jobs/<id>/log`)
---@field command string
---@field title string|nil its title, when spawned with one
---@field cwd string|nil the folder it runs in, as given to `ssh.spawn` (`nil`: the login directory); a resume finds its results there
---@field notify boolean whether its end is notified
---@field tmux string|nil its tmux session (`baton-<id>`) when started with `tmux = true`
local Job = {}

---@class ssh.JobStatus
---@field state "running"|"exited"|"lost" `lost`: the process is gone without an exit record (e.g. a reboot)
---@field code integer|nil exit code once exited (143 after `job:kill()`)

--- The job's current state, read on the host.
---@return ssh.JobStatus
function Job:status() end

---@class ssh.WaitOpts
---@field poll number|string|nil how often to look at the host (default: "10s")
---@field timeout number|string|nil raise if still running after this long (default: none)
---@field on_line fun(stream: "stdout", line: string)|nil called with each log line (from the start) while waiting; the log holds stdout and stderr together; a line over 16 MiB stops the job and raises (default: none)

--- Waits until the job is no longer running, streaming new log lines to `on_line`.
---@param opts ssh.WaitOpts|nil
---@return ssh.JobStatus
function Job:wait(opts) end

--- The last `n` lines of the job's log.
---@param n integer|nil (default: 10)
---@return string[]
function Job:tail(n) end

--- Stops the job (TERM, then KILL after 5 s) and records exit code 143 if it recorded none.
---@return ssh.JobStatus
function Job:kill() end

--- Starts `cmd` detached on `host`: it survives the ssh connection and the script. Output goes to a log file
--- on the host, the exit code is recorded when it ends, and the job is registered in baton's state database
--- (`baton jobs` lists jobs, `baton jobs --prune` forgets ended ones).
---@param host string
---@param cmd string|string[]
---@param opts ssh.SpawnOpts|nil
---@return ssh.Job
function ssh.spawn(host, cmd, opts) end

--- Re-attaches to a job started by any script (from the state database).
---@param id string
---@return ssh.Job
function ssh.job(id) end

---@class ssh.OnlineOpts
---@field timeout number|string|nil how long to try (default: "3s")

--- Whether `host` answers over ssh within the timeout.
---
--- ```lua
--- if ssh.online("nas", {timeout = "1s"}) then
---   print(ssh.run("nas", "df -h /srv").stdout)
--- else
---   print("nas is down")
--- end
--- ```
---@param host string
---@param opts ssh.OnlineOpts|nil
---@return boolean
function ssh.online(host, opts) end

---@class ssh.WaitOnlineOpts
---@field timeout number|string|nil give up after this long (default: "5m")
---@field interval number|string|nil pause between attempts (default: "2s")
---@field wake boolean|nil send the Wake-on-LAN packet when the host does not answer, and again every 30 s while waiting (needs `hosts.X.mac`) (default: false)

--- Returns once `host` answers; raises `ssh.wait_online(<host>): not online after 5m: <last cause>` after the
--- timeout, and at once for causes waiting cannot fix (authentication, host key).
---@param host string
---@param opts ssh.WaitOnlineOpts|nil
function ssh.wait_online(host, opts) end

---@class ssh.EachOpts
---@field limit integer|nil at most this many hosts at once (default: 8)
---@field check boolean|nil raise the first failure (default: true); false gives `{ok = false, err, host}` entries

--- Calls `fn(host)` for every host concurrently (at most `limit` at once); results in host order.
---@generic T
---@param hosts string[]
---@param fn fun(host: string): T
---@param opts ssh.EachOpts|nil
---@return T[]
function ssh.each(hosts, fn, opts) end

---@class ssh.WakeResult
---@field to string the address the packet went to (`ip:port`)
---@field via string|nil the fleet host that sent it (`hosts.X.wake.via`), nil when sent from this machine
---@field program string|nil the program that sent it on `via` (`python3`, `socat` or `bash`)

--- Sends the Wake-on-LAN magic packet for `host` (`hosts.X.mac`) to its `wake.broadcast`
--- (default: "255.255.255.255") and `wake.port` (default: 9), from this machine or from the always-on host
--- `wake.via` over ssh (which needs python3, socat or bash there). Does not wait: see `ssh.wait_online(host, {wake = true})`.
--- Raises `ssh.wake(<host>): cannot wake "<host>": the fleet gives it no `mac` …` for a host without `mac`.
---
--- ```lua
--- local sent = ssh.wake("studio")
--- print("magic packet to " .. sent.to .. (sent.via and (" via " .. sent.via) or ""))
--- ssh.wait_online("studio", {timeout = "3m"})
--- ```
---@param host string
---@return ssh.WakeResult
function ssh.wake(host) end
