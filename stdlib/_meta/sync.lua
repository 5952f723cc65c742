---@meta
-- Safe file sync with the system rsync over the fleet's ssh connections (the same multiplexed master `ssh`
-- uses: no second login), or locally for `local` hosts; and git sync with the system git.
--
-- Nothing is deleted unless `delete = true`; every overwritten or deleted file is kept under
-- `.baton-backup/<timestamp>/` at the destination (`.baton-backup/` is never transferred nor deleted).
-- Refused before any change, with an error: a source root that is missing or empty while `delete` is set and
-- the destination is not empty; more deletions than `max_delete` (counted by a dry run first); a destination
-- of `/` or the home folder itself with `delete`.
--
-- Ignore files are read from the source root only. `ignore_file` (default `.batonignore`) holds rsync
-- patterns, one per line (`# comment`, `- pattern` / `+ pattern` allowed; a bare line excludes). A `.stignore`
-- (Syncthing) is honoured too and translated: `pattern` → exclude, `!pattern` → include, `// comment` dropped,
-- the `(?d)` prefix dropped; `(?i)` and `#include` have no rsync equivalent and raise an error instead of
-- being silently ignored. Rules apply in order: `exclude`, then the ignore file, then `.stignore`; the first
-- matching rule wins (as in both rsync and Syncthing).
--
-- Remote paths: absolute, or relative to the login folder (`~/code` is the same as `code`).
-- No path is ever read as an rsync option: a local path starting with `-` is passed as `./-…`, and a remote
-- one likewise.

---@class sync
sync = {}

---@class sync.Opts
---@field exclude string[]|nil rsync exclude patterns (default: {})
---@field ignore_file string|nil ignore file in the source root (default: ".batonignore")
---@field delete boolean|nil delete destination files that are not in the source (default: false)
---@field backup boolean|nil keep replaced and deleted files under .baton-backup/<timestamp>/ (default: true)
---@field dry_run boolean|nil report what would change, change nothing (default: false)
---@field checksum boolean|nil compare file contents, not size and time (default: false)
---@field compress boolean|nil compress data on the wire (default: false)
---@field max_delete integer|nil refuse when more files would be deleted (default: 100)
---@field links "keep"|"safe"|"skip"|nil symbolic links inside the tree: "keep" sends them as links wherever they point; "safe" sends only links that stay inside the tree (rsync --safe-links: absolute links and links leading out are skipped); "skip" sends none. Links are never followed, but a source root that is itself a link is: check it with sync.realpath first (default: "keep")
---@field on_progress fun(p: sync.Progress)|nil called as the transfer advances; without it, a progress bar is drawn on stderr when stderr is a terminal (default: none)

---@class sync.Progress
---@field bytes integer bytes transferred so far
---@field percent integer of the whole transfer
---@field rate string e.g. "31.25MB/s"
---@field eta string estimated time left, e.g. "0:00:03"

---@class sync.Change
---@field path string relative to the destination root; directories end with "/"
---@field action "create"|"update"|"delete"
---@field size integer bytes

---@class sync.Result
---@field changes sync.Change[] from rsync's itemized output (attribute-only changes are not listed)
---@field files integer regular files transferred
---@field bytes integer bytes of file content transferred
---@field dry_run boolean
---@field duration number seconds

--- Copies the contents of `local_path` (a folder, or one file) to `path` on `host`.
--- Raises `sync.push(<host>): <cause>`.
---@param local_path string
---@param remote string "host:path"
---@param opts sync.Opts|nil
---@return sync.Result
function sync.push(local_path, remote, opts) end

--- Copies the contents of `path` on `host` to `local_path`.
---@param remote string "host:path"
---@param local_path string
---@param opts sync.Opts|nil
---@return sync.Result
function sync.pull(remote, local_path, opts) end

---@class sync.RealpathOpts
---@field missing_ok boolean|nil a missing path resolves to its nearest existing folder (resolved) plus the missing part, which may hold no "." or ".." (default: false: a missing path raises)

--- Where `path` really is on `host` ("local" for this machine): absolute, every symbolic link followed,
--- resolved on the host where it lives (`~` is that host's home; a relative remote path is relative to the
--- login folder). Check this, not the path given, against allowed roots. Raises `sync.realpath(<host>): …`.
---@param host string
---@param path string
---@param opts sync.RealpathOpts|nil
---@return string
function sync.realpath(host, path, opts) end

