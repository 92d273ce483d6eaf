//! Headless Chromium driven through chromedriver (WebDriver), for the pages people read: the
//! console and the replay report. Both come from Debian's packages (scripts/setup-test-deps.sh
//! prints ECSP_CHROMIUM and ECSP_CHROMEDRIVER).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};

/// A tool the setup script installs, from its environment line.
pub fn tool(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run `eval \"$(scripts/setup-test-deps.sh | sed 's/^/export /')\"` first")
    });
    assert!(path.exists(), "{var}={} does not exist: run scripts/setup-test-deps.sh", path.display());
    path
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A WebDriver session on headless Chromium; chromedriver is killed when this is dropped.
pub struct Browser {
    /// The session.
    pub client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose profile lives in `profile`.
    pub async fn start(profile: &Path) -> Browser {
        let (chromium, chromedriver) = (tool("ECSP_CHROMIUM"), tool("ECSP_CHROMEDRIVER"));
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1600", format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let webdriver = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = super::engine::wait_for("chromedriver accepts a session", Duration::from_secs(60), || {
            let (caps, connector, webdriver) = (caps.clone(), connector.clone(), webdriver.clone());
            async move { ClientBuilder::new(connector).capabilities(caps).connect(&webdriver).await.ok() }
        }, || format!("chromedriver at {webdriver} took no session"))
        .await;
        Browser { client, driver }
    }

    /// Saves a screenshot of the page under the test target's temporary directory as `name`
    /// (kept for a look after the run) and returns its path.
    pub async fn keep_screenshot(&self, target_tmp: &Path, name: &str) -> PathBuf {
        let shot = self.client.screenshot().await.expect("a screenshot");
        assert!(shot.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        let artifact = target_tmp.join(name);
        std::fs::write(&artifact, &shot).unwrap();
        eprintln!("screenshot: {}", artifact.display());
        artifact
    }
}
