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

---@class sync.GitOpts
---@field message string|nil commit everything (untracked files too) with this message when the tree is dirty; without it a dirty tree raises (default: none)
---@field remote string|nil (default: "origin")
---@field branch string|nil (default: the current branch)

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
---@param host string
---@param repo_path string
---@param opts sync.GitOpts|nil
---@return sync.GitResult
function sync.git_remote(host, repo_path, opts) end
