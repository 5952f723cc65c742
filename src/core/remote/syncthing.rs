//! A client of Syncthing's REST API on a fleet host: folders, their sync state and completion per device,
//! scans, pause/resume, errors, and waiting until a folder is synced ("results synced back").
//!
//! Where the API is: the fleet's `hosts.X.syncthing = {url, api_key_env}` when given; otherwise the GUI
//! address and API key are read from the host's `config.xml` (over ssh, or locally for this machine). For a
//! remote host the API is reached through a local port forward on the host's existing ssh master (to the
//! GUI port on the host's loopback), so a GUI that listens only on 127.0.0.1 there works.
//! The API key is a [`Secret`]: it never appears in errors or logs.
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::{Remote, RemoteError, Target};
use crate::core::secret::Secret;

/// Bound on each API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on a rescan (the request returns when the scan is done; a large folder takes a while).
const SCAN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Bound on reading config.xml and setting up the forward.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the bytes of one API answer.
const ANSWER_MAX: usize = 8 * 1024 * 1024;

/// Where config.xml is looked for (newest layout first; macOS last).
const CONFIG_SCRIPT: &str = r#"for f in "$HOME/.local/state/syncthing/config.xml" "$HOME/.config/syncthing/config.xml" "$HOME/Library/Application Support/Syncthing/config.xml"; do
  if [ -f "$f" ]; then cat "$f"; exit 0; fi
done
echo "no Syncthing config.xml in ~/.local/state/syncthing, ~/.config/syncthing or ~/Library/Application Support/Syncthing" >&2
exit 3
"#;

/// The GUI section of a config.xml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gui {
    /// `host:port` as written (`127.0.0.1:8384`, `0.0.0.0:8384`, `[::1]:8384`).
    pub address: String,
    pub tls: bool,
    pub api_key: Option<String>,
}

/// Reads `<gui tls="…"><address>…</address><apikey>…</apikey></gui>` from a config.xml.
pub fn parse_gui(xml: &str) -> Result<Gui, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut gui = Gui {
        address: String::new(),
        tls: false,
        api_key: None,
    };
    let mut found = false;
    loop {
        match reader.read_event() {
            Err(e) => return Err(format!("config.xml does not parse: {e}")),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                let name = e.name().as_ref().to_string();
                if name == "gui" && path.len() == 1 {
                    found = true;
                    if let Ok(Some(a)) = e.try_get_attribute("tls") {
                        gui.tls = a.value.as_ref() == "true";
                    }
                }
                path.push(name);
            }
            Ok(Event::End(_)) => {
                path.pop();
            }
            Ok(Event::Text(t)) if path.len() == 3 && path[1] == "gui" => {
                let text = AsRef::<str>::as_ref(&t).trim().to_string();
                match path[2].as_str() {
                    "address" => gui.address.push_str(&text),
                    "apikey" => gui.api_key.get_or_insert_with(String::new).push_str(&text),
                    _ => {}
                }
            }
            Ok(_) => {}
        }
    }
    if !found || gui.address.is_empty() {
        return Err("config.xml has no <gui><address>".into());
    }
    Ok(gui)
}

/// The loopback address to forward to on the host, for a GUI address (a wildcard listens on loopback too).
fn forward_target(address: &str) -> Option<String> {
    let (host, port) = address.rsplit_once(':')?;
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "" | "0.0.0.0" | "localhost" => "127.0.0.1",
        "::" => "::1",
        other => other,
    };
    port.parse::<u16>().ok()?;
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// A folder as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub id: String,
    pub label: String,
    pub path: String,
    pub paused: bool,
    /// Device IDs it is shared with (this device included).
    pub devices: Vec<String>,
}

/// Completion of a folder on one remote device, as this instance sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub device: String,
    pub name: String,
    pub completion: f64,
    pub need_bytes: u64,
    pub need_items: u64,
    pub global_items: u64,
    /// The device's index sequence as known here (0: no index from it yet).
    pub sequence: Option<u64>,
    pub connected: bool,
}

