//! Service definitions that start `baton daemon` at login and restart it when it fails: a systemd user
//! unit (Linux) or a launchd agent (macOS).
use std::path::{Path, PathBuf};

pub const SYSTEMD_UNIT: &str = "baton-daemon.service";
pub const LAUNCHD_LABEL: &str = "dev.baton.daemon";

/// A `--platform` that is neither Linux nor macOS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown platform {0:?} (expected \"linux\" or \"macos\")")]
pub struct UnknownPlatform(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Systemd,
    Launchd,
}

impl Platform {
    /// launchd on macOS, systemd elsewhere.
    pub fn current() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::Launchd
        } else {
            Platform::Systemd
        }
    }

    /// `linux`/`systemd` or `macos`/`launchd`.
    pub fn parse(text: &str) -> Result<Platform, UnknownPlatform> {
        match text.to_ascii_lowercase().as_str() {
            "linux" | "systemd" => Ok(Platform::Systemd),
            "macos" | "darwin" | "launchd" => Ok(Platform::Launchd),
            other => Err(UnknownPlatform(other.to_string())),
        }
    }

    /// Where the definition is installed for the current user.
    pub fn install_path(self, home: &Path, config_home: Option<&Path>) -> PathBuf {
        match self {
            Platform::Systemd => config_home
                .map(Path::to_path_buf)
                .unwrap_or_else(|| home.join(".config"))
                .join("systemd/user")
                .join(SYSTEMD_UNIT),
            Platform::Launchd => home
                .join("Library/LaunchAgents")
                .join(format!("{LAUNCHD_LABEL}.plist")),
        }
    }

    /// The commands that enable and start the installed definition.
    pub fn enable_hint(self, path: &Path) -> String {
        match self {
            Platform::Systemd => format!(
                "systemctl --user daemon-reload && systemctl --user enable --now {SYSTEMD_UNIT}\n\
                 (to keep it running while logged out: loginctl enable-linger \"$USER\")"
            ),
            Platform::Launchd => format!(
                "launchctl bootstrap gui/$(id -u) {}\n(later changes: launchctl kickstart -k gui/$(id -u)/{LAUNCHD_LABEL})",
                path.display()
            ),
        }
    }
}

/// What the service runs.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    /// The baton executable.
    pub exe: PathBuf,
    /// The schedule file.
    pub file: PathBuf,
    /// Environment for the daemon (state directory, fleet file, PATH).
    pub env: Vec<(String, String)>,
    /// launchd only: where the daemon's stdout/stderr go (systemd uses the journal).
    pub log: PathBuf,
}

pub fn render(platform: Platform, spec: &UnitSpec) -> String {
    match platform {
        Platform::Systemd => systemd(spec),
        Platform::Launchd => launchd(spec),
    }
}

/// `baton -v daemon FILE`: `-v` so each run start and end reaches the journal or log file.
fn daemon_args(spec: &UnitSpec) -> [std::borrow::Cow<'_, str>; 4] {
    [
        spec.exe.to_string_lossy(),
        "-v".into(),
        "daemon".into(),
        spec.file.to_string_lossy(),
    ]
}

fn systemd(spec: &UnitSpec) -> String {
    let args = daemon_args(spec);
    let exec: Vec<String> = args.iter().map(|a| systemd_quote(a)).collect();
    let mut out = String::from(
        "# Written by `baton daemon --install`.\n[Unit]\nDescription=baton scheduler (baton daemon)\n\
         After=network.target\nStartLimitIntervalSec=300\nStartLimitBurst=5\n\n[Service]\nType=simple\n",
    );
    out.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    for (k, v) in &spec.env {
        out.push_str(&format!(
            "Environment={}\n",
            systemd_quote(&format!("{k}={v}"))
        ));
    }
    out.push_str("Restart=on-failure\nRestartSec=10\nKillSignal=SIGTERM\nTimeoutStopSec=30\n\n");
    out.push_str("[Install]\nWantedBy=default.target\n");
    out
}

