//! `gpu-mnist serve` and `train --serve`: a local web page that reads the digit you draw, shows
//! the model's weights and activations and the test set's mistakes, and follows a training run
//! live. The HTTP server (axum on tokio) runs on threads of its own; training stays on the main
//! thread and hands the page its weights at report points only.

mod live;
mod routes;
mod state;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::serve::ListenerExt;

use super::cli::ServeArgs;
use gpu_mnist::checkpoint;
use gpu_mnist::data::DatasetKind;
pub use live::{Live, Position};
pub use state::{Shown, State};

/// A running server: its address; it stops with the process.
pub struct Server {
    pub url: String,
}

/// Binds `host:port` (port 0: any free one) and serves `state` from two worker threads.
pub fn start(state: Arc<State>, host: IpAddr, port: u16) -> Result<Server> {
    if !host.is_loopback() {
        println!("warning: serving on {host}, not loopback: anyone who can reach this machine can use the page");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve")
        .enable_all()
        .build()
        .context("starting the web server's threads")?;
    let addr = SocketAddr::new(host, port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("listening on {addr} (another program may hold the port: try --port 0 for any)"))?;
    let bound = listener.local_addr().context("reading the server's address")?;
    let url = match bound.ip() {
        IpAddr::V6(ip) => format!("http://[{ip}]:{}/", bound.port()),
        IpAddr::V4(ip) => format!("http://{ip}:{}/", bound.port()),
    };
    std::thread::Builder::new()
        .name("serve".into())
        .spawn(move || {
            runtime.block_on(async move {
                // No Nagle delay: an answer to a stroke is one small write, and 40 ms of waiting
                // for more would break the page's budget.
                let listener = listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
                if let Err(e) = axum::serve(listener, routes::router(state)).await {
                    eprintln!("the web server stopped: {e}");
                }
            })
        })
        .context("starting the web server's thread")?;
    Ok(Server { url })
}

/// Opens `url` in the desktop's browser; says what to do when there is none.
pub fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let spawned = if cfg!(windows) {
        std::process::Command::new("cmd").args(["/C", "start", "", url]).spawn()
    } else {
        std::process::Command::new(opener).arg(url).spawn()
    };
    if let Err(e) = spawned {
        println!("could not open a browser ({opener}: {e}): open {url} yourself");
    }
}

/// Blocks until Ctrl-C sets `stop`.
pub fn wait_for(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The class names of the data set a model was trained on.
pub fn class_names(dataset: &str) -> Vec<String> {
    let kind = DatasetKind::from_name(dataset);
    (0..10).map(|c| kind.class_name(c)).collect()
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let path = gpu_mnist::data::source::bundled(&args.model, "data/model.safetensors");
    let model = checkpoint::load_with(&path, args.model_options.load())?;
    let kind = args.data.dataset.unwrap_or(DatasetKind::from_name(&model.provenance.dataset));
    // Without a test set the page still reads drawings; it says why its test panel is empty.
    let test = match super::eval::test_set(&args.data, kind, &model.params, &path) {
        Ok((test, from)) => {
            println!("test set: {} images from {}", test.n, from.display());
            Some(test)
        }
        Err(e) => {
            println!("no test set ({e:#}): the page reads drawings and uploads only");
            None
        }
    };
    let shown = Shown::new(path.display().to_string(), &model);
    println!("model: {} ({} {})", path.display(), model.params.shape.describe(), model.activation.name());
    let state = Arc::new(State::new(shown, class_names(&model.provenance.dataset), test, None));
    let stop = super::train::stop_on_ctrl_c()?;
    let server = start(state, args.host, args.port)?;
    println!("serving {} (Ctrl-C stops)", server.url);
    if args.open {
        open_browser(&server.url);
    }
    wait_for(&stop);
    Ok(())
}

/// `train --serve`: the page of one run. The loop's events go to `watch`; `finish` tells the
/// page how the run ended and keeps serving until Ctrl-C.
pub struct Page {
    state: Arc<State>,
    pub url: String,
}

impl Page {
    /// Starts serving the run of `plan`, whose weights start as `params`, on 127.0.0.1:`port`.
    pub fn start(
        plan: &gpu_mnist::plan::TrainPlan,
        params: &gpu_mnist::model::Params,
        test: &gpu_mnist::data::Dataset,
        out: &std::path::Path,
        port: u16,
        stop: Arc<AtomicBool>,
    ) -> Result<Page> {
        let kind = plan.data.source.kind;
        let mut made = std::collections::BTreeMap::new();
        made.insert("run", super::report::describe_model(plan));
        made.insert("optimizer", super::report::describe_optimizer(&plan.optimizer));
        made.insert("dataset", kind.name().to_string());
        made.insert("saved to", out.display().to_string());
        let name = format!("live run (saves to {})", out.display());
        let shown = Shown { name, params: params.clone(), activation: plan.activation, made, version: 1 };
        let run = serde_json::json!({
            "backend": format!("{} (opening)", plan.backend.name()),
            "steps": plan.steps.count,
            "batches": plan.batching.batches,
            "model": format!("{} {}", plan.shape.describe(), plan.activation.name()),
        });
        let position = Position { batches: plan.batching.batches, done: plan.steps.done, origin: plan.batching.origin };
        let live = Live::new(run, position, stop);
        let classes = (0..10).map(|c| kind.class_name(c)).collect();
        let test = (test.n > 0).then(|| test.clone());
        let state = Arc::new(State::new(shown, classes, test, Some(live)));
        let server = start(state.clone(), IpAddr::from([127, 0, 0, 1]), port)?;
        println!("serving the run at {} (the page stays up after it until Ctrl-C)", server.url);
        Ok(Page { state, url: server.url })
    }

    fn live(&self) -> &Live {
        self.state.live.as_ref().expect("a run's page is live")
    }

    /// Names the backend the run trains on, for pages that connect from now on.
    pub fn backend(&self, name: &str, device: &str) {
        self.live().backend(format!("{name} ({device})"));
    }

    /// Follows the training loop (the session's `watch`).
    pub fn watch(&self, event: &gpu_mnist::train::Event) {
        self.live().observe(event, |params| {
            self.state.update(params.clone());
            self.state.version()
        });
    }

    /// Tells the page how the run ended. Unless Ctrl-C ended it, keeps serving until Ctrl-C.
    pub fn finish(&self, ended: &Result<gpu_mnist::train::Summary>, stop: &AtomicBool) {
        let live = self.live();
        let from_page = live.stopped_from_page();
        let (message, stopped) = match ended {
            Ok(s) if s.test.n > 0 => {
                let acc = 100.0 * s.test.accuracy();
                (format!("done: {} iterations, test accuracy {acc:.2}%", s.iterations), false)
            }
            Ok(s) => (format!("done: {} iterations", s.iterations), false),
            Err(e) => (format!("{e:#}"), from_page),
        };
        live.finish(message, stopped);
        if ended.is_err() && !from_page && stop.load(Ordering::SeqCst) {
            return; // Ctrl-C: the user wants the terminal back.
        }
        // The stop button set the flag Ctrl-C sets; from now on Ctrl-C alone sets it.
        stop.store(false, Ordering::SeqCst);
        println!("the page is still at {} (Ctrl-C stops)", self.url);
        wait_for(stop);
    }
}