impl Completion {
    /// Done, as far as this instance can know: connected, 100 %, nothing needed, and its index known (until
    /// the device sends its index, Syncthing counts its need as zero).
    pub fn synced(&self) -> bool {
        self.connected
            && self.completion >= 100.0
            && self.need_items == 0
            && (self.sequence.is_none_or(|s| s > 0) || self.global_items == 0)
    }
}

/// A folder's state.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderStatus {
    /// `idle`, `scanning`, `syncing`, `error`, … (`paused` when the folder is paused).
    pub state: String,
    pub paused: bool,
    pub need_bytes: u64,
    pub need_files: u64,
    pub global_bytes: u64,
    pub local_bytes: u64,
    pub errors: u64,
    pub completion: Vec<Completion>,
}

impl FolderStatus {
    fn summary(&self) -> String {
        let mut s = format!(
            "state {}, need {} file(s) / {} bytes",
            self.state, self.need_files, self.need_bytes
        );
        for c in &self.completion {
            s.push_str(&format!(
                ", {} at {:.0} %{}",
                c.name,
                c.completion,
                if c.connected { "" } else { " (not connected)" }
            ));
        }
        s
    }
}

/// One error Syncthing reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncError {
    /// `None` for a system-wide error.
    pub folder: Option<String>,
    pub path: Option<String>,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFolder {
    id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    devices: Vec<RawFolderDevice>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFolderDevice {
    #[serde(rename = "deviceID")]
    device_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDevice {
    #[serde(rename = "deviceID")]
    device_id: String,
    #[serde(default)]
    name: String,
}

/// A connected client.
pub struct Client {
    host: String,
    url: String,
    key: Secret,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn err(msg: impl Into<String>) -> RemoteError {
    RemoteError::Sync(msg.into())
}

/// Connects to the Syncthing of `host` (see the module docs for where URL and key come from).
pub async fn connect(remote: &Remote, host: &str) -> Result<Client, RemoteError> {
    let target = remote.target(host)?;
    let conf = remote
        .fleet()
        .hosts
        .get(host)
        .and_then(|h| h.syncthing.clone())
        .unwrap_or_default();
    let key_from_env = match &conf.api_key_env {
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                return Err(err(format!("syncthing.api_key_env: ${var} is not set")));
            }
        },
        None => None,
    };
    let gui = if conf.url.is_none() || key_from_env.is_none() {
        let out = remote.script(host, CONFIG_SCRIPT, SETUP_TIMEOUT).await?;
        if !out.ok() {
            return Err(err(format!(
                "cannot read Syncthing's config.xml: {}",
                out.failure_summary()
            )));
        }
        Some(parse_gui(&String::from_utf8_lossy(&out.stdout)).map_err(err)?)
    } else {
        None
    };
    let key = match (key_from_env, gui.as_ref().and_then(|g| g.api_key.clone())) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => {
            return Err(err(
                "no API key: config.xml has no <gui><apikey> and the fleet gives no syncthing.api_key_env",
            ));
        }
    };
    let url = match (&conf.url, &gui) {
        (Some(url), _) => url.trim_end_matches('/').to_string(),
        (None, Some(gui)) => {
            let scheme = if gui.tls { "https" } else { "http" };
            let to = forward_target(&gui.address)
                .ok_or_else(|| err(format!("GUI address {:?} has no port", gui.address)))?;
            match &target {
                Target::Local => format!("{scheme}://{to}"),
                Target::Ssh(dest) => {
                    let port = forward(remote, dest, &to).await?;
                    format!("{scheme}://127.0.0.1:{port}")
                }
            }
        }
        (None, None) => unreachable!("config.xml is read when the fleet gives no url"),
    };
    let http = crate::core::http::builder(Duration::from_secs(5))
        // Syncthing's GUI certificate is self-signed; it is reached on loopback or through the ssh master.
        .tls_danger_accept_invalid_certs(gui.as_ref().is_some_and(|g| g.tls))
        .build()
        .map_err(|e| err(format!("HTTP client: {e}")))?;
    Ok(Client {
        host: host.to_string(),
        url,
        key: Secret::new(key),
        http,
    })
}

