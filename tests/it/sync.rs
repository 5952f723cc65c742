//! Integration tests: sync (rsync over the ssh harness's hosts, git with bare repos on disk), through the
//! real `baton` binary.
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{Env, Out, git, write};
use crate::sshd::{SshFleet, require};

/// A hash of a whole tree: every path, its kind and its content (`.baton-backup/` included).
fn tree_hash(root: &Path) -> u64 {
    fn walk(dir: &Path, root: &Path, h: &mut DefaultHasher) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            "missing".hash(h);
            return;
        };
        let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            p.strip_prefix(root).unwrap().hash(h);
            if p.is_dir() {
                walk(&p, root, h);
            } else {
                std::fs::read(&p).unwrap().hash(h);
            }
        }
    }
    let mut h = DefaultHasher::new();
    walk(root, root, &mut h);
    h.finish()
}

fn env(fleet: &SshFleet, name: &str) -> Env {
    require("rsync");
    Env::new(name).with_fleet(&fleet.fleet_lua())
}

fn lua(env: &Env, script: &str) -> Out {
    env.run_lua("t.lua", script, &[])
}

/// Prints `action path` for each change of a result, sorted, then the counters.
const SHOW: &str = r#"
local function show(r)
  local lines = {}
  for _, c in ipairs(r.changes) do lines[#lines + 1] = c.action .. " " .. c.path end
  table.sort(lines)
  print(table.concat(lines, ";"), r.files, r.dry_run)
end
"#;

#[test]
fn push_pull_itemized_changes_excludes_backups_and_dry_run() {
    let fleet = SshFleet::start(1);
    let env = env(&fleet, "sync-push");
    let src = env.dir.join("src");
    let dst = fleet.hosts[0].home.join("dst");
    write(
        &src,
        &[
            ("a.txt", "one"),
            ("dir/b.txt", "two"),
            ("node_modules/x.js", "x"),
            ("build/out.o", "o"),
            ("weights/model.pt", "big"),
            ("weights/keep.pt", "keep"),
            (".batonignore", "# deps\nnode_modules/\n"),
            (".stignore", "// syncthing\n!keep.pt\n*.pt\n"),
        ],
    );
    let script = |body: &str| {
        format!(
            "{SHOW}\nlocal src, dst = {:?}, \"h0:{}\"\n{body}",
            src.display().to_string(),
            dst.display()
        )
    };
    let out = lua(
        &env,
        &script(r#"show(sync.push(src, dst, {exclude = {"build/"}}))"#),
    );
    out.ok();
    assert_eq!(
        out.stdout,
        "create .batonignore;create .stignore;create a.txt;create dir/;create dir/b.txt;create weights/;create weights/keep.pt\t5\tfalse\n",
        "{}",
        out.stderr
    );
    assert!(
        !dst.join("node_modules").exists()
            && !dst.join("build").exists()
            && !dst.join("weights/model.pt").exists()
    );
    assert_eq!(
        std::fs::read_to_string(dst.join("weights/keep.pt")).unwrap(),
        "keep"
    );

    // Update, delete and create, with backups of what was replaced or deleted.
    write(&src, &[("a.txt", "one, edited"), ("c.txt", "three")]);
    std::fs::remove_file(src.join("dir/b.txt")).unwrap();
    let out = lua(
        &env,
        &script(r#"show(sync.push(src, dst, {delete = true, exclude = {"build/"}}))"#),
    );
    out.ok();
    assert_eq!(
        out.stdout, "create c.txt;delete dir/b.txt;update a.txt\t2\tfalse\n",
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dst.join("a.txt")).unwrap(),
        "one, edited"
    );
    let backups: Vec<PathBuf> = std::fs::read_dir(dst.join(".baton-backup"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read_to_string(backups[0].join("a.txt")).unwrap(),
        "one"
    );
    assert_eq!(
        std::fs::read_to_string(backups[0].join("dir/b.txt")).unwrap(),
        "two"
    );

    // A dry run reports and changes nothing.
    write(&src, &[("a.txt", "again"), ("d.txt", "four")]);
    std::fs::remove_file(src.join("c.txt")).unwrap();
    let (src_before, dst_before) = (tree_hash(&src), tree_hash(&dst));
    let out = lua(
        &env,
        &script(
            r#"show(sync.push(src, dst, {delete = true, dry_run = true, exclude = {"build/"}}))"#,
        ),
    );
    out.ok();
    assert_eq!(
        out.stdout, "create d.txt;delete c.txt;update a.txt\t2\ttrue\n",
        "{}",
        out.stderr
    );
    assert_eq!(
        (tree_hash(&src), tree_hash(&dst)),
        (src_before, dst_before),
        "a dry run changed something"
    );

    // Pull brings the host's tree back (without its backups), honouring the ignore files found on the host.
    write(
        &dst,
        &[("node_modules/y.js", "y"), ("weights/other.pt", "w")],
    );
    let back = env.dir.join("back");
    let out = lua(
        &env,
        &format!(
            "{SHOW}\nshow(sync.pull(\"h0:{}\", {:?}, {{checksum = true, compress = true}}))",
            dst.display(),
            back.display().to_string()
        ),
    );
    out.ok();
    assert!(
        out.stdout.contains("create a.txt") && out.stdout.contains("create c.txt"),
        "{}",
        out.stdout
    );
    assert!(!back.join(".baton-backup").exists());
    assert!(!back.join("node_modules").exists() && !back.join("weights/other.pt").exists());
    assert!(back.join("weights/keep.pt").exists());
    assert_eq!(
        std::fs::read_to_string(back.join("a.txt")).unwrap(),
        "one, edited"
    );
    // Progress reports arrive while a larger file is copied.
    let mut blob = vec![0u8; 32 * 1024 * 1024];
    fastrand::Rng::with_seed(1).fill(&mut blob);
    std::fs::write(src.join("blob.bin"), blob).unwrap();
    let out = lua(
        &env,
        &script(
            r#"local n, last = 0, nil
            sync.push(src, dst, {exclude = {"build/"}, on_progress = function(p) n = n + 1; last = p end})
            print(n > 0, last.percent >= 99, last.bytes >= 32 * 1024 * 1024, type(last.rate), type(last.eta))"#,
        ),
    );
    out.ok();
    assert_eq!(
        out.stdout, "true\ttrue\ttrue\tstring\tstring\n",
        "{}",
        out.stderr
    );
    // Misuse names the function and argument.
    let out = lua(
        &env,
        r#"print(select(2, pcall(sync.push, "/tmp", "nohost"))) print(select(2, pcall(sync.pull, "h0:/x", "/tmp", {dryrun = true})))"#,
    );
    assert_eq!(
        out.stdout,
        "sync.push: argument 2 (remote) must be a \"host:path\" string, got string \"nohost\"\n\
         sync.pull: options.dryrun: unknown key, did you mean dry_run?\n"
    );
}

#[test]
fn refusals_leave_both_trees_untouched() {
    let fleet = SshFleet::start(1);
    let env = env(&fleet, "sync-refuse");
    let home = fleet.hosts[0].home.clone();
    let dst = home.join("dst");
    write(
        &dst,
        &[("1", "1"), ("2", "2"), ("3", "3"), ("4", "4"), ("5", "5")],
    );
    let src = env.dir.join("src");
    write(&src, &[("keep", "k")]);
    let empty = env.dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let cases = [
        (
            format!(
                "{:?}, \"h0:{}\", {{delete = true}}",
                env.dir.join("missing").display().to_string(),
                dst.display()
            ),
            "is missing and destination",
        ),
        (
            format!(
                "{:?}, \"h0:{}\", {{delete = true}}",
                empty.display().to_string(),
                dst.display()
            ),
            "is empty and destination",
        ),
        (
            format!(
                "{:?}, \"h0:{}\", {{delete = true, max_delete = 3}}",
                src.display().to_string(),
                dst.display()
            ),
            "refusing to delete 5 files",
        ),
        (
            format!(
                "{:?}, \"h0:{}\", {{delete = true}}",
                src.display().to_string(),
                home.display()
            ),
            "it is / or the home folder itself",
        ),
        (
            format!(
                "{:?}, \"h0:/\", {{delete = true}}",
                src.display().to_string()
            ),
            "it is / or the home folder itself",
        ),
    ];
    let before = (tree_hash(&home), tree_hash(&src));
    for (args, expected) in cases {
        let out = lua(&env, &format!("print(select(2, pcall(sync.push, {args})))"));
        out.ok();
        assert!(
            out.stdout.starts_with("sync.push(h0): ") && out.stdout.contains(expected),
            "{args}: {}",
            out.stdout
        );
        assert_eq!(
            (tree_hash(&home), tree_hash(&src)),
            before,
            "{args} changed something"
        );
    }
    // Pulling into this machine's home folder with delete is refused too.
    let out = lua(
        &env,
        &format!(
            "print(select(2, pcall(sync.pull, \"h0:{}\", os.getenv(\"HOME\"), {{delete = true}})))",
            dst.display()
        ),
    );
    assert!(
        out.stdout.contains("it is / or the home folder itself"),
        "{}",
        out.stdout
    );
    // Within max_delete the same sync goes through.
    let out = lua(
        &env,
        &format!(
            "local r = sync.push({:?}, \"h0:{}\", {{delete = true, max_delete = 5}}) print(#r.changes)",
            src.display().to_string(),
            dst.display()
        ),
    );
    out.ok();
    assert_eq!(out.stdout, "6\n", "{}", out.stderr);
}

#[test]
fn hostile_names_and_a_large_tree() {
    let fleet = SshFleet::start(1);
    let env = env(&fleet, "sync-names");
    let src = env.dir.join("src dir 'quoted'");
    let names = [
        "a b.txt",
        "quote's \"x\".txt",
        "-rf",
        "naïve ünïcode 日本.txt",
        "new\nline",
        "$(touch pwned)",
        "back\\slash",
        "pipe|name",
    ];
    for n in names {
        write(&src, &[(n, n)]);
    }
    let dst = fleet.hosts[0].home.join("dst 'hostile' $(x)");
    let out = lua(
        &env,
        &format!(
            "local r = sync.push({:?}, {:?}) local p = {{}} for _, c in ipairs(r.changes) do p[#p + 1] = c.path end table.sort(p) print(#p, r.files) print(table.concat(p, '/'))",
            src.display().to_string(),
            format!("h0:{}", dst.display())
        ),
    );
    out.ok();
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort();
    assert_eq!(
        out.stdout,
        format!("{}\t{}\n{}\n", names.len(), names.len(), sorted.join("/")),
        "{}",
        out.stderr
    );
    for n in names {
        assert_eq!(std::fs::read_to_string(dst.join(n)).unwrap(), n);
    }
    assert!(!fleet.hosts[0].home.join("pwned").exists() && !dst.join("pwned").exists());

    // 50 000 files: all arrive, and a second sync finds nothing to do.
    let big = env.dir.join("big");
    for d in 0..100 {
        let dir = big.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            std::fs::write(dir.join(format!("f{f:03}")), format!("{d}/{f}")).unwrap();
        }
    }
    let bigdst = fleet.hosts[0].home.join("big");
    let script = format!(
        "local r = sync.push({:?}, \"h0:{}\") print(r.files, #r.changes)",
        big.display().to_string(),
        bigdst.display()
    );
    let out = lua(&env, &script);
    out.ok();
    assert_eq!(out.stdout, "50000\t50100\n", "{}", out.stderr);
    let out = lua(&env, &script);
    out.ok();
    assert_eq!(out.stdout, "0\t0\n", "{}", out.stderr);
    assert_eq!(tree_hash(&big), tree_hash(&bigdst));
}

/// A bare `origin` with one commit on `main`, and `n` clones with an identity configured.
fn repos(root: &Path, clones: &[&Path]) -> PathBuf {
    require("git");
    let origin = root.join("origin.git");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "--bare", "-b", "main"]);
    let seed = root.join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["config", "user.email", "seed@example.invalid"]);
    git(&seed, &["config", "user.name", "seed"]);
    write(&seed, &[("notes.txt", "line one\n")]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(
        &seed,
        &["remote", "add", "origin", origin.to_str().unwrap()],
    );
    git(&seed, &["push", "-q", "origin", "main"]);
    for clone in clones {
        let out = Command::new("git")
            .args(["clone", "-q"])
            .arg(&origin)
            .arg(clone)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        git(clone, &["config", "user.email", "test@example.invalid"]);
        git(clone, &["config", "user.name", "test"]);
    }
    origin
}

