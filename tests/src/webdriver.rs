//! A minimal W3C WebDriver client (over reqwest) and a headless Chromium driven through a
//! `chromedriver` child process, for tests of what runs in a real browser (the tracking script).
//!
//! `scripts/setup` installs both (`chromium`, `chromium-driver`); `FLYWHEEL_TEST_CHROMEDRIVER` and
//! `FLYWHEEL_TEST_CHROMIUM` point elsewhere. Only the commands the tests need are here.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn chromedriver_path() -> String {
    std::env::var("FLYWHEEL_TEST_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned())
}
fn chromium_path() -> String {
    std::env::var("FLYWHEEL_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// What went wrong talking to the browser.
#[derive(Debug)]
pub enum WebDriverError {
    /// chromedriver could not be started or did not become ready (is it installed?).
    Start(String),
    /// The HTTP exchange with chromedriver failed.
    Http(reqwest::Error),
    /// chromedriver answered with a WebDriver error, e.g. `no such element` or `javascript error`.
    Command { status: u16, error: String, message: String },
    /// The answer did not have the shape the protocol specifies.
    Protocol(String),
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebDriverError::Start(why) => write!(f, "cannot start chromedriver: {why}"),
            WebDriverError::Http(e) => write!(f, "WebDriver HTTP exchange failed: {e}"),
            WebDriverError::Command { status, error, message } => {
                write!(f, "WebDriver error {status} {error}: {message}")
            }
            WebDriverError::Protocol(what) => write!(f, "unexpected WebDriver answer: {what}"),
        }
    }
}

impl std::error::Error for WebDriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WebDriverError::Http(e) => Some(e),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for WebDriverError {
    fn from(e: reqwest::Error) -> Self {
        WebDriverError::Http(e)
    }
}

pub type Result<T, E = WebDriverError> = std::result::Result<T, E>;

/// A `chromedriver` on a free loopback port, shut down (with its browsers) when dropped.
pub struct ChromeDriver {
    child: Child,
    port: u16,
    base: String,
    client: reqwest::Client,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it accepts sessions.
    pub async fn start() -> Result<ChromeDriver> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| WebDriverError::Start(format!("HTTP client: {e}")))?;
        let mut last_error = String::new();
        // The free port is found by binding and releasing it; another process may take it in
        // between, in which case chromedriver exits and another port is tried.
        for _ in 0..3 {
            let port = crate::free_port();
            let child = Command::new(chromedriver_path())
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    WebDriverError::Start(format!(
                        "{} (scripts/setup installs chromium-driver): {e}",
                        chromedriver_path()
                    ))
                })?;
            let mut driver =
                ChromeDriver { child, port, base: format!("http://127.0.0.1:{port}"), client: client.clone() };
            match driver.wait_ready(Duration::from_secs(15)).await {
                Ok(()) => return Ok(driver),
                Err(e) => last_error = e,
            }
        }
        Err(WebDriverError::Start(last_error))
    }

    async fn wait_ready(&mut self, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromedriver exited with {status}"));
            }
            if let Ok(resp) = self.client.get(format!("{}/status", self.base)).send().await
                && let Ok(body) = resp.json::<Value>().await
                && body["value"]["ready"] == json!(true)
            {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!("chromedriver not ready on port {} after {deadline:?}", self.port));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens a headless Chromium session.
    pub async fn session(&self) -> Result<Session> {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_path(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            },
        }}});
        let value =
            command(&self.client, reqwest::Method::POST, format!("{}/session", self.base), Some(capabilities)).await?;
        let id = value["sessionId"]
            .as_str()
            .ok_or_else(|| WebDriverError::Protocol(format!("new session without a sessionId: {value}")))?;
        Ok(Session { client: self.client.clone(), base: format!("{}/session/{id}", self.base) })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `/shutdown` makes chromedriver close its browsers and exit; killing it outright would
        // leave the browsers running as orphans. Killing is the fallback.
        let _ = request_shutdown(self.port);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /shutdown` over a blocking socket, as `Drop` cannot await.
fn request_shutdown(port: u16) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(())
}

/// Sends one WebDriver command and returns the `value` of its answer.
async fn command(client: &reqwest::Client, method: reqwest::Method, url: String, body: Option<Value>) -> Result<Value> {
    let mut req = client.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let mut body: Value = resp.json().await?;
    let value = body.get_mut("value").map(Value::take).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    Err(WebDriverError::Command {
        status: status.as_u16(),
        error: value["error"].as_str().unwrap_or("unknown error").to_owned(),
        message: value["message"].as_str().unwrap_or_default().to_owned(),
    })
}

/// One browser session (a headless Chromium with one window).
pub struct Session {
    client: reqwest::Client,
    base: String,
}

/// A reference to an element of the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

/// A cookie of the current page's origin, as WebDriver describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: Option<String>,
    pub domain: Option<String>,
    /// Seconds since the Unix epoch; absent for a session cookie.
    pub expiry: Option<u64>,
    pub same_site: Option<String>,
}

impl Session {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        command(&self.client, method, format!("{}{path}", self.base), body).await
    }

    /// Navigates to `url` and waits until the page has loaded.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await.map(drop)
    }

    /// The URL of the current page.
    pub async fn current_url(&self) -> Result<String> {
        let value = self.call(reqwest::Method::GET, "/url", None).await?;
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| WebDriverError::Protocol(format!("URL is not a string: {value}")))
    }

    /// The first element matching the CSS `selector`.
    pub async fn find(&self, selector: &str) -> Result<Element> {
        let value = self
            .call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": selector})))
            .await?;
        value[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_owned()))
            .ok_or_else(|| WebDriverError::Protocol(format!("not an element reference: {value}")))
    }

    /// Clicks the element (scrolled into view, at its center), as a user would.
    pub async fn click(&self, element: &Element) -> Result<()> {
        // A POST without parameters still carries an empty JSON object.
        self.call(reqwest::Method::POST, &format!("/element/{}/click", element.0), Some(json!({}))).await.map(drop)
    }

    /// Types `text` into the element.
    pub async fn send_keys(&self, element: &Element, text: &str) -> Result<()> {
        self.call(reqwest::Method::POST, &format!("/element/{}/value", element.0), Some(json!({ "text": text })))
            .await
            .map(drop)
    }

    /// Runs `script` as the body of a function in the page (`arguments` holds `args`) and
    /// returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// The cookies visible to the current page.
    pub async fn cookies(&self) -> Result<Vec<Cookie>> {
        let value = self.call(reqwest::Method::GET, "/cookie", None).await?;
        let list =
            value.as_array().ok_or_else(|| WebDriverError::Protocol(format!("cookies are not a list: {value}")))?;
        list.iter()
            .map(|c| {
                let text = |k: &str| c[k].as_str().map(str::to_owned);
                Ok(Cookie {
                    name: text("name")
                        .ok_or_else(|| WebDriverError::Protocol(format!("cookie without a name: {c}")))?,
                    value: text("value").unwrap_or_default(),
                    path: text("path"),
                    domain: text("domain"),
                    expiry: c["expiry"].as_u64(),
                    same_site: text("sameSite"),
                })
            })
            .collect()
    }

    /// Ends the session and closes its browser.
    pub async fn delete(self) -> Result<()> {
        self.call(reqwest::Method::DELETE, "", None).await.map(drop)
    }
}