/// Opens a local port forward on the host's master to `to` (on the host) and returns the local port.
async fn forward(remote: &Remote, dest: &super::SshDest, to: &str) -> Result<u16, RemoteError> {
    let master = remote
        .pool()
        .master(dest, super::ssh::CONNECT_TIMEOUT)
        .await?;
    // A free local port (bound, then released for ssh to take).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| err(format!("no free local port for the forward: {e}")))?
        .port();
    let mut cmd = tokio::process::Command::new("ssh");
    cmd.args(master.client_args())
        .args(["-O", "forward", "-L", &format!("127.0.0.1:{port}:{to}")])
        .arg("none")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(SETUP_TIMEOUT, cmd.output())
        .await
        .map_err(|_| err("the ssh port forward did not open in time"))?
        .map_err(|e| err(format!("cannot run ssh for the port forward: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "cannot forward a local port to {to}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(port)
}

impl Client {
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, RemoteError> {
        self.call_within(method, path, body, REQUEST_TIMEOUT).await
    }

    async fn call_within(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, RemoteError> {
        let url = format!("{}{path}", self.url);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .timeout(timeout)
            .header("X-API-Key", self.key.expose());
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let scrub = |t: String| self.key.scrub(&t);
        let mut res = req.send().await.map_err(|e| {
            err(scrub(format!(
                "cannot reach Syncthing at {}: {}",
                self.url,
                chain(&e)
            )))
        })?;
        let status = res.status();
        let mut bytes = Vec::new();
        loop {
            match res.chunk().await {
                Ok(Some(c)) => {
                    if bytes.len() + c.len() > ANSWER_MAX {
                        return Err(err(format!(
                            "{method} {path}: answer larger than {ANSWER_MAX} bytes"
                        )));
                    }
                    bytes.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(err(scrub(format!("{method} {path}: {}", chain(&e))))),
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if status == reqwest::StatusCode::FORBIDDEN || status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(err(format!(
                "Syncthing at {} refused the API key (HTTP {}); check hosts.{}.syncthing.api_key_env or the key in its config.xml",
                self.url,
                status.as_u16(),
                self.host
            )));
        }
        if !status.is_success() {
            let mut t = text.trim().to_string();
            t.truncate(300);
            return Err(err(scrub(format!(
                "{method} {path}: HTTP {}: {t}",
                status.as_u16()
            ))));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| err(format!("{method} {path}: not JSON: {e}")))
    }

    async fn get(&self, path: &str) -> Result<Value, RemoteError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// This instance's device ID.
    pub async fn my_id(&self) -> Result<String, RemoteError> {
        let v = self.get("/rest/system/status").await?;
        v["myID"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| err("/rest/system/status has no myID"))
    }

    pub async fn folders(&self) -> Result<Vec<Folder>, RemoteError> {
        let raw: Vec<RawFolder> = serde_json::from_value(self.get("/rest/config/folders").await?)
            .map_err(|e| err(format!("/rest/config/folders: {e}")))?;
        Ok(raw
            .into_iter()
            .map(|f| Folder {
                id: f.id,
                label: f.label,
                path: f.path,
                paused: f.paused,
                devices: f.devices.into_iter().map(|d| d.device_id).collect(),
            })
            .collect())
    }

    async fn devices(&self) -> Result<Vec<RawDevice>, RemoteError> {
        serde_json::from_value(self.get("/rest/config/devices").await?)
            .map_err(|e| err(format!("/rest/config/devices: {e}")))
    }

    /// The folder by id or label; an unknown one is an error listing the folders.
    pub async fn folder(&self, name: &str) -> Result<Folder, RemoteError> {
        let all = self.folders().await?;
        if let Some(f) = all
            .iter()
            .find(|f| f.id == name)
            .or_else(|| all.iter().find(|f| f.label == name))
        {
            return Ok(f.clone());
        }
        let ids: Vec<&str> = all.iter().map(|f| f.id.as_str()).collect();
        Err(RemoteError::Invalid(format!(
            "unknown Syncthing folder {name:?}{}",
            if ids.is_empty() {
                " (no folders)".to_string()
            } else {
                format!(" (folders: {})", ids.join(", "))
            }
        )))
    }

    pub async fn status(&self, name: &str) -> Result<FolderStatus, RemoteError> {
        let folder = self.folder(name).await?;
        let id = &folder.id;
        // A paused folder has no database state to report (Syncthing answers 404 "folder is paused").
        let v = match self
            .get(&format!("/rest/db/status?folder={}", enc(id)))
            .await
        {
            Ok(v) => v,
            Err(_) if folder.paused => Value::Null,
            Err(e) => return Err(e),
        };
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        let me = self.my_id().await?;
        let names = self.devices().await?;
        let mut completion = Vec::new();
        let others = if folder.paused {
            &[][..]
        } else {
            &folder.devices[..]
        };
        let connections = if others.is_empty() {
            Value::Null
        } else {
            self.get("/rest/system/connections").await?
        };
        for dev in others.iter().filter(|d| **d != me) {
            let c = self
                .get(&format!(
                    "/rest/db/completion?folder={}&device={}",
                    enc(id),
                    enc(dev)
                ))
                .await?;
            let name = names
                .iter()
                .find(|d| &d.device_id == dev)
                .map(|d| d.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| short_id(dev));
            completion.push(Completion {
                device: dev.clone(),
                name,
                completion: c["completion"].as_f64().unwrap_or(0.0),
                need_bytes: c["needBytes"].as_u64().unwrap_or(0),
                need_items: c["needItems"].as_u64().unwrap_or(0),
                global_items: c["globalItems"].as_u64().unwrap_or(0),
                sequence: c["sequence"].as_u64(),
                connected: connections["connections"][dev.as_str()]["connected"]
                    .as_bool()
                    .unwrap_or(false),
            });
        }
        let state = v["state"].as_str().unwrap_or("").to_string();
        Ok(FolderStatus {
            state: if folder.paused {
                "paused".into()
            } else {
                state
            },
            paused: folder.paused,
            need_bytes: n("needBytes"),
            need_files: n("needFiles"),
            global_bytes: n("globalBytes"),
            local_bytes: n("localBytes"),
            errors: n("errors") + n("pullErrors"),
            completion,
        })
    }

    /// Rescans the folder (returns when the scan is done).
    pub async fn scan(&self, name: &str) -> Result<(), RemoteError> {
        let folder = self.folder(name).await?;
        self.call_within(
            reqwest::Method::POST,
            &format!("/rest/db/scan?folder={}", enc(&folder.id)),
            None,
            SCAN_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), RemoteError> {
        let folder = self.folder(name).await?;
        self.call(
            reqwest::Method::PATCH,
            &format!("/rest/config/folders/{}", enc(&folder.id)),
            Some(serde_json::json!({ "paused": paused })),
        )
        .await?;
        Ok(())
    }

    /// Folder errors (files that failed to sync) of every folder, then system errors.
    pub async fn errors(&self) -> Result<Vec<SyncError>, RemoteError> {
        let mut out = Vec::new();
        for f in self.folders().await? {
            let v = self
                .get(&format!("/rest/folder/errors?folder={}", enc(&f.id)))
                .await?;
            for e in v["errors"].as_array().into_iter().flatten() {
                out.push(SyncError {
                    folder: Some(f.id.clone()),
                    path: e["path"].as_str().map(str::to_string),
                    message: e["error"].as_str().unwrap_or("").to_string(),
                });
            }
        }
        let v = self.get("/rest/system/error").await?;
        for e in v["errors"].as_array().into_iter().flatten() {
            out.push(SyncError {
                folder: None,
                path: None,
                message: e["message"].as_str().unwrap_or("").to_string(),
            });
        }
        Ok(out)
    }

    /// Returns once the folder is idle with nothing needed here and, with `device` (name or ID), at 100 %
    /// on that device; raises after `timeout` with the last state seen (and at once for a paused folder
    /// when `timeout` passes, naming the pause).
    ///
    /// `timeout` is a deadline over the whole wait: every API call made while waiting gets at most the time
    /// left (a Syncthing that accepts and never answers ends the wait at the deadline, not a request timeout
    /// later).
    pub async fn wait_synced(
        &self,
        name: &str,
        device: Option<&str>,
        timeout: Duration,
        interval: Duration,
    ) -> Result<FolderStatus, RemoteError> {
        let mut last = None;
        let waited = tokio::time::timeout(
            timeout,
            self.wait_synced_until(name, device, timeout, interval, &mut last),
        )
        .await;
        match waited {
            Ok(done) => done,
            Err(_) => Err(match &last {
                Some((id, status)) => not_synced(id, timeout, status),
                None => err(format!(
                    "folder {name:?} not synced after {}: Syncthing at {} did not answer in time",
                    crate::core::duration::format(timeout),
                    self.url
                )),
            }),
        }
    }

    async fn wait_synced_until(
        &self,
        name: &str,
        device: Option<&str>,
        timeout: Duration,
        interval: Duration,
        last: &mut Option<(String, FolderStatus)>,
    ) -> Result<FolderStatus, RemoteError> {
        let folder = self.folder(name).await?;
        let device_id = match device {
            None => None,
            Some(d) => {
                let devices = self.devices().await?;
                let found = devices
                    .iter()
                    .find(|x| x.device_id == d || x.name == d || short_id(&x.device_id) == d)
                    .map(|x| x.device_id.clone());
                match found {
                    Some(id) if folder.devices.contains(&id) => Some(id),
                    Some(_) => {
                        return Err(RemoteError::Invalid(format!(
                            "folder {:?} is not shared with device {d:?}",
                            folder.id
                        )));
                    }
                    None => {
                        let mut names: Vec<String> = devices
                            .iter()
                            .map(|x| {
                                if x.name.is_empty() {
                                    short_id(&x.device_id)
                                } else {
                                    x.name.clone()
                                }
                            })
                            .collect();
                        names.sort();
                        return Err(RemoteError::Invalid(format!(
                            "unknown Syncthing device {d:?} (devices: {})",
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        let started = Instant::now();
        loop {
            let status = self.status(&folder.id).await?;
            let here = status.state == "idle" && status.need_files == 0 && status.need_bytes == 0;
            let there = match &device_id {
                None => true,
                Some(id) => status
                    .completion
                    .iter()
                    .any(|c| &c.device == id && c.synced()),
            };
            if here && there && !status.paused {
                return Ok(status);
            }
            *last = Some((folder.id.clone(), status.clone()));
            if started.elapsed() >= timeout {
                return Err(not_synced(&folder.id, timeout, &status));
            }
            let left = timeout.saturating_sub(started.elapsed());
            tokio::time::sleep(interval.min(left).max(Duration::from_millis(10))).await;
        }
    }
}

/// The error of a wait that ran out of time, with the last state seen.
fn not_synced(id: &str, timeout: Duration, status: &FolderStatus) -> RemoteError {
    let paused = if status.paused {
        "the folder is paused; "
    } else {
        ""
    };
    err(format!(
        "folder {id:?} not synced after {}: {paused}{}",
        crate::core::duration::format(timeout),
        status.summary()
    ))
}

/// `ABCDEFG` from a device ID (its first group), as Syncthing's GUI shows unnamed devices.
fn short_id(id: &str) -> String {
    id.split('-').next().unwrap_or(id).to_string()
}

/// Percent-encodes a query or path value (folder IDs may hold any character).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gui_section_parses() {
        let xml = r#"<configuration version="37">
    <folder id="abc" label="A" path="/x"><device id="D1"></device></folder>
    <gui enabled="true" tls="false" debugging="false">
        <address>127.0.0.1:8384</address>
        <apikey>k3y-Secret</apikey>
        <theme>default</theme>
    </gui>
</configuration>"#;
        assert_eq!(
            parse_gui(xml).unwrap(),
            Gui {
                address: "127.0.0.1:8384".into(),
                tls: false,
                api_key: Some("k3y-Secret".into())
            }
        );
        let tls = xml.replace("tls=\"false\"", "tls=\"true\"");
        assert!(parse_gui(&tls).unwrap().tls);
        assert!(parse_gui("<configuration></configuration>").is_err());
        assert!(parse_gui("<configuration><gui>").is_err());
    }

    #[test]
    fn forward_targets_and_encoding() {
        assert_eq!(forward_target("0.0.0.0:8384").unwrap(), "127.0.0.1:8384");
        assert_eq!(forward_target("127.0.0.1:9").unwrap(), "127.0.0.1:9");
        assert_eq!(forward_target("[::1]:8384").unwrap(), "[::1]:8384");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(short_id("ABCDEFG-HIJ"), "ABCDEFG");
    }
}
