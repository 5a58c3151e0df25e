//! A `gpu-mnist serve` (or `train --serve`) process and a plain HTTP/1.0 client for it: requests
//! over a TcpStream (no client library to hide what goes over the wire) and a reader of its
//! Server-Sent Events.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// How long a server may take to start (a training run loads MNIST first).
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Served {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub url: String,
    lines: mpsc::Receiver<String>,
    pub scratch: tempfile::TempDir,
}

impl Served {
    /// Runs the program with `args` (which should ask for port 0) and waits for its address.
    pub fn start(args: &[&str]) -> Served {
        let scratch = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"));
        cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR")).env("GPU_MNIST_CACHE_DIR", scratch.path());
        if args.first() == Some(&"train") && !args.contains(&"--out") {
            cmd.arg("--out").arg(scratch.path().join("model.safetensors"));
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let url = loop {
            match lines.recv_timeout(START_TIMEOUT) {
                Ok(line) => match line.find("http://") {
                    Some(at) => break line[at..].split_whitespace().next().expect("a URL").to_string(),
                    None => seen.push(line),
                },
                Err(_) => {
                    let _ = child.kill();
                    panic!("no address printed within {START_TIMEOUT:?}; printed:\n{}", seen.join("\n"))
                }
            }
        };
        let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
        Served { child, addr, url, lines, scratch }
    }

    /// Lines printed since the last call (or the address), waiting up to `limit` for one that
    /// contains `until`.
    pub fn printed_until(&self, until: &str, limit: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + limit;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(until);
                    out.push(line);
                    if done {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        out
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn get(&self, path: &str) -> Reply {
        request(&self.addr, "GET", path, None, b"")
    }

    pub fn post(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        request(&self.addr, "POST", path, content_type, body)
    }

    pub fn events(&self) -> Events {
        Events::connect(&self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON: {}\n{}", self.head, String::from_utf8_lossy(&self.body)))
    }

    /// The `error` message of a JSON error reply.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error message: {}", self.json())).to_string()
    }
}

/// One HTTP/1.0 request (so the reply is never chunked and ends when the server closes).
pub fn request(addr: &str, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("a read timeout");
    let kind = content_type.map(|k| format!("Content-Type: {k}\r\n")).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{kind}Content-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).expect("sends the request");
    // A server may answer and close before reading a body it refuses: that is its right.
    let _ = s.write_all(body);
    read_reply(s)
}

/// Sends only the head of a request that announces `length` bytes of body, and the first few.
pub fn announce(addr: &str, path: &str, length: usize) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("a read timeout");
    let head = format!("POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {length}\r\n\r\n");
    s.write_all(head.as_bytes()).expect("sends the head");
    let _ = s.write_all(&[0u8; 1024]);
    read_reply(s)
}

fn read_reply(mut s: TcpStream) -> Reply {
    let mut raw = Vec::new();
    // A reset after the reply (an unread body) still leaves the reply read.
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no HTTP reply: {:?}", String::from_utf8_lossy(&raw));
    });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    Reply { status, head, body: raw[split + 4..].to_vec() }
}

/// A stream of Server-Sent Events.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    pub fn connect(addr: &str) -> Events {
        let mut s = TcpStream::connect(addr).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(120))).expect("a read timeout");
        s.write_all(
            format!("GET /api/events HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n").as_bytes(),
        )
        .expect("sends the request");
        let mut reader = BufReader::new(s);
        let mut line = String::new();
        reader.read_line(&mut line).expect("a status line");
        assert!(line.contains(" 200 "), "{line}");
        loop {
            line.clear();
            reader.read_line(&mut line).expect("a header");
            assert!(!line.is_empty(), "the stream ended in its headers");
            if line == "\r\n" {
                break;
            }
        }
        Events { reader }
    }

    /// The next event's name and data (keep-alive comments skipped); None when the stream ends.
    pub fn next(&mut self) -> Option<(String, Value)> {
        let (mut name, mut data) = (String::from("message"), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if data.is_empty() {
                    continue;
                }
                return Some((name, serde_json::from_str(&data).expect("JSON data")));
            }
            if let Some(v) = l.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = l.strip_prefix("data:") {
                data += v.trim_start();
            }
        }
    }
}
