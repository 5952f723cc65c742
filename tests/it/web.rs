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
                let words: Vec<&str> = line
                    .split_whitespace()
                    .map(|w| w.trim_end_matches(')'))
                    .collect();
                // `baton web` prints the link; the daemon writes it to a private file it names.
                let from_file = words
                    .iter()
                    .find(|w| w.ends_with("web-login.url"))
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .map(|t| t.trim().to_string());
                let link = words
                    .iter()
                    .find(|w| w.starts_with("http://") && w.contains("/?token="))
                    .map(|w| w.to_string())
                    .or(from_file);
                if !found && let Some(url) = link {
                    found = true;
                    // The daemon's stderr (a log) never carries the token.
                    assert!(
                        !(line.contains("web-login.url") && line.contains("token=")),
                        "a daemon printed its token: {line}"
                    );
                    let _ = tx.send(url);
                    continue;
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "baton {args:?} printed no login link: {}",
                    rest.lock().unwrap()
                );
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
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request with reqwest (no redirects followed, 30 s at most).
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = baton::core::http::builder(Duration::from_secs(10))
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
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
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

/// What run `id` printed (`baton runs show RUN --log`).
pub fn run_log(env: &Env, id: &str) -> String {
    env.baton(&["runs", "show", id, "--log"])
        .ok()
        .stdout
        .clone()
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

// ------------------------------------------------------------------------------------------ the guard

#[test]
fn no_token_is_401_cross_origin_is_403_a_foreign_host_is_403() {
    let env = Env::new("web-guard");
    let web = Web::start(&env, &["web", "--listen", "127.0.0.1:0"]);
    // Reads on loopback are open, as the CLI is to a local user.
    let page = get(&web.url("/"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"fleet\"") && page.body.contains("id=\"spend\""));
    assert_eq!(get(&web.url("/api/runs")).json(), serde_json::json!([]));
    // A page or an answer never carries the token.
    for path in [
        "/",
        "/runs",
        "/spend",
        "/api/fleet",
        "/api/schedule",
        "/api/spend",
        "/api/jobs",
    ] {
        let r = get(&web.url(path));
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(!r.body.contains(&web.token), "{path} shows the token");
    }
    // DNS rebinding: another name for 127.0.0.1 is refused, for reads and actions.
    let foreign = format!(
        "rebind.example:{}",
        web.authority().rsplit(':').next().unwrap()
    );
    let r = http("GET", &web.url("/api/runs"), &[("host", &foreign)], None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("Host header refused"), "{}", r.body);
    // An action without the token: 401, nothing done.
    let env_run = env.run_lua("p.lua", "baton.approve('go?')\nprint('went')", &[]);
    env_run.ok();
    let id = newest_run(&env);
    assert_eq!(run_status(&env, &id), "paused");
    let r = http("POST", &web.url(&format!("/runs/{id}/cancel")), &[], None);
    assert_eq!(r.status, 401, "{}", r.body);
    let wrong = http(
        "POST",
        &web.url(&format!("/runs/{id}/cancel")),
        &[("authorization", "Bearer not-the-token")],
        None,
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    // With the token but from another origin (a page elsewhere posting a form): 403.
    let auth = format!("Bearer {}", web.token);
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = http(
            "POST",
            &web.url(&format!("/runs/{id}/cancel")),
            &[("authorization", &auth), (name, value)],
            None,
        );
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.body);
    }
    assert_eq!(
        run_status(&env, &id),
        "paused",
        "a refused action changed nothing"
    );
    // The same action from the page's own origin is done.
    let r = post_as_page(&web, &format!("/runs/{id}/cancel"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["cancelled"], id.as_str());
    assert_eq!(run_status(&env, &id), "cancelled");
}

#[test]
fn the_login_link_sets_an_http_only_cookie_and_drops_the_token_from_the_address() {
    let env = Env::new("web-login");
    let web = Web::start(&env, &["web", "--listen", "127.0.0.1:0"]);
    let r = get(&web.url(&format!("/runs?token={}", web.token)));
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.headers["location"], "/runs");
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    assert!(pair.ends_with(&web.token), "{pair}");
    // A wrong token in a link is refused, and sets nothing.
    let bad = get(&web.url("/?token=guess"));
    assert_eq!(bad.status, 401);
    assert!(!bad.headers.contains_key("set-cookie"));
    // The cookie is the token for actions: a form post from the page.
    env.run_lua("p.lua", "baton.approve('go?')", &[]).ok();
    let id = newest_run(&env);
    let origin = web.base.clone();
    let r = http(
        "POST",
        &web.url(&format!("/runs/{id}/cancel")),
        &[("cookie", &pair), ("origin", &origin)],
        None,
    );
    // A form gets a redirect back to the run's page.
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.headers["location"], format!("/runs/{id}").as_str());
    assert_eq!(run_status(&env, &id), "cancelled");
}