#[test]
fn git_fast_forward_commit_conflict_and_remote() {
    let fleet = SshFleet::start(1);
    let env = env(&fleet, "sync-git");
    let (a, b) = (env.dir.join("a"), env.dir.join("b"));
    let c = fleet.hosts[0].home.join("c");
    repos(env.dir.path(), &[&a, &b, &c]);
    let show = "local function show(r) print(r.committed, r.pulled, r.pushed, #r.head) end\n";
    // Clean tree, nothing to do.
    let out = lua(
        &env,
        &format!("{show}show(sync.git({:?}))", a.display().to_string()),
    );
    out.ok();
    assert_eq!(out.stdout, "false\tfalse\tfalse\t40\n", "{}", out.stderr);
    // Dirty tree: committed and pushed.
    write(&a, &[("new.txt", "from a\n")]);
    let out = lua(
        &env,
        &format!(
            "{show}show(sync.git({:?}, {{message = \"add new\"}}))",
            a.display().to_string()
        ),
    );
    out.ok();
    assert_eq!(out.stdout, "true\tfalse\ttrue\t40\n", "{}", out.stderr);
    // Without a message a dirty tree is refused.
    write(&b, &[("scratch.txt", "x")]);
    let out = lua(
        &env,
        &format!(
            "print(select(2, pcall(sync.git, {:?})))",
            b.display().to_string()
        ),
    );
    assert!(
        out.stdout.contains("uncommitted changes (pass message"),
        "{}",
        out.stdout
    );
    std::fs::remove_file(b.join("scratch.txt")).unwrap();
    // Fast-forward in b.
    let out = lua(
        &env,
        &format!("{show}show(sync.git({:?}))", b.display().to_string()),
    );
    out.ok();
    assert_eq!(out.stdout, "false\ttrue\tfalse\t40\n", "{}", out.stderr);
    assert_eq!(
        git(&b, &["rev-parse", "HEAD"]),
        git(&a, &["rev-parse", "HEAD"])
    );
    // The same steps on a fleet host over ssh.
    let out = lua(
        &env,
        &format!(
            "{show}show(sync.git_remote(\"h0\", {:?}))",
            c.display().to_string()
        ),
    );
    out.ok();
    assert_eq!(out.stdout, "false\ttrue\tfalse\t40\n", "{}", out.stderr);
    assert!(c.join("new.txt").exists());

    // A real conflict: both edit line one.
    write(&a, &[("notes.txt", "line one by a\n")]);
    lua(
        &env,
        &format!(
            "sync.git({:?}, {{message = \"a edits\"}})",
            a.display().to_string()
        ),
    )
    .ok();
    write(
        &b,
        &[
            ("notes.txt", "line one by b\n"),
            ("other.txt", "b's other work\n"),
        ],
    );
    let out = lua(
        &env,
        &format!(
            "print(select(2, pcall(sync.git, {:?}, {{message = \"b edits\"}})))",
            b.display().to_string()
        ),
    );
    out.ok();
    assert!(
        out.stdout.starts_with("sync.git(local): committed as ")
            && out.stdout.contains(
                ", not pushed: origin/main has a conflicting change in notes.txt (rebase aborted"
            ),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_to_string(b.join("notes.txt")).unwrap(),
        "line one by b\n"
    );
    assert_eq!(
        std::fs::read_to_string(b.join("other.txt")).unwrap(),
        "b's other work\n"
    );
    assert_eq!(git(&b, &["log", "-1", "--format=%s"]), "b edits");
    assert_eq!(git(&b, &["status", "--porcelain"]), "");
    assert!(!b.join(".git/rebase-merge").exists() && !b.join(".git/rebase-apply").exists());
}

