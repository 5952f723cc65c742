//! `baton web` (issue 29) as a person uses it: headless Chromium, driven through chromedriver's W3C WebDriver
//! HTTP API by the small client below (reqwest, JSON over HTTP), against a `baton web` over a fleet of test
//! sshd hosts (one up, one down, one asleep with a `mac`), an in-test Ollama behind a priced tier and a
//! schedule of playbooks. Each page is checked against the CLI's JSON (`status`, `schedule history`, `runs`,
//! `spend`); Run now is clicked and the run's log is watched growing; a paused run is approved on its page.
//! A screenshot of each page is saved under `target/web-screenshots/` on every run (one at a phone's width).
//!
//! Chromium and chromedriver are Debian's (`.ci/run` installs `chromium` and `chromium-driver`); a missing one
//! fails the test, naming the package. The machine has no network: the flags below keep Chromium from
//! reaching for it (background networking, component updates, sync, QUIC).
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::common::{Env, sh_wait_file_for, wait_for};
use crate::llm::server::{self, Reply, Stub};
use crate::sshd::SshFleet;
use crate::web::{Web, newest_run, run_status, wait_status};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element reference in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a test waits for something the page should come to show (a limit, not an expectation).
const LIMIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------- the WebDriver client

/// A started chromedriver, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebDriver error answer: its code (`no such element`, `stale element reference`, …) and message.
#[derive(Debug)]
struct WdError {
    error: String,
    message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// One headless Chromium session through its own chromedriver. On drop the session is deleted (Chromium
/// quits), the browser's process is killed by its id should it outlive that, and chromedriver is stopped.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    session: String,
    /// Chromium's process id (`goog:processID`).
    pid: Option<i32>,
    _driver: Driver,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test leaves what the browser showed: its address and HTML on stderr, a screenshot.
        if std::thread::panicking() {
            let name = std::thread::current()
                .name()
                .unwrap_or("test")
                .rsplit("::")
                .next()
                .unwrap_or("test")
                .to_string();
            if let (Ok(url), Ok(html)) = (
                self.call(reqwest::Method::GET, "/url", None),
                self.call(reqwest::Method::GET, "/source", None),
            ) {
                eprintln!(
                    "--- the browser showed {url}:\n{}",
                    html.as_str().unwrap_or_default()
                );
            }
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.screenshot(&format!("failed-{name}"), 1280)
            }));
        }
        let _ = self.call(reqwest::Method::DELETE, "", None);
        if let Some(pid) = self.pid.and_then(rustix::process::Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium with a fresh profile under
    /// `dir`.
    pub fn start(dir: &Path) -> Browser {
        for (program, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(program).exists(),
                "{program} is required by the browser tests and was not found: apt-get install {package} \
                 (.ci/run installs it)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        let log = std::fs::File::create(dir.join("chromedriver.log")).unwrap();
        let driver = Driver(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}")),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // baton's own builder: it installs the TLS provider reqwest is built without.
        let client = baton::core::http::builder(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            rt,
            client,
            session: base.clone(),
            pid: None,
            _driver: driver,
        };
        wait_for("chromedriver to answer", LIMIT, || {
            browser
                .call(reqwest::Method::GET, "/status", None)
                .is_ok_and(|v| v["ready"] == true)
        });
        let profile = dir.join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,1000",
                ],
            },
        }}});
        let session = browser
            .call(reqwest::Method::POST, "/session", Some(caps))
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver could not start Chromium: {e}\n{}",
                    std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default()
                )
            });
        browser.pid = session["capabilities"]["goog:processID"]
            .as_i64()
            .map(|p| p as i32);
        browser.session = format!("{base}/session/{}", session["sessionId"].as_str().unwrap());
        browser
            .call(
                reqwest::Method::POST,
                "/timeouts",
                Some(json!({"pageLoad": 60_000, "script": 30_000, "implicit": 0})),
            )
            .unwrap();
        browser
    }

    /// One WebDriver command on the session (`path` after `/session/ID`): its `value`, or its error.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, WdError> {
        let url = format!("{}{path}", self.session);
        self.rt.block_on(async {
            let mut req = self.client.request(method.clone(), &url);
            if let Some(b) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let fail = |error: &str, message: String| WdError {
                error: error.into(),
                message: format!("{method} {url}: {message}"),
            };
            let resp = req.send().await.map_err(|e| fail("http", e.to_string()))?;
            let ok = resp.status().is_success();
            let text = resp.text().await.map_err(|e| fail("http", e.to_string()))?;
            let v: Value =
                serde_json::from_str(&text).map_err(|e| fail("json", format!("{e}: {text}")))?;
            if ok {
                Ok(v["value"].clone())
            } else {
                Err(fail(
                    v["value"]["error"].as_str().unwrap_or("unknown"),
                    v["value"]["message"].as_str().unwrap_or(&text).to_string(),
                ))
            }
        })
    }

    #[track_caller]
    fn must(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver: {e}"))
    }

    /// Opens `url` (returns when the page has loaded).
    pub fn goto(&self, url: &str) {
        self.must(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    pub fn current_url(&self) -> String {
        self.must(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements matching `css` (references).
    fn find_all(&self, css: &str) -> Vec<String> {
        let found = self.must(
            reqwest::Method::POST,
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        found
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
            .collect()
    }

    /// `f` on each element matching `css`; a page section the live script replaced in between (a stale
    /// reference) is looked up again.
    fn each<T>(&self, css: &str, f: impl Fn(&str) -> Result<T, WdError>) -> Vec<T> {
        for _ in 0..20 {
            match self
                .find_all(css)
                .iter()
                .map(|e| f(e))
                .collect::<Result<Vec<T>, WdError>>()
            {
                Ok(all) => return all,
                Err(e) if e.error == "stale element reference" => continue,
                Err(e) => panic!("WebDriver on {css:?}: {e}"),
            }
        }
        panic!("the elements {css:?} kept being replaced");
    }

    /// The rendered text of each element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.each(css, |e| {
            self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
                .map(|v| v.as_str().unwrap_or_default().to_string())
        })
    }

    /// The text of the first element matching `css`, if any.
    pub fn text(&self, css: &str) -> Option<String> {
        self.texts(css).into_iter().next()
    }

    /// Attribute `name` of each element matching `css` (`None` where it is missing).
    pub fn attrs(&self, css: &str, name: &str) -> Vec<Option<String>> {
        self.each(css, |e| {
            self.call(
                reqwest::Method::GET,
                &format!("/element/{e}/attribute/{name}"),
                None,
            )
            .map(|v| v.as_str().map(str::to_string))
        })
    }

    /// DOM property `name` of each element matching `css` (`textContent` reads text that is not
    /// rendered, such as an SVG `<title>`).
    pub fn props(&self, css: &str, name: &str) -> Vec<Value> {
        self.each(css, |e| {
            self.call(
                reqwest::Method::GET,
                &format!("/element/{e}/property/{name}"),
                None,
            )
        })
    }

    /// Clicks the first element matching `css` (looked up again if the live script replaced it).
    #[track_caller]
    pub fn click(&self, css: &str) {
        let clicked = self.each(css, |e| {
            self.call(
                reqwest::Method::POST,
                &format!("/element/{e}/click"),
                Some(json!({})),
            )
        });
        assert!(!clicked.is_empty(), "nothing to click at {css:?}");
    }

    /// Types `text` into the first element matching `css`.
    #[track_caller]
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find_all(css);
        let element = element
            .first()
            .unwrap_or_else(|| panic!("nothing to type into at {css:?}"));
        self.must(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Runs `js` (a function body) in the page; its return value.
    pub fn script(&self, js: &str) -> Value {
        self.must(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    pub fn window(&self, width: u32, height: u32) {
        self.must(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Saves what the window shows as `target/web-screenshots/NAME.png`, the window made as tall as the
    /// page first (measured in a short window, at most 4000 px) so the whole page is in it.
    pub fn screenshot(&self, name: &str, width: u32) {
        self.window(width, 600);
        let height = self
            .script("return document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(1000)
            .clamp(600, 4000) as u32;
        self.window(width, height + 200);
        let png = self.must(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the text of the first element matching `css` satisfies `ok`; that text.
    #[track_caller]
    pub fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = None;
        wait_for(what, LIMIT, || {
            last = self.text(css);
            last.as_deref().is_some_and(&ok)
        });
        last.unwrap_or_default()
    }
}

// ------------------------------------------------------------------------------------------- the world

/// What the dashboard shows: h0 up, h1 down, h2 asleep (stopped, with a `mac`), `engine` an Ollama (the
/// stub) behind a priced tier; a schedule with a job that succeeded, one that failed, a slow one that waits
/// for the test's gates between its lines, one never run; a priced model call; a run paused on a question.
struct World {
    env: Env,
    web: Web,
    work: PathBuf,
    /// The run paused on `baton.approve("deploy?")`.
    paused: String,
    /// The UTC day (`YYYY-MM-DD`) the priced call was made.
    asked_on: String,
    _ssh: SshFleet,
    _stub: Stub,
    _rt: tokio::runtime::Runtime,
}

const DEPLOY: &str = r#"print("before the question")
local ok, text = baton.approve("deploy?")
print("answer:", ok, text)
"#;

impl World {
    fn new(name: &str) -> World {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let stub = rt.block_on(Stub::start(|req, _| {
            let qwen = json!({ "models": [{ "name": "qwen", "model": "qwen", "size": 1000, "digest": "abc",
                "modified_at": "2026-11-01T10:00:00Z", "details": {} }] });
            match req.path.as_str() {
                "/api/chat" => Reply::ndjson(server::ollama_chat("qwen", &["forty-two"], 40, 6), 16),
                "/api/ps" | "/api/tags" => Reply::json(200, qwen),
                "/api/version" => Reply::json(200, json!({ "version": "0.12.0" })),
                other => Reply::json(404, json!({ "error": format!("no route {other}") })),
            }
        }));
        let mut ssh = SshFleet::prepare(3);
        ssh.start_host(0);
        let fleet = format!(
            r#"return {{
  ssh_config = {cfg:?},
  hosts = {{
    h0 = {{ ssh = "h0", role = "server" }},
    h1 = {{ ssh = "h1", role = "backup" }},
    h2 = {{ ssh = "h2", role = "gpu", mac = "02:42:ac:11:00:07" }},
    engine = {{ ssh = false, role = "inference", ollama = "{url}" }},
  }},
  tiers = {{ {{ name = "local", provider = "ollama", host = "engine", models = {{ code = "qwen", reason = "qwen" }},
    price = {{ input = 1000, output = 2000 }} }} }},
  budget = {{ monthly_usd = 100 }},
}}"#,
            cfg = ssh.ssh_config.display(),
            url = stub.url,
        );
        let env = Env::new(name).with_fleet(&fleet);
        let work = env.dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let lua = |file: &str, body: String| {
            let path = work.join(file);
            std::fs::write(&path, body).unwrap();
            path.display().to_string()
        };
        // A run is recorded from its first journaled call (or its failure): each playbook makes one.
        let good = lua(
            "good.lua",
            "baton.exec({ \"true\" })\nprint(\"all good\")\n".into(),
        );
        let broken = lua("broken.lua", "error(\"broken on purpose\")\n".into());
        // Each gate holds the run for up to 2 minutes: far longer than the browser needs to look.
        let gates: Vec<String> = (1..=3)
            .map(|i| {
                format!(
                    "baton.exec({{ \"sh\", \"-c\", {:?} }})\nprint(\"line {}\")\n",
                    sh_wait_file_for(&work.join(format!("gate-{i}")), 120),
                    i + 1
                )
            })
            .collect();
        let slow = lua(
            "slow.lua",
            format!(
                "baton.exec({{ \"true\" }})\nprint(\"line 1\")\n{}",
                gates.concat()
            ),
        );
        let schedule = lua(
            "schedule.lua",
            format!(
                "schedule.cron(\"good\", \"0 3 * * *\", {good:?})\n\
                 schedule.cron(\"broken\", \"0 4 * * *\", {broken:?})\n\
                 schedule.cron(\"slow\", \"0 5 * * *\", {slow:?})\n\
                 schedule.cron(\"yearly\", \"0 6 1 1 *\", {good:?})\n"
            ),
        );
        env.baton(&["schedule", "run", "good", &schedule]).ok();
        let out = env.baton(&["schedule", "run", "broken", &schedule]);
        assert_ne!(out.code, Some(0), "the broken job failed: {out:?}");
        let ask = lua(
            "ask.lua",
            "print(route.ask(\"lint\", \"what is six times seven?\").text)\n".into(),
        );
        let asked_on = today();
        assert_eq!(env.baton(&["run", &ask]).ok().stdout, "forty-two\n");
        let deploy = lua("deploy.lua", DEPLOY.into());
        env.baton(&["run", &deploy]).ok();
        let paused = newest_run(&env);
        assert_eq!(run_status(&env, &paused), "paused");
        let web = Web::start(
            &env,
            &["web", "--listen", "127.0.0.1:0", "--schedule", &schedule],
        );
        World {
            env,
            web,
            work,
            paused,
            asked_on,
            _ssh: ssh,
            _stub: stub,
            _rt: rt,
        }
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.env.baton(args);
        out.ok();
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", out.stdout))
    }

    /// A browser logged in through the printed link (which sets the cookie and drops the token from
    /// the address).
    fn browser(&self) -> Browser {
        let b = Browser::start(self.env.dir.path());
        b.goto(&format!("{}/?token={}", self.web.base, self.web.token));
        assert_eq!(b.current_url(), format!("{}/", self.web.base));
        // The cookie is HttpOnly: the page's script cannot read the token.
        let cookies = b.script("return document.cookie");
        assert!(
            !cookies
                .as_str()
                .unwrap_or_default()
                .contains(&self.web.token),
            "{cookies}"
        );
        b
    }
}

/// Ids and status badges of the runs table's rows under `section`.
fn run_rows(b: &Browser, section: &str) -> Vec<(String, String)> {
    let ids = b.attrs(&format!("{section} tr[data-run]"), "data-run");
    let badges = b.texts(&format!("{section} tr[data-run] td .badge"));
    ids.into_iter().flatten().zip(badges).collect()
}

/// Today (UTC) as the chart and `baton spend --json` name it.
fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

// ----------------------------------------------------------------------------------------------- tests

/// Each page shows what the CLI says: the fleet's states, the schedule's jobs with their states and Run-now
/// buttons, the runs with links and statuses, the jobs, the month's spend with today's bar; `/runs?status=`
/// filters. Screenshots of each page, the dashboard also at a phone's width (no sideways scrolling).
#[test]
fn each_page_shows_what_the_cli_says() {
    let w = World::new("web-browser-pages");
    let b = w.browser();

    // Fleet: the background probe (`baton status --json`) fills the table.
    let status = w.json(&["status", "--json"]);
    let hosts = status["hosts"].as_array().unwrap();
    wait_for("the probe's rows in #fleet", LIMIT, || {
        b.texts("#fleet tr[data-host]").len() == hosts.len()
    });
    for host in hosts {
        let name = host["host"].as_str().unwrap();
        let want = match (host["online"].as_bool(), host["wakeable"].as_bool()) {
            (Some(true), _) => "online",
            (_, Some(true)) => "asleep",
            _ => "down",
        };
        let row = format!("#fleet tr[data-host={name}]");
        assert_eq!(
            b.text(&format!("{row} td:nth-child(3) .badge")).as_deref(),
            Some(want),
            "{name}: {host}"
        );
        assert_eq!(
            b.text(&format!("{row} td:nth-child(2)")).unwrap(),
            host["role"].as_str().unwrap()
        );
    }
    // The fleet file's hosts (and the implicit `local`), as set up.
    let states: Vec<String> = ["h0", "h1", "h2", "engine", "local"]
        .iter()
        .map(|h| {
            b.text(&format!("#fleet tr[data-host={h}] td:nth-child(3) .badge"))
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(states, ["online", "down", "asleep", "online", "online"]);
    assert_eq!(
        b.texts("#fleet tr[data-host=engine] td:nth-child(5) code"),
        ["qwen"]
    );
    assert_eq!(
        b.texts("#fleet tr[data-host=h2] button.wake"),
        ["Wake"],
        "an asleep host has a Wake button"
    );
    assert!(b.texts("#fleet tr[data-host=h1] button.wake").is_empty());

    // Schedule: each job, its state as healthchecks.io says it, its last run as `schedule history` has it.
    let history = w.json(&["schedule", "history", "--json"]);
    let last_outcome = |job: &str| {
        history
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["job"] == job)
            .map(|r| r["outcome"].as_str().unwrap().to_string())
    };
    for (job, state) in [
        ("good", "up"),
        ("broken", "failed"),
        ("slow", "new"),
        ("yearly", "new"),
    ] {
        let row = format!("#schedule tr[data-job={job}]");
        assert_eq!(
            b.text(&format!("{row} td:nth-child(4) .badge")).as_deref(),
            Some(state),
            "{job}"
        );
        assert_eq!(
            b.text(&format!("{row} td:nth-child(5) .badge")),
            last_outcome(job),
            "{job}'s last run"
        );
        assert_eq!(
            b.texts(&format!(
                "{row} form[action=\"/schedule/{job}/run\"][method=post] button"
            )),
            ["Run now"]
        );
    }
    assert_eq!(last_outcome("good").as_deref(), Some("ok"));

    // Runs: newest first, as `baton runs --json` lists them, each linking to its page.
    let runs = w.json(&["runs", "--json", "--limit", "10"]);
    let want: Vec<(String, String)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(want.len(), 4, "good, broken, ask, deploy: {runs}");
    assert_eq!(run_rows(&b, "#runs"), want);
    for (id, _) in &want {
        assert_eq!(
            b.texts(&format!(
                "#runs tr[data-run=\"{id}\"] a[href=\"/runs/{id}\"]"
            )),
            [id.as_str()]
        );
    }

    // Jobs: none detached (as `baton jobs --json` says).
    assert_eq!(w.json(&["jobs", "--json"]), json!([]));
    assert_eq!(b.text("#jobs p").as_deref(), Some("no detached jobs"));

    // Spend: the month's total and the bar of the call's day, as `baton spend --json` has them.
    let spend = w.json(&["spend", "--json"]);
    let spent = spend["ledger"]["spent"].as_f64().unwrap();
    assert!(spent > 0.0, "{spend}");
    let days = spend["days"].as_array().unwrap();
    assert_eq!(days.len(), 1, "{spend}");
    assert_eq!(
        (&days[0]["day"], days[0]["cost"].as_f64()),
        (&json!(w.asked_on), Some(spent))
    );
    let money = baton::core::text::money;
    let bar_title = json!(format!("{}: {}", w.asked_on, money(spent)));
    let bars = |b: &Browser, section: &str| {
        let day: u32 = w.asked_on[8..].parse().unwrap();
        let bar = format!("{section} figure.chart svg rect.bar[data-day=\"{day}\"]");
        let title = b.props(&format!("{bar} title"), "textContent");
        let tall: Vec<f64> = b
            .attrs(&format!("{section} figure.chart svg rect.bar"), "height")
            .into_iter()
            .map(|h| h.unwrap().parse().unwrap())
            .collect();
        let height: f64 = b.attrs(&bar, "height")[0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        (title, tall, height)
    };
    let (title, tall, height) = bars(&b, "#spend");
    assert_eq!(title, std::slice::from_ref(&bar_title));
    assert_eq!(tall.len(), 31);
    assert!(height > 0.0);
    assert_eq!(
        tall.iter().filter(|h| **h > 0.0).count(),
        1,
        "only the call's day has a bar: {tall:?}"
    );
    assert!(
        b.text("#spend p.big")
            .unwrap()
            .starts_with(&format!("{} of $100.00", money(spent))),
        "{:?}",
        b.text("#spend p.big")
    );
    b.screenshot("dashboard", 1280);
    b.window(390, 844);
    b.goto(&format!("{}/", w.web.base));
    let overflow = b.script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    );
    b.screenshot("dashboard-phone", 390);
    assert_eq!(
        overflow,
        json!(0),
        "the dashboard scrolls sideways at a phone's width"
    );
    b.window(1280, 1000);

    // /spend: the same bar, and the month by tier.
    b.goto(&format!("{}/spend", w.web.base));
    let (title, _, height) = bars(&b, "#spend");
    assert_eq!(title, [bar_title]);
    assert!(height > 0.0);
    assert_eq!(
        b.texts("#spend table.steps tbody tr td:first-child"),
        ["local"]
    );
    b.screenshot("spend", 1280);

    // /runs and its filter.
    b.goto(&format!("{}/runs", w.web.base));
    assert_eq!(run_rows(&b, "#runs"), want);
    b.screenshot("runs", 1280);
    b.goto(&format!("{}/runs?status=paused", w.web.base));
    let paused = w.json(&["runs", "--status", "paused", "--json"]);
    assert_eq!(paused.as_array().unwrap().len(), 1, "{paused}");
    assert_eq!(
        run_rows(&b, "#runs"),
        [(w.paused.clone(), "paused".to_string())]
    );
    assert_eq!(b.texts("#runs p.filters a.on"), ["paused"]);
    b.screenshot("runs-paused", 1280);
}

/// Run now on the dashboard: the run appears in #runs by itself, its page shows its log growing line by
/// line without a reload (the playbook waits for the test's gates between lines), then ok. A paused run's
/// page asks its question; an answer typed and approved resumes it to ok with the answer in its log.
#[test]
fn run_now_shows_the_log_growing_and_approve_resumes_a_paused_run() {
    let w = World::new("web-browser-actions");
    let b = w.browser();

    let before: Vec<String> = run_rows(&b, "#runs").into_iter().map(|r| r.0).collect();
    assert_eq!(before.len(), 4);
    b.click("#schedule form[action=\"/schedule/slow/run\"] button");
    // The form's answer brings the browser back to the dashboard; the new run shows up in #runs live.
    let mut id = String::new();
    wait_for("the new run in #runs", LIMIT, || {
        let rows = run_rows(&b, "#runs");
        match rows.first() {
            Some((first, status)) if !before.contains(first) && status == "running" => {
                id = first.clone();
                true
            }
            _ => false,
        }
    });
    assert_eq!(newest_run(&w.env), id);
    assert_eq!(run_status(&w.env, &id), "running");
    b.wait_text(
        "#schedule tr[data-job=slow] td:nth-child(4) .badge",
        "the slow job to show as running",
        |s| s == "running",
    );
    b.screenshot("dashboard-running", 1280);

    b.click(&format!("#runs a[href=\"/runs/{id}\"]"));
    wait_for("the run's page", LIMIT, || {
        b.current_url() == format!("{}/runs/{id}", w.web.base)
    });
    b.wait_text("pre#log", "line 1 in the log", |t| t == "line 1");
    assert_eq!(b.text("#head h2 .badge").as_deref(), Some("running"));
    // A mark in the page: still there after the log grew, so no reload brought the lines.
    b.script("window.batonTestMark = 42; return null");
    for i in 1..=2 {
        std::fs::write(w.work.join(format!("gate-{i}")), "").unwrap();
        let want: Vec<String> = (1..=i + 1).map(|n| format!("line {n}")).collect();
        b.wait_text("pre#log", &format!("line {} in the log", i + 1), |t| {
            t == want.join("\n")
        });
        assert_eq!(b.script("return window.batonTestMark"), json!(42));
        if i == 1 {
            b.screenshot("run-live", 1280);
        }
    }

    // Back on the dashboard, the run's end shows by itself (#runs and #schedule are refreshed live).
    b.goto(&format!("{}/", w.web.base));
    assert_eq!(
        run_rows(&b, "#runs")[0],
        (id.clone(), "running".to_string())
    );
    b.script("window.batonTestMark = 43; return null");
    std::fs::write(w.work.join("gate-3"), "").unwrap();
    wait_status(&w.env, &id, "ok", LIMIT);
    wait_for("the run to show as ok in #runs", LIMIT, || {
        run_rows(&b, "#runs").first() == Some(&(id.clone(), "ok".to_string()))
    });
    b.wait_text(
        "#schedule tr[data-job=slow] td:nth-child(4) .badge",
        "the slow job to show as up",
        |s| s == "up",
    );
    assert_eq!(b.script("return window.batonTestMark"), json!(43));

    b.goto(&format!("{}/runs/{id}", w.web.base));
    assert_eq!(b.text("#head h2 .badge").as_deref(), Some("ok"));
    let log = w.env.baton(&["runs", "show", &id, "--log"]);
    assert_eq!(log.ok().stdout, "line 1\nline 2\nline 3\nline 4\n");
    assert_eq!(
        b.text("pre#log").unwrap() + "\n",
        log.stdout,
        "the page's log is the run's log"
    );
    b.screenshot("run", 1280);

    // The paused run: its question, an answer typed in, Approve.
    let p = &w.paused;
    b.goto(&format!("{}/runs/{p}", w.web.base));
    assert_eq!(b.text("#head h2 .badge").as_deref(), Some("paused"));
    assert!(
        b.text(".question").unwrap().contains("It asks: deploy?"),
        "{:?}",
        b.text(".question")
    );
    assert_eq!(
        b.texts(&format!(
            ".question form[action=\"/runs/{p}/deny\"] button.deny"
        )),
        ["Deny"]
    );
    let approve = format!(".question form[action=\"/runs/{p}/approve\"]");
    b.type_into(&format!("{approve} input[name=text]"), "ship it");
    b.screenshot("run-paused", 1280);
    b.click(&format!("{approve} button.approve"));
    wait_status(&w.env, p, "ok", LIMIT);
    // The resumed run runs the script again, replaying its journaled calls: what it printed before the
    // question is printed (and logged) again, then the answer.
    let log = w.env.baton(&["runs", "show", p, "--log"]);
    let log = &log.ok().stdout;
    assert!(
        log.starts_with("before the question\n") && log.ends_with("\nanswer:\ttrue\tship it\n"),
        "{log}"
    );
    b.wait_text(
        "#head h2 .badge",
        "the approved run's badge to say ok",
        |s| s == "ok",
    );
    assert!(b.texts(".question").is_empty());
    b.wait_text("pre#log", "the answer in the page's log", |t| {
        t.contains("ship it")
    });
    b.screenshot("run-approved", 1280);
}
