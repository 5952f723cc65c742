//! Hostile peers that are not HTTP (the LLM ones are `Reply` modes in `llm/server.rs`): a TCP port that
//! accepts connections and never says a word, as a stuck sshd or a tarpit does.
use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Accepts on 127.0.0.1 and holds every connection open without sending anything (no SSH banner).
/// Runs on its own thread, so it serves whichever runtime (or none) the test uses; stops when dropped.
pub struct Mute {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Mute {
    pub fn start() -> Mute {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let mut held = Vec::new();
                let accept = async {
                    while let Ok((sock, _)) = listener.accept().await {
                        held.push(sock);
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Mute {
            addr: addr_rx.recv().expect("mute listener address"),
            stop: Some(stop),
        }
    }
}

impl Drop for Mute {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Remote text (a command's stderr) reaches error messages and the terminal escaped; `stdout` the script
/// asked for stays as it is.
#[test]
fn control_characters_in_errors_are_escaped() {
    let env = crate::common::Env::new("escape");
    let out = env.run_lua(
        "esc.lua",
        r#"
        local r = ssh.run("local", { "sh", "-c", "printf '\\033[2Jout'; printf '\\033]0;pwned\\007boom' >&2; exit 1" }, { check = false })
        print(r.stdout == "\27[2Jout", r.err)
        local ok, e = pcall(ssh.run, "local", { "sh", "-c", "printf '\\033[2Jboom' >&2; exit 3" })
        print(e)
        error("script says \27[31mred")
        "#,
        &[],
    );
    out.expect_code(1);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0], "true\texit 1: \\u{1b}]0;pwned\\u{7}boom",
        "{}",
        out.stdout
    );
    assert_eq!(
        lines[1], "ssh.run(local): exit 3: \\u{1b}[2Jboom",
        "{}",
        out.stdout
    );
    assert!(!out.stderr.contains('\u{1b}'), "{:?}", out.stderr);
    assert!(
        out.stderr.contains("script says \\u{1b}[31mred"),
        "{}",
        out.stderr
    );
}