#[test]
fn beyond_loopback_a_token_must_be_configured_and_reads_need_it() {
    let env = Env::new("web-public");
    let refused = env.baton(&["web", "--listen", "0.0.0.0:0"]);
    refused.expect_code(1);
    assert!(
        refused
            .stderr
            .contains("beyond loopback and no token is configured"),
        "{}",
        refused.stderr
    );
    // The fleet names an environment variable that is not set: said so.
    let env = env.with_fleet("return { web = { token_env = 'BATON_TEST_WEB_TOKEN' } }");
    let unset = env.baton(&["web", "--listen", "0.0.0.0:0"]);
    unset.expect_code(1);
    assert!(
        unset
            .stderr
            .contains("web.token_env names BATON_TEST_WEB_TOKEN, which is not set"),
        "{}",
        unset.stderr
    );
    let env = env.var("BATON_TEST_WEB_TOKEN", "fleet-token-123");
    let web = Web::start(&env, &["web", "--listen", "0.0.0.0:0"]);
    assert_eq!(web.token, "fleet-token-123");
    let port = web.authority().rsplit(':').next().unwrap().to_string();
    let url = format!("http://127.0.0.1:{port}/api/runs");
    let r = get(&url);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = get(&format!("http://127.0.0.1:{port}/"));
    assert_eq!(r.status, 401, "{}", r.body);
    let r = http(
        "GET",
        &url,
        &[("authorization", "Bearer fleet-token-123")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        !get(&format!("http://127.0.0.1:{port}/api/fleet"))
            .body
            .contains("fleet-token-123")
    );
}

// ------------------------------------------------------------------------------------- hostile clients

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn lines_of(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

#[test]
fn idle_connections_huge_bodies_and_endless_headers_neither_stall_the_schedule_nor_grow_memory() {
    use std::io::{Read, Write};
    let env = Env::new("web-hostile");
    let ticks = env.dir.join("ticks.txt");
    let schedule = env.dir.write(
        "schedule.lua",
        format!(
            r#"schedule.cron("tick", "* * * * * *", function()
                 local f = assert(io.open({:?}, "a")) f:write("tick\n") f:close()
               end)"#,
            ticks.display()
        ),
    );
    let web = Web::start(
        &env,
        &["daemon", schedule.to_str().unwrap(), "--web", "127.0.0.1:0"],
    );
    wait_for("the job to tick", Duration::from_secs(30), || {
        lines_of(&ticks) >= 2
    });
    let addr = web.authority().to_string();
    let before = rss_kib(web.child.id());

    // 1 000 connections that never send a byte: more than the server serves at once (256) and than its
    // backlog holds, so the later ones wait for a free place (a short connect timeout skips those).
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let idle: Vec<std::net::TcpStream> = (0..1000)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(100)).ok()
        })
        .collect();
    assert!(idle.len() > 300, "only {} connections opened", idle.len());
    let n = lines_of(&ticks);
    wait_for(
        "the schedule to go on while 1 000 idle connections are held",
        Duration::from_secs(30),
        || lines_of(&ticks) >= n + 3,
    );
    drop(idle);

    // A 100 MB body: refused without reading it (no token), and with the token cut at the bound (413).
    let huge = |auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /runs/x/approve HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        // The server may answer and close before it all went: a write error then is expected.
        for _ in 0..100 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let r = huge(None);
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = huge(Some(&web.token));
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");

    // Headers that never end: the connection is closed (5 s), not held for ever.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    slow.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        if slow.write_all(b"X-Drip: 1\r\n").is_err() {
            break;
        }
        slow.set_nonblocking(true).unwrap();
        let read = slow.read(&mut buf);
        slow.set_nonblocking(false).unwrap();
        if read.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "a dripping request was held 40 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let after = rss_kib(web.child.id());
    assert!(
        after < before + 64 * 1024,
        "the daemon grew from {before} KiB to {after} KiB"
    );
    // Still serving, still ticking.
    wait_for("the page to answer again", Duration::from_secs(30), || {
        get(&web.url("/api/runs")).status == 200
    });
    let n = lines_of(&ticks);
    wait_for("another tick", Duration::from_secs(30), || {
        lines_of(&ticks) > n
    });
}

