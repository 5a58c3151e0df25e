//! A live training run as the page sees it: report points as Server-Sent Events, kept so that a
//! page that connects (or reconnects) mid-run is sent the whole history first, and the stop
//! button's flag (the one Ctrl-C sets).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use gpu_mnist::model::Stats;
use gpu_mnist::train::Event;

/// Messages a slow page may fall behind by before it misses some (it then reloads the history).
const BACKLOG: usize = 1024;

/// One Server-Sent Event: its name and JSON data.
#[derive(Clone, Debug)]
pub struct Message {
    pub name: &'static str,
    pub data: String,
}

/// Where a report point falls in the run, to count epochs as the terminal does.
pub struct Position {
    /// Steps per epoch (1: full batch).
    pub batches: usize,
    /// The model's steps before this run, and the step its epochs count from.
    pub done: usize,
    pub origin: usize,
}

pub struct Live {
    run: Mutex<Message>,
    position: Position,
    history: Mutex<History>,
    tx: broadcast::Sender<Message>,
    stop: Arc<AtomicBool>,
    stopped_from_page: AtomicBool,
}

#[derive(Default)]
struct History {
    sent: Vec<Message>,
    /// A report point waiting for its weights (the loop sends `Snapshot` just after `Report`).
    pending: Option<Value>,
}

impl Live {
    /// `run` describes the run (backend, steps, model); `stop` ends it as Ctrl-C does.
    pub fn new(run: Value, position: Position, stop: Arc<AtomicBool>) -> Live {
        let run = Mutex::new(Message { name: "run", data: run.to_string() });
        let (tx, _) = broadcast::channel(BACKLOG);
        let history = Mutex::new(History::default());
        Live { run, position, history, tx, stop, stopped_from_page: AtomicBool::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a newly connected page is sent first, and the receiver of what follows: taken under
    /// one lock, so nothing is missed or sent twice.
    pub fn subscribe(&self) -> (Vec<Message>, broadcast::Receiver<Message>) {
        let history = self.lock();
        let run = self.run.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let replay = std::iter::once(run).chain(history.sent.iter().cloned()).collect();
        (replay, self.tx.subscribe())
    }

    /// Names the backend in the run's description (known once it is open).
    pub fn backend(&self, backend: String) {
        let _history = self.lock();
        let mut run = self.run.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut v) = serde_json::from_str::<Value>(&run.data) {
            v["backend"] = json!(backend);
            run.data = v.to_string();
        }
        // Pages already connected hear it too.
        let _ = self.tx.send(run.clone());
    }

    /// Pages connected to the stream now.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    fn publish(&self, history: &mut History, name: &'static str, data: Value) {
        let m = Message { name, data: data.to_string() };
        history.sent.push(m.clone());
        // No page connected is not an error: the history keeps it.
        let _ = self.tx.send(m);
    }

    /// Follows the training loop's events; `update` takes the weights of each report point and
    /// returns their version.
    pub fn observe(&self, event: &Event, update: impl FnOnce(&gpu_mnist::model::Params) -> u64) {
        let mut history = self.lock();
        match event {
            Event::Report { iteration, train, validation, test, seconds } => {
                if let Some(p) = history.pending.take() {
                    self.publish(&mut history, "report", p);
                }
                let p = &self.position;
                let epoch =
                    (p.batches > 1).then(|| (p.done + iteration).saturating_sub(p.origin) as f64 / p.batches as f64);
                let stats = |s: &Stats| json!({ "loss": s.loss, "accuracy": s.accuracy() });
                history.pending = Some(json!({
                    "iteration": iteration,
                    "epoch": epoch,
                    "seconds": seconds,
                    "iterations_per_second": *iteration as f64 / seconds.max(1e-9),
                    "train": stats(train),
                    "validation": validation.as_ref().map(stats),
                    "test": test.as_ref().map(stats),
                }));
            }
            Event::Snapshot { params, .. } => {
                if let Some(mut p) = history.pending.take() {
                    p["version"] = json!(update(params));
                    self.publish(&mut history, "report", p);
                }
            }
            _ => {}
        }
    }

    /// The run has ended: `message` says how (and how to continue a stopped run).
    pub fn finish(&self, message: String, stopped: bool) {
        let mut history = self.lock();
        if let Some(p) = history.pending.take() {
            self.publish(&mut history, "report", p);
        }
        self.publish(&mut history, "done", json!({ "message": message, "stopped": stopped }));
    }

    /// The page's stop button: ends the run after the current step, as Ctrl-C does. False when the
    /// run has already ended.
    pub fn stop(&self) -> bool {
        let ended = self.lock().sent.iter().any(|m| m.name == "done");
        if !ended {
            self.stopped_from_page.store(true, Ordering::SeqCst);
            self.stop.store(true, Ordering::SeqCst);
        }
        !ended
    }

    pub fn stopped_from_page(&self) -> bool {
        self.stopped_from_page.load(Ordering::SeqCst)
    }
}