/// Pushes that replace some files and delete others, all backed up, several at a time: rsync's generator
/// (backing up what it deletes) once raced its receiver (backing up what it replaces) to create the backup
/// folder, and the push failed with "make_backup failed: File exists" (before the fix, with two busy CPUs,
/// two runs in three failed here). Every push must succeed and keep every backup.
#[test]
fn delete_with_backups_never_races() {
    const PUSHES: usize = 24;
    const FILES: usize = 20;
    let fleet = SshFleet::start(1);
    let env = env(&fleet, "sync-backup-race");
    for p in 0..PUSHES {
        let (src, dst) = (
            env.dir.join(format!("src{p}")),
            fleet.hosts[0].home.join(format!("dst{p}")),
        );
        for k in 0..FILES {
            write(&src, &[(format!("f{k}.txt").as_str(), "one, edited")]);
            std::fs::create_dir_all(src.join(format!("d{k}"))).unwrap();
            write(
                &dst,
                &[
                    (format!("f{k}.txt").as_str(), "one"),
                    (format!("d{k}/b.txt").as_str(), "b"),
                ],
            );
        }
    }
    let out = lua(
        &env,
        &format!(
            r#"
            local jobs = {{}}
            for p = 0, {PUSHES} - 1 do
              jobs[#jobs + 1] = function()
                return sync.push({:?} .. "/src" .. p, "h0:" .. {:?} .. "/dst" .. p, {{delete = true}})
              end
            end
            local results = baton.gather(jobs, {{check = false, limit = 8}})
            for p, r in ipairs(results) do
              print(p - 1, r.ok, r.ok and #r.value.changes or r.err)
            end"#,
            env.dir.path().display().to_string(),
            fleet.hosts[0].home.display().to_string()
        ),
    );
    out.ok();
    let expected: String = (0..PUSHES)
        .map(|p| format!("{p}\ttrue\t{}\n", 2 * FILES))
        .collect();
    assert_eq!(out.stdout, expected, "{}", out.stderr);
    for p in 0..PUSHES {
        let dst = fleet.hosts[0].home.join(format!("dst{p}"));
        let backups: Vec<PathBuf> = std::fs::read_dir(dst.join(".baton-backup"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(backups.len(), 1, "push {p}");
        for k in 0..FILES {
            assert_eq!(
                std::fs::read_to_string(backups[0].join(format!("f{k}.txt"))).unwrap(),
                "one"
            );
            assert_eq!(
                std::fs::read_to_string(backups[0].join(format!("d{k}/b.txt"))).unwrap(),
                "b"
            );
        }
    }
}