/// A double-quoted systemd word: `\` and `"` escaped, `%` and `$` doubled (no specifier or variable expansion).
fn systemd_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn launchd(spec: &UnitSpec) -> String {
    let string = |s: &str| format!("<string>{}</string>", xml_escape(s));
    let args = daemon_args(spec);
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n\
         <!-- Written by `baton daemon --install`. -->\n<plist version=\"1.0\">\n<dict>\n",
    );
    out.push_str(&format!(
        "  <key>Label</key>\n  {}\n",
        string(LAUNCHD_LABEL)
    ));
    out.push_str("  <key>ProgramArguments</key>\n  <array>\n");
    for a in &args {
        out.push_str(&format!("    {}\n", string(a)));
    }
    out.push_str("  </array>\n");
    if !spec.env.is_empty() {
        out.push_str("  <key>EnvironmentVariables</key>\n  <dict>\n");
        for (k, v) in &spec.env {
            out.push_str(&format!(
                "    <key>{}</key>\n    {}\n",
                xml_escape(k),
                string(v)
            ));
        }
        out.push_str("  </dict>\n");
    }
    let log = spec.log.to_string_lossy();
    out.push_str("  <key>RunAtLoad</key>\n  <true/>\n");
    // Restart when it exits with an error; a clean exit 0 (e.g. after SIGTERM) stays stopped.
    out.push_str("  <key>KeepAlive</key>\n  <dict>\n    <key>SuccessfulExit</key>\n    <false/>\n  </dict>\n");
    out.push_str("  <key>ThrottleInterval</key>\n  <integer>10</integer>\n");
    out.push_str("  <key>ProcessType</key>\n  <string>Background</string>\n");
    out.push_str(&format!(
        "  <key>StandardOutPath</key>\n  {}\n",
        string(&log)
    ));
    out.push_str(&format!(
        "  <key>StandardErrorPath</key>\n  {}\n",
        string(&log)
    ));
    out.push_str("</dict>\n</plist>\n");
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UnitSpec {
        UnitSpec {
            exe: "/opt/my tools/baton".into(),
            file: "/home/ann/.config/baton/schedule.lua".into(),
            env: vec![("BATON_STATE_DIR".into(), "/home/ann/state 100%".into())],
            log: "/home/ann/.local/state/baton/daemon.log".into(),
        }
    }

    #[test]
    fn systemd_unit_quotes_and_restarts() {
        let unit = render(Platform::Systemd, &spec());
        assert!(unit.contains("ExecStart=\"/opt/my tools/baton\" \"-v\" \"daemon\" \"/home/ann/.config/baton/schedule.lua\"\n"));
        assert!(unit.contains("Environment=\"BATON_STATE_DIR=/home/ann/state 100%%\"\n"));
        assert!(unit.contains("Restart=on-failure"));
        assert!(unit.contains("WantedBy=default.target"));
    }

    #[test]
    fn launchd_plist_escapes_and_keeps_alive() {
        let mut s = spec();
        s.file = "/Users/a&b/schedule.lua".into();
        let plist = render(Platform::Launchd, &s);
        assert!(plist.contains("<string>dev.baton.daemon</string>"));
        assert!(plist.contains("<string>/Users/a&amp;b/schedule.lua</string>"));
        assert!(plist.contains("<key>SuccessfulExit</key>\n    <false/>"));
        assert!(plist.contains("<key>RunAtLoad</key>\n  <true/>"));
    }

    #[test]
    fn platforms_and_paths() {
        assert_eq!(Platform::parse("macos").unwrap(), Platform::Launchd);
        assert_eq!(Platform::parse("Linux").unwrap(), Platform::Systemd);
        assert!(
            Platform::parse("windows")
                .unwrap_err()
                .to_string()
                .contains("\"windows\"")
        );
        assert_eq!(
            Platform::parse("Windows").unwrap_err().to_string(),
            "unknown platform \"windows\" (expected \"linux\" or \"macos\")"
        );
        let home = Path::new("/home/ann");
        assert_eq!(
            Platform::Systemd.install_path(home, None),
            Path::new("/home/ann/.config/systemd/user/baton-daemon.service")
        );
        assert_eq!(
            Platform::Launchd.install_path(home, None),
            Path::new("/home/ann/Library/LaunchAgents/dev.baton.daemon.plist")
        );
    }
}
