//! sync figures against a loopback sshd, in one run (`cargo bench --bench sync`):
//! - a no-change sync of a 20 000-file tree through `sync.push` vs plain `rsync -a` over an open ssh master
//!   (target ratio ≤ 1.10);
//! - a 200 MB first copy through `sync.push` vs plain `rsync -a` (target ≤ 1.05).
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{cmd_time, lua_time, report, sshd::SshFleet};

fn plain_rsync(socket: &Path, src: &Path, dst: &Path) -> Command {
    let mut cmd = Command::new("rsync");
    cmd.arg("-a")
        .arg("-e")
        .arg(format!(
            "ssh -F /dev/null -o BatchMode=yes -S {}",
            socket.display()
        ))
        .arg(format!("{}/", src.display()))
        .arg(format!("h0:{}/", dst.display()));
    cmd
}

fn push(src: &Path, dst: &Path) -> String {
    format!(
        "sync.push({:?}, {:?})",
        src.display().to_string(),
        format!("h0:{}", dst.display())
    )
}

fn main() {
    let fleet = SshFleet::start(1);
    let lua = support::runtime(&fleet);
    let work = fleet.dir.join("work");
    let home = fleet.hosts[0].home.clone();

    // 20 000 small files in 100 folders.
    let tree = work.join("tree");
    for d in 0..100 {
        let dir = tree.join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..200 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("file {d}/{f}\n")).unwrap();
        }
    }
    // 200 MB in 20 files of incompressible data.
    let bulk = work.join("bulk");
    std::fs::create_dir_all(&bulk).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..20 {
        let mut data = vec![0u8; 10 * 1024 * 1024];
        rng.fill(&mut data);
        std::fs::write(bulk.join(format!("blob{i:02}.bin")), data).unwrap();
    }
    let socket = fleet.dir.join("bench-master");
    support::open_master(&fleet, "h0", &socket);

    baton::lua::runtime::block_on(async {
        let (tree_baton, tree_plain) = (home.join("tree-baton"), home.join("tree-plain"));
        lua_time(&lua, &push(&tree, &tree_baton)).await;
        cmd_time(&mut plain_rsync(&socket, &tree, &tree_plain));
        let (mut nochange_baton, mut nochange_plain) = (Duration::MAX, Duration::MAX);
        for _ in 0..5 {
            nochange_plain =
                nochange_plain.min(cmd_time(&mut plain_rsync(&socket, &tree, &tree_plain)));
            nochange_baton = nochange_baton.min(lua_time(&lua, &push(&tree, &tree_baton)).await);
        }

        let (mut first_baton, mut first_plain) = (Duration::MAX, Duration::MAX);
        for round in 0..4 {
            let (b, p) = (
                home.join(format!("bulk-baton-{round}")),
                home.join(format!("bulk-plain-{round}")),
            );
            // Alternate which goes first, so neither always meets a page cache the other filled.
            if round % 2 == 0 {
                first_plain = first_plain.min(cmd_time(&mut plain_rsync(&socket, &bulk, &p)));
                first_baton = first_baton.min(lua_time(&lua, &push(&bulk, &b)).await);
            } else {
                first_baton = first_baton.min(lua_time(&lua, &push(&bulk, &b)).await);
                first_plain = first_plain.min(cmd_time(&mut plain_rsync(&socket, &bulk, &p)));
            }
            let _ = std::fs::remove_dir_all(&b);
            let _ = std::fs::remove_dir_all(&p);
        }

        println!("sync (loopback sshd, best of 5 / best of 4)");
        report(
            "rsync -a, no change, 20 000 files",
            nochange_plain,
            nochange_plain,
            None,
        );
        report(
            "sync.push, no change, 20 000 files",
            nochange_baton,
            nochange_plain,
            Some(1.10),
        );
        report(
            "rsync -a, first copy, 200 MB",
            first_plain,
            first_plain,
            None,
        );
        report(
            "sync.push, first copy, 200 MB",
            first_baton,
            first_plain,
            Some(1.05),
        );
    })
    .expect("tokio runtime");
    support::close_master(&fleet, "h0", &socket);
}
