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
