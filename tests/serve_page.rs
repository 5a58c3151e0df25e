//! `serve`'s page in a real browser (headless Chromium over the DevTools protocol): digits drawn
//! on the pad with mouse events are read, within the page's latency budget, and a live run's
//! curve grows as the run goes. Screenshots go to `GPU_MNIST_SCREENSHOTS` when it names a folder
//! (docs/serve.png and docs/serve-training.png come from there).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::chromium::Chromium;
use common::http::Served;
use serde_json::Value;

/// From the last stroke to the answer on the page, on this project's 2-core machine.
const LATENCY_BUDGET_MS: f64 = 50.0;
/// The two tests take turns: a training run on the same cores would time the other's answers.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
const READY: &str = "window.gpuMnist && window.gpuMnist.ready === true";

fn screenshot(browser: &mut Chromium, name: &str) {
    let png = browser.screenshot(false);
    let img = image::load_from_memory(&png).expect("the screenshot is a PNG");
    assert!(img.width() >= 1000 && img.height() >= 800, "{}x{}", img.width(), img.height());
    if let Ok(dir) = std::env::var("GPU_MNIST_SCREENSHOTS") {
        let path = std::path::Path::new(&dir).join(name);
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

/// The pad's top-left corner in page coordinates.
fn pad_origin(browser: &mut Chromium) -> (f64, f64) {
    let r = browser.evaluate(
        "(() => { const r = document.getElementById('pad').getBoundingClientRect(); return [r.left, r.top]; })()",
    );
    let r = r.expect("the pad's place");
    (r[0].as_f64().expect("left"), r[1].as_f64().expect("top"))
}

/// Strokes of a digit as a hand draws it on the 280 x 280 pad.
fn strokes(digit: u8) -> Vec<Vec<(f64, f64)>> {
    let line = |a: (f64, f64), b: (f64, f64), n: usize| -> Vec<(f64, f64)> {
        (0..=n).map(|i| i as f64 / n as f64).map(|t| (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))).collect()
    };
    match digit {
        1 => vec![line((150.0, 40.0), (135.0, 240.0), 20)],
        7 => vec![[line((70.0, 60.0), (210.0, 60.0), 14), line((210.0, 60.0), (125.0, 235.0), 18)].concat()],
        0 => {
            let ring = (0..=48).map(|i| i as f64 / 48.0 * std::f64::consts::TAU);
            vec![ring.map(|a| (140.0 + 62.0 * a.sin(), 140.0 - 92.0 * a.cos())).collect()]
        }
        _ => unreachable!("only 0, 1 and 7 are drawn"),
    }
}

fn state(browser: &mut Chromium) -> Value {
    browser.evaluate("JSON.parse(JSON.stringify(window.gpuMnist))").expect("the page's state")
}

#[test]
#[ignore = "needs Chromium (apt-get install chromium)"]
fn digits_drawn_on_the_pad_are_read_within_the_budget() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Served::start(&["serve", "--port", "0"]);
    let mut browser = Chromium::open(&s.url, READY);
    browser.viewport(1280, 900);
    let mut latencies = Vec::new();
    for digit in [7, 1, 0] {
        browser.evaluate("document.getElementById('clear').click(), true").expect("clears the pad");
        let before = state(&mut browser)["analyses"].as_u64().unwrap_or(0);
        let (x0, y0) = pad_origin(&mut browser);
        let shifted: Vec<Vec<(f64, f64)>> =
            strokes(digit).into_iter().map(|s| s.into_iter().map(|(x, y)| (x0 + x, y0 + y)).collect()).collect();
        browser.evaluate("window.gpuMnist.lastLatencyMs = null, true").expect("resets the latency");
        browser.draw(&shifted);
        browser
            .wait_for("window.gpuMnist.lastLatencyMs !== null", Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("digit {digit}: no answer after the last stroke: {e}"));
        let after = state(&mut browser);
        assert!(after["analyses"].as_u64().unwrap_or(0) > before, "digit {digit}: {after}");
        let text = browser.evaluate("document.getElementById('prediction').textContent").expect("the answer");
        let text = text.as_str().unwrap_or_default().trim().to_string();
        assert!(text.starts_with(&digit.to_string()), "drew a {digit}, the page says {text:?}");
        latencies.push(after["lastLatencyMs"].as_f64().expect("a latency"));
        if digit == 7 {
            screenshot(&mut browser, "serve.png");
        }
    }
    println!("last stroke to answer: {latencies:?} ms");
    let median = {
        let mut l = latencies.clone();
        l.sort_by(f64::total_cmp);
        l[l.len() / 2]
    };
    assert!(median <= LATENCY_BUDGET_MS, "median {median:.1} ms from the last stroke to the answer: {latencies:?}");
}

#[test]
#[ignore = "needs Chromium (apt-get install chromium)"]
fn the_page_follows_a_live_run_and_its_curve_grows() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let args = ["train", "--serve", "0", "--samples", "6000", "--test-samples", "1000", "--iterations", "300"];
    let s = Served::start(&[&args[..], &["--eval-every", "5", "--backend", "cpu", "--threads", "1"]].concat());
    let mut browser = Chromium::open(&s.url, READY);
    browser.viewport(1280, 900);
    browser.wait_for("window.gpuMnist.reports >= 2", Duration::from_secs(60)).expect("report points arrive");
    let seen = state(&mut browser)["reports"].as_u64().expect("reports");
    browser
        .wait_for(&format!("window.gpuMnist.reports > {seen}"), Duration::from_secs(60))
        .expect("the curve grows while the run goes on");
    let shown = browser.evaluate("getComputedStyle(document.getElementById('training-panel')).display");
    assert_ne!(shown, Ok(Value::String("none".into())), "the training panel is shown");
    browser
        .wait_for("/done/.test(document.getElementById('run-status').textContent)", Duration::from_secs(120))
        .expect("the page says the run is done");
    let reports = state(&mut browser)["reports"].as_u64().expect("reports");
    assert_eq!(reports, 60, "every report point once, however the page connected");
    browser.evaluate("document.getElementById('training-panel').scrollIntoView(), true").expect("scrolls");
    screenshot(&mut browser, "serve-training.png");
}
