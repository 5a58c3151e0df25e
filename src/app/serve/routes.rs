//! The HTTP routes: the page (embedded in the binary) and its JSON API. Every error is a 4xx
//! with `{"error": "..."}` saying what was wrong; bodies are capped at `MAX_BODY`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State as Shared};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::state::{Refused, State};

/// The largest request body: an upload of a phone photo fits, a flood does not.
pub const MAX_BODY: usize = 8 << 20;

const INDEX: &str = include_str!("page/index.html");
const STYLE: &str = include_str!("page/style.css");
/// The page's scripts, in the order index.html loads them.
const SCRIPTS: [(&str, &str); 7] = [
    ("/common.js", include_str!("page/common.js")),
    ("/pad.js", include_str!("page/pad.js")),
    ("/answer.js", include_str!("page/answer.js")),
    ("/model.js", include_str!("page/model.js")),
    ("/testset.js", include_str!("page/testset.js")),
    ("/training.js", include_str!("page/training.js")),
    ("/main.js", include_str!("page/main.js")),
];

pub fn router(state: Arc<State>) -> Router {
    let scripts = SCRIPTS.iter().fold(Router::new(), |r, &(path, script)| {
        r.route(path, get(move || async move { page("text/javascript; charset=utf-8", script) }))
    });
    scripts
        .route("/", get(|| async { page("text/html; charset=utf-8", INDEX) }))
        .route("/style.css", get(|| async { page("text/css; charset=utf-8", STYLE) }))
        .route("/api/model", get(|Shared(s): Shared<Arc<State>>| async move { Json(s.model_json()) }))
        .route("/api/weights", get(|Shared(s): Shared<Arc<State>>| async move { Json(s.weights_json()) }))
        .route("/api/analyse", post(analyse))
        .route("/api/test/summary", get(summary))
        .route("/api/test/random", get(random_test))
        .route("/api/test/{index}", get(test_image))
        .route("/api/events", get(events))
        .route("/api/stop", post(stop))
        .route("/api/status", get(status))
        .fallback(unknown)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn page(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.0)
    }
}

async fn unknown(method: Method, uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no route {method} {}: the page is at /, its API under /api/", uri.path()))
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    let allowed = if path.starts_with("/api/analyse") || path == "/api/stop" { "POST" } else { "GET" };
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{path} takes {allowed}, not {method}"))
}

/// Already prepared grey levels, for scripts: `{"pixels": [784 values 0..255]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pixels {
    pixels: Vec<u8>,
}

/// An image file as the body (what the page's canvas and uploads send), or JSON `Pixels`.
async fn analyse(Shared(s): Shared<Arc<State>>, headers: HeaderMap, body: Body) -> Response {
    let too_large =
        || error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is too large: at most {} MiB", MAX_BODY >> 20));
    // An announced length over the cap is refused before any of the body is read.
    let announced = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    let analysis = if json {
        match serde_json::from_slice::<Pixels>(&body) {
            Ok(p) => s.analyse(&p.pixels, false, None, None),
            Err(e) => {
                return error(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}; send {{\"pixels\": [...]}}"));
            }
        }
    } else if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty body: send an image file (PNG, JPEG, ...)");
    } else {
        // Decoding and preparing a photo takes milliseconds: off the async workers.
        match tokio::task::spawn_blocking(move || s.analyse_image(&body)).await {
            Ok(a) => a,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("the analysis failed: {e}")),
        }
    };
    analysis.map(|a| Json(a).into_response()).unwrap_or_else(IntoResponse::into_response)
}

async fn summary(Shared(s): Shared<Arc<State>>) -> Response {
    match tokio::task::spawn_blocking(move || s.summary()).await {
        Ok(v) => Json(v.as_ref().clone()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the summary failed: {e}")),
    }
}

async fn random_test(Shared(s): Shared<Arc<State>>) -> Response {
    match s.test_size() {
        0 => Refused("no test set: start serve with --data".into()).into_response(),
        n => result(s.analyse_test(rand::random_range(0..n))),
    }
}

async fn test_image(Shared(s): Shared<Arc<State>>, Path(index): Path<String>) -> Response {
    match index.parse::<usize>() {
        Ok(i) => result(s.analyse_test(i)),
        Err(_) => error(StatusCode::BAD_REQUEST, format!("{index:?} is not a test image number")),
    }
}

fn result(r: Result<super::state::Analysis, Refused>) -> Response {
    r.map(|a| Json(a).into_response()).unwrap_or_else(IntoResponse::into_response)
}

/// The live run's events: its description and every report point so far, then each new one. A
/// page that goes away ends its stream (the receiver is dropped with it).
async fn events(Shared(s): Shared<Arc<State>>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (replay, rx) = match &s.live {
        Some(live) => {
            let (replay, rx) = live.subscribe();
            (replay, Some(rx))
        }
        None => (Vec::new(), None),
    };
    let to_event = |m: super::live::Message| Ok(SseEvent::default().event(m.name).data(m.data));
    let follow = stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(m) => return Some((m, Some(rx))),
                // A page this far behind misses a few points; it gets them all when it reconnects.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                // The run's hub is gone: nothing more will come (keep-alives hold the stream open).
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let stream = stream::iter(replay).chain(follow).chain(stream::pending()).map(to_event);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn stop(Shared(s): Shared<Arc<State>>) -> Response {
    match &s.live {
        None => error(StatusCode::CONFLICT, "no training run is live here: train --serve streams one"),
        Some(live) if live.stop() => Json(json!({ "stopping": true })).into_response(),
        Some(_) => error(StatusCode::CONFLICT, "the run has already ended"),
    }
}

/// For scripts and tests: whether a run is live, the pages following it, the weights' version.
async fn status(Shared(s): Shared<Arc<State>>) -> Json<Value> {
    let listeners = s.live.as_ref().map_or(0, |l| l.listeners());
    Json(json!({ "live": s.live.is_some(), "listeners": listeners, "version": s.version() }))
}
