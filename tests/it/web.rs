//! `baton web` (issue 29) as a client sees it: the guard's rules over real HTTP (no token → 401,
//! cross-origin → 403, a foreign Host → 403), hostile clients, the buttons' POSTs against the state db,
//! `/api/` against the CLI's JSON, and the live log stream. The browser tests are in `web_browser`.
#![allow(dead_code)]
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, wait_for};

/// A `baton web` (or `baton daemon --web`) started by a test, killed when dropped.
pub struct Web {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub token: String,
    /// What it printed after the two start lines (read on a thread).
    pub rest: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Web {
    /// `baton ARGS…` (`web --listen 127.0.0.1:0 …` or `daemon FILE --web 127.0.0.1:0`) until it prints
    /// its login link.
    pub fn start(env: &Env, args: &[&str]) -> Web {
        let mut cmd = env.cmd();
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start baton web");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let rest = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = rest.clone();
        std::thread::spawn(move || {
            let mut found = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !found && let Some(at) = line.find("http://") {
                    let url = line[at..].split_whitespace().next().unwrap_or("").to_string();
                    if url.contains("?token=") {
                        found = true;
                        let _ = tx.send(url);
                        continue;
                    }
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("baton {args:?} printed no login link: {}", rest.lock().unwrap());
            }
        };
        let (base, token) = url.split_once("/?token=").unwrap();
        Web {
            child,
            base: base.to_string(),
            token: token.to_string(),
            rest,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` of the server.
    pub fn authority(&self) -> &str {
        self.base.trim_start_matches("http://")
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request with reqwest (no redirects followed, 30 s at most).
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut req = client.request(method.parse().unwrap(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap_or_default(),
        }
    })
}

pub fn get(url: &str) -> Reply {
    http("GET", url, &[], None)
}

/// A POST as the dashboard's own page sends it: the bearer token, its origin, asking for JSON.
pub fn post_as_page(web: &Web, path: &str, form: Option<&str>) -> Reply {
    let auth = format!("Bearer {}", web.token);
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("origin", web.base.as_str()),
        ("accept", "application/json"),
    ];
    if form.is_some() {
        headers.push(("content-type", "application/x-www-form-urlencoded"));
    }
    http("POST", &web.url(path), &headers, form)
}

/// The newest run's id (`baton runs --json`).
pub fn newest_run(env: &Env) -> String {
    let out = env.baton(&["runs", "--json", "--limit", "1"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v[0]["id"].as_str().unwrap_or_default().to_string()
}

/// A run's status (`baton runs show RUN --json`).
pub fn run_status(env: &Env, id: &str) -> String {
    let out = env.baton(&["runs", "show", id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    v["status"].as_str().unwrap_or_default().to_string()
}

/// Waits (at most `limit`) until run `id` has `status`.
#[track_caller]
pub fn wait_status(env: &Env, id: &str, status: &str, limit: Duration) {
    let start = Instant::now();
    wait_for(&format!("run {id} to be {status}"), limit, || {
        run_status(env, id) == status || start.elapsed() > limit
    });
    assert_eq!(run_status(env, id), status, "run {id}");
}
