//! Integration tests (issue 26): no value baton places in a program's argv (paths, git remotes and branches,
//! working folders, ssh destinations, notification text) is read as an option, and the shipped
//! `examples/tools.lua`, served with `baton mcp serve` to a real MCP client, cannot be turned into a shell or
//! walked out of its roots.
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::common::{Env, bin, git, write};
use crate::sshd::{SshFleet, require};

fn lua_str(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[test]
fn rsync_never_reads_a_local_or_remote_path_as_an_option() {
    require("rsync");
    let fleet = SshFleet::start(1);
    let env = Env::new("inject-rsync").with_fleet(&fleet.fleet_lua());
    let remote_home = &fleet.hosts[0].home;
    write(&remote_home.join("srcdir"), &[("a.txt", "from h0")]);
    // As rsync options these names would run `touch pwned…` in baton's working folder (env.dir); the `#`
    // hides the `/` baton appends to a source folder.
    let pull_to = "-esh -c 'touch pwned' #";
    let push_from = "-esh -c 'touch pwned2' #";
    write(&env.dir.join(push_from), &[("b.txt", "from here")]);
    let out = env.run_lua(
        "t.lua",
        &format!(
            r#"
            print("pull", pcall(sync.pull, "h0:{home}/srcdir", {pull_to:?}))
            print("push", pcall(sync.push, {push_from:?}, "h0:{home}/pushed"))
            "#,
            home = remote_home.display()
        ),
        &[],
    );
    for f in ["pwned", "pwned2"] {
        assert!(
            !env.dir.join(f).exists() && !remote_home.join(f).exists(),
            "a path became an rsync option and ran a command ({f})\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
    out.ok();
    assert!(out.stdout.contains("pull\ttrue"), "{}", out.stdout);
    assert!(out.stdout.contains("push\ttrue"), "{}", out.stdout);
    // The odd names are folders, as given.
    assert_eq!(
        std::fs::read_to_string(env.dir.join(pull_to).join("a.txt")).unwrap(),
        "from h0"
    );
    assert_eq!(
        std::fs::read_to_string(remote_home.join("pushed/b.txt")).unwrap(),
        "from here"
    );
}

#[test]
fn git_sync_refuses_a_remote_or_branch_git_would_read_as_an_option() {
    let env = Env::new("inject-git");
    let origin = env.dir.join("origin.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    let clone = env.dir.join("clone");
    git(
        env.dir.path(),
        &["clone", "-q", origin.to_str().unwrap(), "clone"],
    );
    git(&clone, &["config", "user.email", "t@example.com"]);
    git(&clone, &["config", "user.name", "t"]);
    write(&clone, &[("f.txt", "1")]);
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-q", "-m", "one"]);
    git(&clone, &["push", "-q", "origin", "main"]);
    let pwned = env.dir.join("pwned");
    // As an option, `--upload-pack=…` makes `git ls-remote` run it through a shell against `origin`.
    let out = env.run_lua(
        "t.lua",
        &format!(
            r#"
            local repo = {repo}
            print("remote", pcall(sync.git, repo, {{remote = "--upload-pack=touch {pwned};", branch = "origin"}}))
            print("branch", pcall(sync.git, repo, {{branch = "--upload-pack=touch {pwned};"}}))
            print("fine", pcall(sync.git, repo))
            "#,
            repo = lua_str(&clone),
            pwned = pwned.display()
        ),
        &[],
    );
    assert!(
        !pwned.exists(),
        "a git remote became an option and ran a command\n{}\n{}",
        out.stdout,
        out.stderr
    );
    out.ok();
    assert!(
        out.stdout
            .contains("remote\tfalse\tsync.git(local): remote \"--upload-pack=touch")
            && out
                .stdout
                .contains("is not a remote name (it may not be empty or start with '-')"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("branch\tfalse\tsync.git(local): branch \"--upload-pack"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("fine\ttrue"), "{}", out.stdout);
}

#[test]
fn a_working_folder_starting_with_a_dash_is_a_folder_and_a_dash_host_is_refused() {
    // A job's folder is entered with `cd` in a shell (also on this machine): `cd -P` alone goes home.
    let env = Env::new("inject-cwd");
    std::fs::create_dir_all(env.dir.join("-P")).unwrap();
    let out = env.run_lua(
        "t.lua",
        r#"
        local j = ssh.spawn("local", {"pwd"}, {cwd = "-P"})
        j:wait()
        print("job", table.concat(j:tail(5), ","))
        "#,
        &[],
    );
    out.ok();
    assert!(
        out.stdout
            .contains(&format!("job\t{}\n", env.dir.join("-P").display())),
        "{}\n{}",
        out.stdout,
        out.stderr
    );

    // A destination ssh would read as an option is refused before any ssh runs.
    let pwned = env.dir.join("pwned");
    let evil = Env::new("inject-host").with_fleet(&format!(
        r#"return {{ hosts = {{ evil = {{ ssh = "-oProxyCommand=touch${{IFS}}{}" }} }} }}"#,
        pwned.display()
    ));
    let out = evil.run_lua("t.lua", r#"print(ssh.run("evil", "true").ok)"#, &[]);
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    assert!(
        out.stderr.contains("cannot start with '-'"),
        "{}",
        out.stderr
    );
    assert!(!pwned.exists());
}

#[test]
fn notify_command_gets_title_and_body_after_a_double_dash() {
    let env = Env::new("inject-notify");
    let log = env.dir.join("args.txt");
    let script = env.dir.write(
        "notify.sh",
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\" >>'{}'; done\n",
            log.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = env.with_fleet(&format!(
        r#"return {{ notify = {{ command = {{ "{}", "--quiet" }} }} }}"#,
        script.display()
    ));
    let out = env.run_lua(
        "t.lua",
        r#"baton.notify("--help", "-rf /", {check = true})"#,
        &[],
    );
    out.ok();
    // Options end before the user's text, so `notify-send`-like programs take both as text.
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "[--quiet][--][--help][-rf /]"
    );
}

/// The example tools served by `baton mcp serve`, driven by baton's own MCP client; `brain` is this
/// machine, `engine` an sshd host.
struct Served {
    env: Env,
    fleet: SshFleet,
}

impl Served {
    fn new(name: &str) -> Served {
        require("rsync");
        let fleet = SshFleet::start(1);
        let env = Env::new(name).with_fleet(&format!(
            "return {{ ssh_config = {:?}, hosts = {{ brain = {{ ssh = false }}, engine = {{ ssh = \"h0\" }} }} }}",
            fleet.ssh_config.display()
        ));
        Served { env, fleet }
    }

    fn home(&self) -> std::path::PathBuf {
        self.env.dir.join("home")
    }

    fn remote_home(&self) -> &Path {
        &self.fleet.hosts[0].home
    }

    /// Runs `body` with `h` connected to the served example tools and `call(name, args)` printing
    /// `name<TAB>is_error<TAB>text` (a raised error counts as an error result).
    fn run(&self, body: &str) -> crate::common::Out {
        let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tools.lua");
        let script = format!(
            r#"
            local h = mcp.connect({{command = {{ {bin:?}, "mcp", "serve", {tools:?} }}}})
            local function call(label, name, args)
              local ok, r = pcall(h.call, h, name, args)
              if ok then print(label, r.is_error, r.text) else print(label, true, r) end
            end
            {body}
            "#,
            bin = bin().display().to_string(),
            tools = tools.display().to_string(),
        );
        let out = self.env.run_lua("t.lua", &script, &[]);
        out.ok();
        out
    }
}

/// The lines of `out` for `label`, asserting each is an error result.
fn refused<'a>(stdout: &'a str, label: &str) -> &'a str {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{label}\t")))
        .unwrap_or_else(|| panic!("no {label} line in\n{stdout}"));
    assert!(
        line.starts_with(&format!("{label}\ttrue\t")),
        "{label} was not refused: {line}\n{stdout}"
    );
    line
}

#[test]
fn served_tools_cannot_run_a_command_or_read_any_file() {
    let s = Served::new("inject-tools-git");
    let home = s.home();
    let repo = home.join("src/repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "t@example.com"]);
    git(&repo, &["config", "user.name", "t"]);
    write(&repo, &[("f.txt", "1")]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first commit"]);
    let pwned = s.env.dir.join("pwned");
    let p = pwned.display().to_string();
    let out = s.run(&format!(
        r#"
        local repo = {repo:?}
        -- An argv pass-through is a shell: each of these ran `touch` through the old `run_on`.
        call("alias", "run_on", {{host = "brain", argv = {{"git", "-c", "alias.x=!touch {p}", "x"}}}})
        call("pager", "run_on", {{host = "brain", argv = {{"git", "-p", "-c", "core.pager=touch {p}", "log"}}}})
        call("exec-path", "run_on", {{host = "brain", argv = {{"git", "--exec-path=/nonexistent", "x"}}}})
        call("config-env", "run_on", {{host = "brain", argv = {{"git", "--config-env=alias.x=HOME", "x"}}}})
        call("C", "run_on", {{host = "brain", argv = {{"git", "-C", "/", "status"}}}})
        call("shadow", "run_on", {{host = "brain", argv = {{"tail", "/etc/shadow"}}}})
        call("passwd", "run_on", {{host = "brain", argv = {{"cat", "/etc/passwd"}}}})
        -- The same tricks in the arguments the typed git tools take: each is only a path, and not an allowed one.
        call("repo-alias", "git_log", {{host = "brain", repo = "-c alias.x=!touch {p}"}})
        call("repo-C", "git_status", {{host = "brain", repo = "-C"}})
        call("repo-root", "git_status", {{host = "brain", repo = "/"}})
        call("repo-etc", "git_diff", {{host = "brain", repo = "/etc"}})
        call("repo-exec", "git_status", {{host = "brain", repo = "--exec-path=/tmp"}})
        call("repo-up", "git_status", {{host = "brain", repo = repo .. "/../../.."}})
        call("count", "git_log", {{host = "brain", repo = repo, count = "1; touch {p}"}})
        -- A newline or an ESC in a path is still one path (that does not exist), never a second command line.
        call("repo-newline", "git_status", {{host = "brain", repo = repo .. "\ntouch {p}"}})
        call("repo-esc", "git_status", {{host = "brain", repo = "\27[2J" .. repo}})
        call("tail-shadow", "job_tail", {{id = "/etc/shadow"}})
        call("host", "git_status", {{host = "local", repo = repo}})
        -- What the tools are for still works.
        call("status", "git_status", {{host = "brain", repo = repo}})
        call("log", "git_log", {{host = "brain", repo = repo, count = 1}})
        "#,
        repo = repo.display().to_string(),
    ));
    let o = &out.stdout;
    assert!(!pwned.exists(), "a served tool ran a command\n{o}");
    for label in [
        "alias",
        "pager",
        "exec-path",
        "config-env",
        "C",
        "shadow",
        "passwd",
        "tail-shadow",
        "host",
    ] {
        let line = refused(o, label);
        assert!(!line.contains("root:"), "{line}");
    }
    for label in ["repo-alias", "repo-C", "repo-exec"] {
        assert!(refused(o, label).contains("cannot resolve"), "{o}");
    }
    for label in ["repo-newline", "repo-esc"] {
        let line = refused(o, label);
        assert!(
            !line.contains('\x1b'),
            "an ESC reached the answer raw: {line:?}"
        );
    }
    assert!(
        refused(o, "repo-newline").contains("\\ntouch"),
        "the newline is shown escaped, on the same line: {o}"
    );
    for label in ["repo-root", "repo-etc", "repo-up"] {
        assert!(
            refused(o, label).contains("is outside the allowed roots"),
            "{o}"
        );
    }
    assert!(
        refused(o, "count").contains("count must be an integer from 1 to 200"),
        "{o}"
    );
    assert!(o.contains("status\tfalse\t## main"), "{o}");
    assert!(
        o.contains("log\tfalse\t") && o.contains("first commit"),
        "{o}"
    );
}

#[test]
fn served_sync_tools_stay_inside_their_roots_through_links() {
    let s = Served::new("inject-tools-sync");
    let home = s.home();
    let rhome = s.remote_home().to_path_buf();
    // Here: a folder outside the root with a secret, a link into it, an empty outside folder with a link.
    let outside = s.env.dir.join("outside");
    write(&outside, &[("secret.txt", "local secret")]);
    let outside2 = s.env.dir.join("outside2");
    std::fs::create_dir_all(&outside2).unwrap();
    write(&home.join("src/proj"), &[("a.txt", "a")]);
    symlink(&outside, home.join("src/link")).unwrap();
    symlink(&outside2, home.join("src/outlink")).unwrap();
    symlink("/etc", home.join("src/proj/esc")).unwrap();
    symlink("a.txt", home.join("src/proj/inside")).unwrap();
    // On the host: the root, a folder in it, a secret outside it and a link to that.
    write(&rhome.join("src/data"), &[("d.txt", "d")]);
    write(&rhome.join("private"), &[("key.txt", "remote secret")]);
    symlink(rhome.join("private"), rhome.join("src/rlink")).unwrap();
    let out = s.run(&format!(
        r#"
        local home = {home:?}
        call("push-link", "sync_push", {{path = home .. "/src/link/", host = "engine", remote_path = "~/src/got"}})
        call("push-link-rel", "sync_push", {{path = "src/link", host = "engine", remote_path = "src/got"}})
        call("pull-outlink", "sync_pull", {{host = "engine", remote_path = "~/src/data", path = home .. "/src/outlink"}})
        call("pull-outlink-sub", "sync_pull", {{host = "engine", remote_path = "~/src/data", path = home .. "/src/outlink/new"}})
        call("pull-rlink", "sync_pull", {{host = "engine", remote_path = "~/src/rlink", path = home .. "/src/got"}})
        call("push-home", "sync_push", {{path = home .. "/src/proj", host = "engine", remote_path = "~/.ssh"}})
        call("push-up", "sync_push", {{path = home .. "/src/proj", host = "engine", remote_path = "~/src/../private"}})
        call("push-dash", "sync_push", {{path = "-esh -c 'touch x' #", host = "engine", remote_path = "~/src/x"}})
        call("push", "sync_push", {{path = home .. "/src/proj", host = "engine", remote_path = "~/src/proj"}})
        call("pull", "sync_pull", {{host = "engine", remote_path = "~/src/data", path = home .. "/src/data"}})
        "#,
        home = home.display().to_string(),
    ));
    let o = &out.stdout;
    for label in [
        "push-link",
        "push-link-rel",
        "pull-outlink",
        "pull-outlink-sub",
        "pull-rlink",
        "push-home",
        "push-up",
        "push-dash",
    ] {
        refused(o, label);
    }
    assert!(
        refused(o, "push-link").contains(&format!(
            "is outside the allowed roots (it is {})",
            outside.display()
        )),
        "{o}"
    );
    assert!(
        !rhome.join("src/got").exists(),
        "the outside folder was pushed"
    );
    assert!(
        std::fs::read_dir(&outside2).unwrap().next().is_none(),
        "a pull wrote outside the root"
    );
    assert!(
        !home.join("src/got").exists(),
        "the remote secret was pulled"
    );
    assert!(!rhome.join(".ssh/a.txt").exists());
    assert!(!rhome.join("private/a.txt").exists());
    // Inside the roots the tools work; a link out of the tree is not copied, one inside it is.
    assert!(o.contains("push\tfalse\t"), "{o}");
    assert!(o.contains("pull\tfalse\t"), "{o}");
    assert_eq!(
        std::fs::read_to_string(rhome.join("src/proj/a.txt")).unwrap(),
        "a"
    );
    assert!(
        std::fs::symlink_metadata(rhome.join("src/proj/esc")).is_err(),
        "a link out of the tree was copied"
    );
    assert_eq!(
        std::fs::read_link(rhome.join("src/proj/inside")).unwrap(),
        Path::new("a.txt")
    );
    assert_eq!(
        std::fs::read_to_string(home.join("src/data/d.txt")).unwrap(),
        "d"
    );
}
