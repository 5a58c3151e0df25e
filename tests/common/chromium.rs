//! Headless Chromium with WebGPU (Dawn; SwiftShader where there is no GPU), driven over the
//! DevTools protocol: it opens tests/chromium/replay.html and runs replay fixtures there, or
//! opens any page (`serve`'s), draws on it with the mouse and takes screenshots.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gpu_mnist::gpu::replay::{Fixture, floats};
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The browser to run: `GPU_MNIST_CHROMIUM`, else Debian's binary (not its wrapper script).
pub const CHROMIUM_ENV: &str = "GPU_MNIST_CHROMIUM";
const DEBIAN_CHROMIUM: &str = "/usr/lib/chromium/chromium";
/// How long one answer of the browser may take (a replay on SwiftShader takes seconds).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Chromium {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// What a fixture gave in the browser.
pub struct Replayed {
    pub adapter: String,
    pub seconds: f64,
    /// Per step, each output's values by name.
    pub outputs: Vec<std::collections::HashMap<String, Vec<f32>>>,
}

impl Chromium {
    /// Starts the browser on the replay page; panics saying what to install when it cannot.
    pub fn start() -> Chromium {
        let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chromium/replay.html");
        let url = format!("file://{}", page.display());
        Chromium::open(&url, "typeof replay === 'function'")
    }

    /// Starts the browser on `url` and waits until it has loaded and `ready` (a JavaScript
    /// expression) is true; panics saying what to install when it cannot.
    pub fn open(url: &str, ready: &str) -> Chromium {
        let exe = std::env::var(CHROMIUM_ENV).unwrap_or_else(|_| DEBIAN_CHROMIUM.into());
        let profile = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(&exe)
            .args(["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--remote-debugging-port=0"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs Chromium at {exe} (apt-get install chromium, or set {CHROMIUM_ENV}): {e}")
            });
        // The DevTools address is on stderr; the rest of stderr is drained so the browser never
        // blocks on a full pipe.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let devtools = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("{exe} printed no DevTools address within 30 s")
        });
        let (socket, _) = tungstenite::connect(devtools.as_str()).expect("connects to the DevTools socket");
        if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_read_timeout(Some(ANSWER_TIMEOUT)).expect("sets a read timeout");
        }
        let mut browser = Chromium { child, socket, session: String::new(), next_id: 0, _profile: profile };
        let target = browser.call("Target.createTarget", json!({ "url": url })).expect("opens a tab");
        let target = target["targetId"].as_str().expect("a target id").to_string();
        let attached = browser.call("Target.attachToTarget", json!({ "targetId": target, "flatten": true }));
        browser.session = attached.expect("attaches")["sessionId"].as_str().expect("a session id").to_string();
        // The tab may still be navigating (then an evaluation fails: its context goes away).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let ready = format!("document.readyState === 'complete' && ({ready})");
        while browser.evaluate(&ready) != Ok(Value::Bool(true)) {
            assert!(std::time::Instant::now() < deadline, "{url} did not load within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        browser
    }

    /// Sends `method` (to the page once attached) and returns its result, or the error.
    fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.socket.send(Message::text(msg.to_string())).expect("sends to the browser");
        loop {
            let answer = self.socket.read().unwrap_or_else(|e| panic!("{method}: no answer from the browser: {e}"));
            let Message::Text(text) = answer else { continue };
            let v: Value = serde_json::from_str(&text).expect("the browser answers JSON");
            if v["id"] == id {
                return match v["error"].is_null() {
                    true => Ok(v["result"].clone()),
                    false => Err(format!("{method}: {}", v["error"])),
                };
            }
        }
    }

    /// Evaluates `expression` in the page, awaiting a promise; its value, or the exception's text.
    pub fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let r = self.call("Runtime.evaluate", params)?;
        match r.get("exceptionDetails") {
            Some(e) => Err(e["exception"]["description"].as_str().unwrap_or(&e.to_string()).to_string()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Waits until `expression` is true in the page (polling every 50 ms), up to `limit`.
    pub fn wait_for(&mut self, expression: &str, limit: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.evaluate(expression) {
                Ok(Value::Bool(true)) => return Ok(()),
                other if std::time::Instant::now() >= deadline => {
                    return Err(format!("{expression} still not true after {limit:?}: {other:?}"));
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Makes the page's viewport `width` x `height` CSS pixels.
    pub fn viewport(&mut self, width: u32, height: u32) {
        let params = json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false });
        self.call("Emulation.setDeviceMetricsOverride", params).expect("sets the viewport");
    }

    /// A mouse event at page coordinates (x, y): "mousePressed", "mouseMoved" or
    /// "mouseReleased", with the left button (the page sees pointer events too).
    pub fn mouse(&mut self, kind: &str, x: f64, y: f64) {
        let buttons = if kind == "mouseReleased" { 0 } else { 1 };
        let params = json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1 });
        self.call("Input.dispatchMouseEvent", params).unwrap_or_else(|e| panic!("{kind} at ({x}, {y}): {e}"));
    }

    /// Draws `strokes` (each a polyline in page coordinates) as a hand would: press, move through
    /// the points, release.
    pub fn draw(&mut self, strokes: &[Vec<(f64, f64)>]) {
        for stroke in strokes {
            let Some(&(x, y)) = stroke.first() else { continue };
            self.mouse("mousePressed", x, y);
            for &(x, y) in &stroke[1..] {
                self.mouse("mouseMoved", x, y);
            }
            let &(x, y) = stroke.last().expect("a point");
            self.mouse("mouseReleased", x, y);
        }
    }

    /// A PNG of the page as shown, the whole page when `full` (beyond the viewport).
    pub fn screenshot(&mut self, full: bool) -> Vec<u8> {
        let params = json!({ "format": "png", "captureBeyondViewport": full });
        let shot = self.call("Page.captureScreenshot", params).expect("takes a screenshot");
        let data = shot["data"].as_str().expect("base64 PNG");
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).expect("valid base64")
    }

    /// Runs `fixture` in the page; fails on any validation error the implementation reported.
    pub fn replay(&mut self, fixture: &Fixture) -> Replayed {
        let text = serde_json::to_string(fixture).expect("the fixture encodes");
        let v = self.evaluate(&format!("replay({text})")).unwrap_or_else(|e| panic!("the replay failed: {e}"));
        let errors = v["errors"].as_array().expect("errors");
        assert!(errors.is_empty(), "the browser's WebGPU reported: {errors:?}");
        let outputs = v["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|step| {
                let step = step.as_object().expect("one object per step");
                step.iter().map(|(k, b64)| (k.clone(), floats(b64.as_str().expect("base64")).expect("f32s"))).collect()
            })
            .collect();
        Replayed {
            adapter: v["adapter"].as_str().unwrap_or("?").to_string(),
            seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
            outputs,
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
