//! Git sync with the system `git` (the user's credentials, hooks and config apply): commit a dirty tree when a
//! message is given, `pull --rebase`, push. A rebase conflict aborts the rebase and leaves the work tree and
//! the local commits exactly as they were; the error lists the conflicting files. The same steps run on this
//! machine (`local`) or on a fleet host over its ssh master.
use std::time::Duration;

use serde::Deserialize;

use super::{Remote, RemoteError};
use crate::core::process::{Cmd, Output, Spec};

/// Bound on each git step (fetching or pushing a large repository can take a while).
const STEP_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GitOpts {
    /// Commit everything (including untracked files) with this message when the tree is dirty.
    pub message: Option<String>,
    pub remote: String,
    /// Default: the current branch.
    pub branch: Option<String>,
}

impl Default for GitOpts {
    fn default() -> Self {
        GitOpts {
            message: None,
            remote: "origin".into(),
            branch: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitResult {
    pub committed: bool,
    /// New upstream commits came in.
    pub pulled: bool,
    /// Local commits were pushed.
    pub pushed: bool,
    pub head: String,
}

struct Repo<'a> {
    remote: &'a Remote,
    host: &'a str,
    path: &'a str,
}

impl Repo<'_> {
    async fn git(&self, args: &[&str]) -> Result<Output, RemoteError> {
        let mut argv = vec!["git".to_string(), "-C".to_string(), self.path.to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let spec = Spec {
            env: vec![
                ("GIT_TERMINAL_PROMPT".into(), "0".into()),
                ("LC_ALL".into(), "C".into()),
            ],
            timeout: Some(STEP_TIMEOUT),
            ..Spec::default()
        };
        self.remote
            .run(self.host, &Cmd::Argv(argv), &spec, None)
            .await
    }

    /// Runs a step that must succeed; returns its trimmed stdout.
    async fn ok(&self, args: &[&str]) -> Result<String, RemoteError> {
        let out = self.git(args).await?;
        if !out.ok() {
            return Err(RemoteError::Sync(format!(
                "git {}: {}",
                args.join(" "),
                out.failure_summary()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    async fn rev(&self, name: &str) -> Result<Option<String>, RemoteError> {
        let out = self
            .git(&["rev-parse", "-q", "--verify", &format!("{name}^{{commit}}")])
            .await?;
        Ok(out
            .ok()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }
}

/// Commit (if asked), pull --rebase, push, in `path` on `host` (`local` for this machine).
pub async fn sync(
    remote: &Remote,
    host: &str,
    path: &str,
    opts: &GitOpts,
) -> Result<GitResult, RemoteError> {
    let path = match remote.target(host)? {
        super::Target::Local => super::expand_home(path).to_string_lossy().into_owned(),
        super::Target::Ssh(_) => super::login_relative(path),
    };
    let path = path.as_str();
    // git reads a word starting with `-` as an option wherever it stands (`--upload-pack=…` as a remote
    // runs a command): such a remote or branch is refused, and the repository path follows `-C`, which
    // takes the next word as its value whatever it is.
    for (what, value) in [
        ("remote", Some(&opts.remote)),
        ("branch", opts.branch.as_ref()),
    ] {
        if let Some(v) = value
            && (v.starts_with('-') || v.is_empty())
        {
            return Err(RemoteError::Invalid(format!(
                "{what} {v:?} is not a {what} name (it may not be empty or start with '-')"
            )));
        }
    }
    let repo = Repo { remote, host, path };
    let branch = match &opts.branch {
        Some(b) => b.clone(),
        None => {
            let b = repo.ok(&["rev-parse", "--abbrev-ref", "HEAD"]).await?;
            if b == "HEAD" {
                return Err(RemoteError::Sync(format!(
                    "{path}: detached HEAD; pass branch = \"…\""
                )));
            }
            if b.starts_with('-') {
                return Err(RemoteError::Sync(format!(
                    "{path}: the current branch {b:?} starts with '-'; pass branch = \"…\""
                )));
            }
            b
        }
    };
    let status = repo.ok(&["status", "--porcelain"]).await?;
    let mut committed = false;
    if !status.is_empty() {
        let Some(message) = &opts.message else {
            let files: Vec<&str> = status.lines().take(10).collect();
            return Err(RemoteError::Sync(format!(
                "{path}: uncommitted changes (pass message = \"…\" to commit them): {}",
                files.join(", ")
            )));
        };
        repo.ok(&["add", "-A"]).await?;
        repo.ok(&["commit", "-q", "-m", message]).await?;
        committed = true;
    }
    let tracking = format!("refs/remotes/{}/{branch}", opts.remote);
    let upstream_before = repo.rev(&tracking).await?;
    let heads = repo
        .git(&["ls-remote", "--exit-code", "--heads", &opts.remote, &branch])
        .await?;
    let remote_has_branch = match heads.code {
        Some(0) => true,
        Some(2) => false,
        _ => {
            return Err(RemoteError::Sync(format!(
                "git ls-remote {}: {}",
                opts.remote,
                heads.failure_summary()
            )));
        }
    };
    if remote_has_branch {
        let pull = repo
            .git(&[
                "pull",
                "--rebase",
                "--no-autostash",
                "-q",
                &opts.remote,
                &branch,
            ])
            .await?;
        if !pull.ok() {
            let kept = Kept {
                committed,
                remote: &opts.remote,
                branch: &branch,
            };
            return Err(abort_rebase(&repo, &pull, &kept).await);
        }
    }
    let upstream_after = repo.rev(&tracking).await?;
    let pulled = remote_has_branch && upstream_after.is_some() && upstream_after != upstream_before;
    let head = repo.ok(&["rev-parse", "HEAD"]).await?;
    let ahead = match &upstream_after {
        Some(up) if remote_has_branch => {
            repo.ok(&["rev-list", "--count", &format!("{up}..HEAD")])
                .await?
                != "0"
        }
        _ => true,
    };
    if ahead {
        repo.ok(&[
            "push",
            "-q",
            &opts.remote,
            &format!("HEAD:refs/heads/{branch}"),
        ])
        .await?;
    }
    Ok(GitResult {
        committed,
        pulled,
        pushed: ahead,
        head,
    })
}

/// What a failed `pull --rebase` leaves: whether this call committed, and the upstream it could not take.
struct Kept<'a> {
    committed: bool,
    remote: &'a str,
    branch: &'a str,
}

/// After a failed `pull --rebase`: if a rebase is in progress, list the conflicts and abort it (restoring the
/// branch, its commits and the work tree); either way, an error describing what happened. After a conflict it
/// says exactly what is where: the commit made (or the local HEAD), not pushed, the conflicting files, and
/// how to resolve; the same words on every run until it is resolved.
async fn abort_rebase(repo: &Repo<'_>, pull: &Output, kept: &Kept<'_>) -> RemoteError {
    let conflicts = match repo.git(&["diff", "--name-only", "--diff-filter=U"]).await {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>(),
        Err(e) => return e,
    };
    let in_rebase = match repo
        .git(&["rev-parse", "-q", "--verify", "REBASE_HEAD"])
        .await
    {
        Ok(out) => out.ok(),
        Err(e) => return e,
    };
    if !in_rebase && conflicts.is_empty() {
        return RemoteError::Sync(format!("git pull --rebase: {}", pull.failure_summary()));
    }
    if let Err(e) = repo.ok(&["rebase", "--abort"]).await {
        return RemoteError::Sync(format!(
            "rebase conflict in {}; `git rebase --abort` failed too: {e}",
            repo.path
        ));
    }
    let files = if conflicts.is_empty() {
        "(unknown files)".to_string()
    } else {
        conflicts.join(", ")
    };
    let head = repo
        .ok(&["rev-parse", "--short", "HEAD"])
        .await
        .unwrap_or_else(|_| "HEAD".into());
    let Kept {
        committed,
        remote,
        branch,
    } = kept;
    let what = if *committed {
        format!("committed as {head}")
    } else {
        format!("local commits up to {head} kept")
    };
    RemoteError::Sync(format!(
        "{what}, not pushed: {remote}/{branch} has a conflicting change in {files} (rebase aborted, the work \
         tree as it was); resolve with: git -C {path} pull --rebase {remote} {branch}, fix the files, git add \
         them, git rebase --continue, then push or run again",
        path = crate::core::text::escape_line(repo.path),
    ))
}