// -------------------------------------------------------------------------------------------- buttons

#[test]
fn approve_from_the_page_resumes_the_run_in_the_background_and_deny_says_no() {
    let env = Env::new("web-approve");
    let web = Web::start(&env, &["web", "--listen", "127.0.0.1:0"]);
    let book = "local ok, answer = baton.approve('deploy?')\nprint('answered', ok, answer)";
    env.run_lua("deploy.lua", book, &[]).ok();
    let id = newest_run(&env);
    // The run's page asks, with both forms.
    let page = get(&web.url(&format!("/runs/{id}")));
    assert!(page.body.contains("deploy?"), "{}", page.body);
    assert!(
        page.body
            .contains(&format!("action=\"/runs/{id}/approve\""))
    );
    assert!(page.body.contains(&format!("action=\"/runs/{id}/deny\"")));
    let api = get(&web.url(&format!("/api/runs/{id}"))).json();
    assert_eq!(api["run"]["question"], "deploy?");
    assert_eq!(api["run"]["status"], "paused");

    let r = post_as_page(&web, &format!("/runs/{id}/approve"), Some("text=ship+it"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["resumed"], true);
    wait_status(&env, &id, "ok", Duration::from_secs(60));
    let log = run_log(&env, &id);
    assert!(log.contains("answered\ttrue\tship it"), "{log}");
    // Answering again: the run no longer waits (409), and says why.
    let again = post_as_page(&web, &format!("/runs/{id}/approve"), None);
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(
        again.json()["error"]
            .as_str()
            .unwrap()
            .contains("is not waiting for an answer (it is ok)"),
        "{}",
        again.body
    );

    env.run_lua("deploy.lua", book, &[]).ok();
    let id2 = newest_run(&env);
    assert_ne!(id, id2);
    // A bare POST (no body, as curl -X POST sends) answers without a text.
    let r = post_as_page(&web, &format!("/runs/{id2}/deny"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    wait_status(&env, &id2, "ok", Duration::from_secs(60));
    let log = run_log(&env, &id2);
    assert!(log.contains("answered\tfalse\tnil"), "{log}");
    // Unknown runs: 404, named.
    let r = post_as_page(&web, "/runs/nosuch/approve", None);
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("no run \\\"nosuch\\\""), "{}", r.body);
}

#[test]
fn resume_and_cancel_from_the_page_call_the_same_rules_as_the_cli() {
    let env = Env::new("web-resume");
    let web = Web::start(&env, &["web", "--listen", "127.0.0.1:0"]);
    let flag = env.dir.join("second-time");
    let book = format!(
        "baton.step('first', function() print('first step') end)\n\
         local f = io.open({flag:?}) if not f then io.open({flag:?}, 'w'):close() error('not yet', 0) end\n\
         print('done')",
        flag = flag.display().to_string()
    );
    env.run_lua("flaky.lua", &book, &[]).expect_code(1);
    let id = newest_run(&env);
    assert_eq!(run_status(&env, &id), "failed");
    let page = get(&web.url(&format!("/runs/{id}")));
    assert!(page.body.contains(&format!("action=\"/runs/{id}/resume\"")));
    let r = post_as_page(&web, &format!("/runs/{id}/resume"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    wait_status(&env, &id, "ok", Duration::from_secs(60));
    let log = run_log(&env, &id);
    // The finished step was not run again.
    assert_eq!(log.matches("first step").count(), 1, "{log}");
    assert!(log.contains("done"), "{log}");
    // A finished run cannot be resumed or cancelled: 409 with the CLI's words.
    let r = post_as_page(&web, &format!("/runs/{id}/resume"), None);
    assert_eq!(r.status, 409);
    assert!(
        r.body.contains("finished ok; there is nothing to resume"),
        "{}",
        r.body
    );
    let r = post_as_page(&web, &format!("/runs/{id}/cancel"), None);
    assert_eq!(r.status, 409);
    assert!(
        r.body.contains("only a paused, interrupted or failed run"),
        "{}",
        r.body
    );
}

#[test]
fn cancel_stops_a_running_run_from_the_page_and_from_the_cli() {
    let env = Env::new("web-cancel");
    let web = Web::start(&env, &["web", "--listen", "127.0.0.1:0"]);
    let marker = env.dir.join("started");
    let book = format!(
        "baton.exec({{'touch', {m:?}}})\nwhile true do baton.sleep(0.05) end",
        m = marker.display().to_string()
    );
    let path = env.dir.write("forever.lua", book);
    for via_page in [true, false] {
        let _ = std::fs::remove_file(&marker);
        let mut cmd = env.cmd();
        cmd.args(["run", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        wait_for("the run to start", Duration::from_secs(30), || {
            marker.exists()
        });
        let id = newest_run(&env);
        assert_eq!(run_status(&env, &id), "running");
        if via_page {
            let r = post_as_page(&web, &format!("/runs/{id}/cancel"), None);
            assert_eq!(r.status, 200, "{}", r.body);
        } else {
            let out = env.baton(&["runs", "cancel", &id]);
            out.ok();
            assert!(
                out.stdout.contains("cancelled (its process"),
                "{}",
                out.stdout
            );
        }
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the run was not stopped"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success());
        assert_eq!(run_status(&env, &id), "cancelled");
    }
}

#[test]
fn run_now_starts_the_job_as_schedule_run_does_and_unknown_names_are_404() {
    let env = Env::new("web-run-now");
    env.dir.write("hello.lua", "print('hello from the job')");
    let schedule = env.dir.write(
        "schedule.lua",
        r#"schedule.cron("hello", "0 3 * * *", "hello.lua")"#,
    );
    let web = Web::start(
        &env,
        &[
            "web",
            "--listen",
            "127.0.0.1:0",
            "--schedule",
            schedule.to_str().unwrap(),
        ],
    );
    let s = get(&web.url("/api/schedule")).json();
    assert_eq!(s["jobs"][0]["name"], "hello");
    assert_eq!(s["jobs"][0]["cron"], "0 3 * * *");
    assert_eq!(s["jobs"][0]["state"], "new");
    assert!(s["jobs"][0]["next"].as_i64().unwrap() > chrono::Utc::now().timestamp());
    let r = post_as_page(&web, "/schedule/hello/run", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let history = || -> serde_json::Value {
        serde_json::from_str(&env.baton(&["schedule", "history", "--json"]).ok().stdout).unwrap()
    };
    wait_for("the job's run to end", Duration::from_secs(60), || {
        history()[0]["outcome"] == "ok"
    });
    let h = history();
    assert_eq!(h[0]["job"], "hello");
    assert_eq!(h[0]["manual"], true);
    let log = std::fs::read_to_string(h[0]["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("hello from the job"), "{log}");
    let s = get(&web.url("/api/schedule")).json();
    assert_eq!(s["jobs"][0]["state"], "up");
    assert_eq!(s["jobs"][0]["last"]["outcome"], "ok");
    assert_eq!(s["jobs"][0]["last"]["manual"], true);
    let r = post_as_page(&web, "/schedule/nosuch/run", None);
    assert_eq!(r.status, 404, "{}", r.body);
    // A host that is not in the fleet, or has no MAC: 404 and 409.
    let r = post_as_page(&web, "/hosts/nosuch/wake", None);
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post_as_page(&web, "/hosts/local/wake", None);
    assert_eq!(r.status, 409, "{}", r.body);
}

// ------------------------------------------------------------------------------------ data and streams

/// An in-test Ollama answering "fine" (40 tokens in, 6 out) on a thread of its own, so sync tests can use
/// it; it lives until the test process ends.
fn ollama_stub() -> String {
    use crate::llm::server::{self, Reply as Answer, Stub};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let stub = Stub::start(|_, _| {
                Answer::ndjson(server::ollama_chat("qwen", &["fine"], 40, 6), 16)
            })
            .await;
            tx.send(stub.url.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// A fleet whose local tier is the stub, priced so each answer costs something, with a $100 budget.
fn priced_fleet(url: &str) -> String {
    format!(
        "return {{\n  hosts = {{ engine = {{ ssh = false, ollama = {url:?} }} }},\n  \
         tiers = {{ {{ name = 'local', provider = 'ollama', host = 'engine', \
         models = {{ code = 'qwen', reason = 'qwen' }}, price = {{ input = 1000, output = 2000 }} }} }},\n  \
         budget = {{ monthly_usd = 100 }},\n}}\n"
    )
}

fn cli_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let out = env.baton(args);
    out.ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out.stdout))
}

#[test]
fn api_answers_are_the_state_the_cli_shows() {
    let url = ollama_stub();
    let env = Env::new("web-api").with_fleet(&priced_fleet(&url));
    env.baton(&["ask", "code", "hello"]).ok();
    env.run_lua(
        "two.lua",
        "print(route.ask('code', 'x').text)\nbaton.exec({'true'})",
        &[],
    )
    .ok();
    let web = Web::start(&env, &["web", "--listen", "127.0.0.1:0"]);

    let cli = cli_json(&env, &["runs", "--json"]);
    let api = get(&web.url("/api/runs")).json();
    let pick = |v: &serde_json::Value| -> Vec<(String, String, String, i64)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["status"].as_str().unwrap().to_string(),
                    r["trigger"].as_str().unwrap().to_string(),
                    (r["cost"].as_f64().unwrap() * 1e9).round() as i64,
                )
            })
            .collect()
    };
    assert_eq!(pick(&api), pick(&cli));
    assert_eq!(api.as_array().unwrap().len(), 2);
    assert!(api[0]["cost"].as_f64().unwrap() > 0.0, "{api}");
    let id = api[0]["id"].as_str().unwrap();
    let one = get(&web.url(&format!("/api/runs/{id}"))).json();
    let shown = cli_json(&env, &["runs", "show", id, "--json"]);
    let kinds = |steps: &serde_json::Value| -> Vec<String> {
        steps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {} {}", s["pos"], s["kind"], s["outcome"]))
            .collect()
    };
    assert_eq!(kinds(&one["steps"]), kinds(&shown["steps"]));
    assert_eq!(one["steps"].as_array().unwrap().len(), 2);
    let filtered = get(&web.url("/api/runs?status=failed")).json();
    assert_eq!(filtered, serde_json::json!([]));
    let bad = get(&web.url("/api/runs?status=sleepy"));
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("got \\\"sleepy\\\""), "{}", bad.body);

    for by in ["tier", "model", "task", "script"] {
        let cli = cli_json(&env, &["spend", "--json", "--by", by]);
        let api = get(&web.url(&format!("/api/spend?by={by}"))).json();
        assert_eq!(api["rows"], cli["rows"], "by {by}");
        assert_eq!(api["ledger"], cli["ledger"], "by {by}");
        assert_eq!(api["days"], cli["days"], "by {by}");
    }
    // The spend page draws today's bar with the month's amount.
    let page = get(&web.url("/spend"));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let spent = cli_json(&env, &["spend", "--json"])["ledger"]["spent"]
        .as_f64()
        .unwrap();
    assert!(spent > 0.0);
    assert!(
        page.body.contains(&format!("<title>{today}: $")),
        "{}",
        page.body
    );
    assert!(page.body.contains("class=\"bar\""), "{}", page.body);

    // The fleet as the probe saw it: engine has no ssh, so it is this machine's process answering.
    wait_for("the first probe", Duration::from_secs(60), || {
        get(&web.url("/api/fleet")).json()["probed_at"].is_number()
    });
    let fleet = get(&web.url("/api/fleet")).json();
    let engine = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "engine")
        .cloned()
        .unwrap_or_else(|| panic!("{fleet}"));
    assert_eq!(engine["online"], true, "{fleet}");
    assert!(engine["last_seen"].is_number(), "{fleet}");
    assert_eq!(engine["ollama_models"], serde_json::json!([]), "{fleet}");
}

#[test]
fn a_runs_log_reaches_the_page_as_it_is_printed() {
    use futures_util::StreamExt;
    let env = Env::new("web-live");
    let web = Web::start(&env, &["web", "--listen", "127.0.0.1:0"]);
    let go = env.dir.join("go");
    let book = format!(
        "print('line one')\nbaton.exec({{'true'}})\n\
         while not io.open({go:?}) do baton.sleep(0.02) end\n\
         print('line two')\nprint('line three')",
        go = go.display().to_string()
    );
    let path = env.dir.write("live.lua", book);
    let mut cmd = env.cmd();
    cmd.args(["run", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    wait_for("the run to be recorded", Duration::from_secs(30), || {
        !newest_run(&env).is_empty()
    });
    let id = newest_run(&env);
    let url = web.url(&format!("/runs/{id}/log?from=0"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (text, statuses) = rt.block_on(async {
        let client = baton::core::http::builder(Duration::from_secs(10))
            .build()
            .unwrap();
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.bytes_stream();
        let (mut raw, mut text, mut statuses) = (String::new(), String::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
            raw.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = raw.find("\n\n") {
                let event: String = raw.drain(..end + 2).collect();
                let kind = event
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or("");
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or("");
                match kind {
                    "log" => {
                        let d: serde_json::Value = serde_json::from_str(data).unwrap();
                        text.push_str(d["text"].as_str().unwrap());
                        // `to` is where a page that reconnects goes on: the bytes seen so far.
                        assert_eq!(d["to"].as_u64().unwrap(), text.len() as u64);
                        // The page has the first line while the run still waits: then let it go on.
                        if text.contains("line one") && !go.exists() {
                            std::fs::write(&go, "").unwrap();
                        }
                    }
                    "status" => statuses.push(data.to_string()),
                    _ => {}
                }
            }
        }
        (text, statuses)
    });
    let _ = child.wait();
    assert_eq!(text, "line one\nline two\nline three\n");
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("ok"),
        "{statuses:?}"
    );
}

#[test]
fn the_daemon_serves_the_page_and_resumes_its_own_answered_runs() {
    let env = Env::new("web-daemon");
    env.dir.write(
        "ask.lua",
        "local ok, why = baton.approve('restart the server?')\nprint('decided', ok, why)",
    );
    let schedule = env.dir.write(
        "schedule.lua",
        r#"schedule.cron("ask", "0 3 * * *", "ask.lua")"#,
    );
    // A scheduled run, paused on its question (run by hand as the daemon would).
    env.baton(&[
        "schedule",
        "run",
        "ask",
        schedule.to_str().unwrap(),
        "--quiet",
    ]);
    let id = newest_run(&env);
    assert_eq!(run_status(&env, &id), "paused");
    let web = Web::start(
        &env,
        &["daemon", schedule.to_str().unwrap(), "--web", "127.0.0.1:0"],
    );
    // The login link is in a private file, not in the daemon's log.
    use std::os::unix::fs::PermissionsExt;
    let link = env.state_dir().join("web-login.url");
    let mode = std::fs::metadata(&link).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", link.display());
    assert!(!web.rest.lock().unwrap().contains(&web.token));
    let s = get(&web.url("/api/schedule")).json();
    assert_eq!(s["jobs"][0]["name"], "ask", "{s}");
    let r = post_as_page(&web, &format!("/runs/{id}/approve"), Some("text=yes"));
    assert_eq!(r.status, 200, "{}", r.body);
    // The daemon resumes its scheduled runs itself: the page does not start a second resume.
    assert_eq!(r.json()["resumed"], false);
    wait_status(&env, &id, "ok", Duration::from_secs(60));
    let log = run_log(&env, &id);
    assert_eq!(log.matches("decided\ttrue\tyes").count(), 1, "{log}");
    assert!(
        web.rest
            .lock()
            .unwrap()
            .contains(&format!("resuming answered run {id}")),
        "{}",
        web.rest.lock().unwrap()
    );
}

#[test]
fn a_detached_jobs_page_shows_its_attach_command_and_its_log_tail_live() {
    use futures_util::StreamExt;
    crate::sshd::require("tmux");
    let fleet = crate::sshd::SshFleet::start(1);
    let env = Env::new("web-jobs").with_fleet(&format!(
        r#"return {{ ssh_config = {:?}, hosts = {{ h0 = {{}} }} }}"#,
        fleet.ssh_config.display()
    ));
    let go = env.dir.join("go");
    let out = env.run_lua(
        "j.lua",
        &format!(
            "local j = ssh.spawn('h0', 'echo first; {wait}; echo second; sleep 30', {{ tmux = true, title = 'training' }})\nprint(j.id)",
            wait = crate::common::sh_wait_file(&go)
        ),
        &[],
    );
    out.ok();
    let id = out.stdout.trim().to_string();
    let web = Web::start(&env, &["web", "--listen", "127.0.0.1:0"]);
    let jobs = get(&web.url("/api/jobs")).json();
    assert_eq!(jobs[0]["id"], id.as_str(), "{jobs}");
    assert_eq!(jobs[0]["host"], "h0");
    assert_eq!(jobs[0]["title"], "training");
    assert_eq!(jobs[0]["state"], "running");
    let attach = jobs[0]["attach"].as_str().unwrap().to_string();
    let cli = env.baton(&["jobs", "attach", &id, "--print"]);
    assert_eq!(attach, cli.ok().stdout.trim());
    let page = get(&web.url(&format!("/jobs/{id}")));
    assert!(
        page.body.contains("training") && page.body.contains("id=\"tail\""),
        "{}",
        page.body
    );
    let dashboard = get(&web.url("/"));
    assert!(
        dashboard.body.contains(&format!("href=\"/jobs/{id}\"")),
        "{}",
        dashboard.body
    );

    let url = web.url(&format!("/jobs/{id}/log"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let tails = rt.block_on(async {
        let client = baton::core::http::builder(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut body = client.get(&url).send().await.unwrap().bytes_stream();
        let (mut raw, mut tails) = (String::new(), Vec::<String>::new());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await {
            raw.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = raw.find("\n\n") {
                let event: String = raw.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                    && event.contains("event: tail")
                {
                    let tail: String = serde_json::from_str(data).unwrap();
                    if tail.contains("first") && !go.exists() {
                        std::fs::write(&go, "").unwrap();
                    }
                    let done = tail.contains("second");
                    tails.push(tail);
                    if done {
                        return tails;
                    }
                }
            }
        }
        tails
    });
    assert!(
        tails
            .first()
            .is_some_and(|t| t.contains("first") && !t.contains("second")),
        "{tails:?}"
    );
    assert!(
        tails.last().is_some_and(|t| t.contains("first\nsecond")),
        "{tails:?}"
    );
    // Ctrl-C closes the ssh connection the server opened to tail the job (a master left behind would
    // live on: ControlPersist).
    let config = fleet.ssh_config.display().to_string();
    let masters = || -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.starts_with("ssh ") && c.contains(&config))
            .collect()
    };
    assert!(!masters().is_empty(), "no ssh connection was opened");
    let pid = rustix::process::Pid::from_raw(web.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    wait_for(
        "baton web to stop on Ctrl-C",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(format!("/proc/{}/stat", web.child.id()))
                .map_or(true, |s| s.contains(") Z "))
        },
    );
    wait_for(
        "its ssh connections to close",
        Duration::from_secs(30),
        || masters().is_empty(),
    );
}

/// Names from the address never reach a path or an option: a run id that climbs out of the state folder
/// reads nothing, a job whose name looks like an option is run as that job.
#[test]
fn names_from_the_address_stay_names() {
    let env = Env::new("web-names");
    std::fs::write(env.dir.join("secret.log"), "TOP SECRET\n").unwrap();
    env.dir.write("job.lua", "print('the dashed job ran')");
    let schedule = env.dir.write(
        "schedule.lua",
        r#"schedule.cron("--quiet", "0 3 * * *", "job.lua")"#,
    );
    let web = Web::start(
        &env,
        &[
            "web",
            "--listen",
            "127.0.0.1:0",
            "--schedule",
            schedule.to_str().unwrap(),
        ],
    );
    for id in [
        "..%2F..%2Fsecret",
        "..%2F..%2F..%2F..%2Fetc%2Fsecret",
        "x%0Ay",
        "%1B%5B2J",
    ] {
        let r = get(&web.url(&format!("/runs/{id}/log?from=0")));
        assert_eq!(r.status, 404, "{id}: {}", r.body);
        assert!(!r.body.contains("TOP SECRET"), "{id}: {}", r.body);
        assert!(!r.body.contains("event: log"), "{id}: {}", r.body);
        assert_eq!(get(&web.url(&format!("/runs/{id}"))).status, 404, "{id}");
        assert_eq!(
            get(&web.url(&format!("/api/runs/{id}"))).status,
            404,
            "{id}"
        );
        assert_eq!(
            post_as_page(&web, &format!("/runs/{id}/resume"), None).status,
            404,
            "{id}"
        );
    }
    for id in ["..%2F..%2Fsecret", "nosuch"] {
        assert_eq!(get(&web.url(&format!("/jobs/{id}"))).status, 404, "{id}");
    }
    let r = post_as_page(&web, "/schedule/--quiet/run", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let history = || -> serde_json::Value {
        serde_json::from_str(&env.baton(&["schedule", "history", "--json"]).ok().stdout).unwrap()
    };
    wait_for("the job's run to end", Duration::from_secs(60), || {
        history()[0]["outcome"] == "ok"
    });
    assert_eq!(history()[0]["job"], "--quiet");
    let log = std::fs::read_to_string(history()[0]["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("the dashed job ran"), "{log}");
}