---@class sync.GitOpts
---@field message string|nil commit everything (untracked files too) with this message when the tree is dirty; without it a dirty tree raises (default: none)
---@field remote string|nil may not start with "-" (default: "origin")
---@field branch string|nil may not start with "-" (default: the current branch)

---@class sync.GitResult
---@field committed boolean a commit was made
---@field pulled boolean new upstream commits came in
---@field pushed boolean local commits were pushed
---@field head string commit id of HEAD afterwards

--- Commit (if dirty and `message` is given), `git pull --rebase`, push. On a rebase conflict the rebase is
--- aborted, the work tree and local commits stay exactly as they were, and the error lists the conflicting
--- files. Runs the system git: the user's credentials, hooks and config apply.
---@param repo_path string
---@param opts sync.GitOpts|nil
---@return sync.GitResult
function sync.git(repo_path, opts) end

--- The same steps as `sync.git`, run on a fleet host over ssh.
---
--- ```lua
--- local r = sync.git_remote("studio", "~/notes", {message = "notes from studio"})
--- print(r.committed, r.pulled, r.pushed, r.head)
--- ```
---@param host string
---@param repo_path string
---@param opts sync.GitOpts|nil
---@return sync.GitResult
function sync.git_remote(host, repo_path, opts) end

---@class sync.SyncthingFolder
---@field id string
---@field label string
---@field path string path on the Syncthing host
---@field paused boolean
---@field devices string[] device IDs it is shared with (this device included)

---@class sync.SyncthingCompletion
---@field device string device ID
---@field name string device name (or the first group of its ID)
---@field completion number percent of the folder that device has, as this instance sees it
---@field need_bytes integer
---@field need_items integer
---@field connected boolean
---@field synced boolean connected, 100 %, nothing needed, and its index known

---@class sync.SyncthingStatus
---@field state string "idle", "scanning", "syncing", "error", "paused", …
---@field paused boolean
---@field need_bytes integer bytes this instance still needs
---@field need_files integer files this instance still needs
---@field global_bytes integer
---@field local_bytes integer
---@field errors integer
---@field completion table<string, sync.SyncthingCompletion> per remote device, by name

---@class sync.SyncthingError
---@field folder string|nil nil for a system error
---@field path string|nil
---@field message string

---@class sync.WaitSyncedOpts
---@field device string|nil also wait until this device (name or ID) has 100 % of the folder ("results synced back") (default: none, only this instance)
---@field timeout number|string|nil raise `syncthing:wait_synced(<host>): folder "<id>" not synced after …` with the last state (default: "10m")
---@field interval number|string|nil pause between looks (default: "1s")

--- A Syncthing REST API client (`sync.syncthing(host)`). Folder arguments are IDs or labels.
---@class sync.Syncthing
local Syncthing = {}

--- This instance's device ID (use it as another instance's `wait_synced` device).
---@return string
function Syncthing:id() end

---@return sync.SyncthingFolder[]
function Syncthing:folders() end

---@param folder string
---@return sync.SyncthingStatus
function Syncthing:status(folder) end

--- Rescans the folder; returns when the scan is done.
---@param folder string
function Syncthing:scan(folder) end

--- Returns once the folder is idle with nothing needed here and, with `device`, synced on that device.
---@param folder string
---@param opts sync.WaitSyncedOpts|nil
---@return sync.SyncthingStatus
function Syncthing:wait_synced(folder, opts) end

---@param folder string
function Syncthing:pause(folder) end

---@param folder string
function Syncthing:resume(folder) end

--- Files that failed to sync (per folder), then Syncthing's system errors.
---@return sync.SyncthingError[]
function Syncthing:errors() end

--- A client of the Syncthing REST API on `host` (default: this machine). URL and API key come from the fleet's
--- `hosts.X.syncthing = {url, api_key_env}` when given, else from the host's config.xml (read over ssh from
--- ~/.local/state/syncthing, ~/.config/syncthing or ~/Library/Application Support/Syncthing); a remote host's
--- API is reached through a local port forward on its ssh master, so a GUI listening on 127.0.0.1 works.
--- The API key is never printed. A wrong key raises `syncthing:<method>(<host>): Syncthing at <url> refused the API key (HTTP 403)`.
---@param host string|nil (default: this machine)
---@return sync.Syncthing
function sync.syncthing(host) end
