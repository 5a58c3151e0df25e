//! `gpu-mnist serve` and `train --serve` over HTTP: what the page's API answers, that a live
//! run streams its report points (replayed to a page that connects late) and stops from the
//! page, and that bad requests get a 4xx with a message and leave the server serving.

mod common;

use std::time::Duration;

use base64::Engine;
use common::http::{Served, announce};
use common::tolerance::FAST_PATH;
use gpu_mnist::checkpoint;
use gpu_mnist::cpu::fast::{self, SparseRows};
use gpu_mnist::digit;
use image::{GrayImage, ImageFormat, Luma, imageops};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number") as f32).collect()
}

/// Test digit `i` of MNIST as a photo would show it: dark ink on light paper, scaled up, off centre.
fn photo(i: usize) -> Vec<u8> {
    let small = GrayImage::from_raw(28, 28, common::mnist().test.image(i).to_vec()).expect("28x28");
    let big = imageops::resize(&small, 140, 140, imageops::FilterType::Triangle);
    let mut page = GrayImage::from_pixel(200, 180, Luma([240]));
    for (x, y, p) in big.enumerate_pixels() {
        page.put_pixel(x + 30, y + 12, Luma([240 - (p[0] as u32 * 220 / 255) as u8]));
    }
    let mut png = Vec::new();
    page.write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png).expect("PNG");
    png
}

#[test]
fn the_page_and_its_api_answer_about_the_shipped_model() {
    let s = Served::start(&["serve", "--port", "0"]);
    let model = checkpoint::load(std::path::Path::new("data/model.safetensors")).expect("the shipped model");
    let page = s.get("/");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("id=\"pad\"") && html.contains("id=\"prediction\""), "{html}");
    // Every script and style sheet the page loads is served.
    let assets: Vec<&str> =
        html.split("src=\"").chain(html.split("href=\"")).skip(1).filter_map(|p| p.split('"').next()).collect();
    assert!(assets.len() >= 2, "{assets:?}");
    for asset in assets.into_iter().filter(|a| a.starts_with('/')) {
        let r = s.get(asset);
        assert!(r.status == 200 && !r.body.is_empty(), "{asset}: {}", r.head);
    }

    let m = s.get("/api/model").json();
    assert_eq!(m["widths"], serde_json::json!([784, 300, 10]));
    assert_eq!(m["live"], false);
    assert_eq!(m["parameters"], 784 * 300 + 300 + 300 * 10 + 10);
    assert_eq!(m["made"]["dataset"], "mnist", "{m}");

    // The tiles are the first layer's columns: unit u's weight from pixel i at u * 784 + i.
    let w = s.get("/api/weights").json();
    let bytes = base64::engine::general_purpose::STANDARD.decode(w["tiles"].as_str().expect("base64")).expect("valid");
    let tiles: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
    let (d, h) = (784, 300);
    assert_eq!(tiles.len(), d * h);
    let w1 = &model.params.layers[0].w;
    assert!((0..d).all(|i| (0..h).all(|u| tiles[u * d + i] == w1[i * h + u])), "tiles are W1 transposed");
    assert_eq!(w["order"], serde_json::json!(gpu_mnist::plots::units_by_contribution(&model.params)));

    // A photo is prepared as predict prepares it, then read; the probabilities are the fast
    // path's on the same prepared pixels.
    let a = s.post("/api/analyse", Some("image/png"), &photo(0)).json();
    let prepared = digit::prepare(&digit::decode(&photo(0)).expect("decodes")).expect("ink");
    let want = fast::probabilities(&model.params, model.activation, &SparseRows::from_pixels(&prepared.pixels, d));
    assert_eq!(a["image"], serde_json::json!(prepared.pixels), "the image the network sees");
    assert_eq!(a["inverted"], true, "dark ink on light paper");
    common::assert_close("probabilities", &floats(&a["probabilities"]), &want, FAST_PATH.atol, FAST_PATH.rtol);
    assert_eq!(a["prediction"], 7, "MNIST's first test digit is a 7");
    assert_eq!(a["layers"].as_array().map(|l| l.len()), Some(1), "one hidden layer");
    assert_eq!(a["layers"][0].as_array().map(|l| l.len()), Some(h));

    // A test image by number, and the raw pixels as JSON: the same answer, no preparation.
    let t = s.get("/api/test/0").json();
    assert_eq!((t["index"].as_u64(), t["label"].as_u64(), t["prediction"].as_u64()), (Some(0), Some(7), Some(7)));
    let pixels = serde_json::json!({ "pixels": common::mnist().test.image(0) }).to_string();
    let j = s.post("/api/analyse", Some("application/json"), pixels.as_bytes()).json();
    assert_eq!(j["probabilities"], t["probabilities"]);
    let r = s.get("/api/test/random").json();
    assert!(r["index"].as_u64().is_some_and(|i| i < 10_000) && r["label"].is_u64(), "{r}");

    // The summary is eval's: 99.19% and its confusion matrix; the mistakes are wrong and sorted.
    let sum = s.get("/api/test/summary").json();
    assert_eq!(sum["n"], 10_000);
    assert!((sum["accuracy"].as_f64().expect("accuracy") - 0.9919).abs() < 1e-9, "{}", sum["accuracy"]);
    let confusion: Vec<Vec<u64>> = serde_json::from_value(sum["confusion"].clone()).expect("10x10");
    assert_eq!(confusion.iter().flatten().sum::<u64>(), 10_000);
    assert_eq!((0..10).map(|c| confusion[c][c]).sum::<u64>(), 9_919);
    let mistakes = sum["mistakes"].as_array().expect("mistakes");
    assert_eq!(mistakes.len(), 32);
    assert!(mistakes.iter().all(|m| m["label"] != m["prediction"]), "only mistakes");
    let surest: Vec<f64> = mistakes.iter().map(|m| m["confidence"].as_f64().expect("confidence")).collect();
    assert!(surest.windows(2).all(|p| p[0] >= p[1]), "surest first: {surest:?}");
    let status = s.get("/api/status").json();
    assert_eq!((status["live"].as_bool(), status["listeners"].as_u64()), (Some(false), Some(0)));
}

#[test]
fn bad_requests_get_a_4xx_with_a_message_and_the_server_goes_on() {
    let s = Served::start(&["serve", "--port", "0"]);
    let expect = |r: common::http::Reply, status: u16, says: &str| {
        assert_eq!(r.status, status, "{}\n{}", r.head, String::from_utf8_lossy(&r.body));
        assert!(r.error().contains(says), "{:?} should say {says:?}", r.error());
    };
    expect(s.get("/nowhere"), 404, "no route GET /nowhere");
    expect(s.post("/api/model", None, b""), 405, "/api/model takes GET, not POST");
    expect(s.post("/api/analyse", Some("image/png"), b""), 400, "empty body");
    expect(s.post("/api/analyse", Some("image/png"), b"not an image"), 400, "not a decodable image");
    expect(s.post("/api/analyse", None, &[0x89, b'P', b'N', b'G', 0, 1]), 400, "not a decodable image");
    // A small file of a wider image than the data loader's limit: refused by the limits.
    let mut huge = Vec::new();
    let wide = GrayImage::new(gpu_mnist::data::folder::MAX_IMAGE_SIDE + 1, 1);
    wide.write_to(&mut std::io::Cursor::new(&mut huge), ImageFormat::Png).expect("PNG");
    expect(s.post("/api/analyse", None, &huge), 400, "limit");
    let blank = {
        let mut png = Vec::new();
        GrayImage::from_pixel(64, 64, Luma([255])).write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png).ok();
        png
    };
    expect(s.post("/api/analyse", None, &blank), 400, "no ink found");
    expect(s.post("/api/analyse", Some("application/json"), b"{\"pixels\": [1, 2"), 400, "malformed JSON");
    expect(s.post("/api/analyse", Some("application/json"), b"{\"pixel\": []}"), 400, "malformed JSON");
    expect(s.post("/api/analyse", Some("application/json"), b"{\"pixels\": [300]}"), 400, "malformed JSON");
    expect(s.post("/api/analyse", Some("application/json"), b"{\"pixels\": [1, 2, 3]}"), 400, "has 3 pixels");
    expect(s.get("/api/test/10000"), 400, "no test image 10000");
    expect(s.get("/api/test/-1"), 400, "not a test image number");
    expect(s.post("/api/stop", None, b""), 409, "no training run is live");
    // 9 MiB announced: refused on the head, before the body is read.
    expect(announce(&s.addr, "/api/analyse", 9 << 20), 413, "at most 8 MiB");
    // 9 MiB sent without a length: refused once 8 MiB have come.
    expect(s.post("/api/analyse", None, &vec![0u8; 9 << 20]), 413, "at most 8 MiB");
    // A page that goes away mid-stream is dropped.
    for _ in 0..3 {
        drop(s.events());
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = s.get("/api/test/3").json();
    assert_eq!(after["label"], 0, "still serving after all that: {after}");
}

/// A run as a page sees it, until its `done` event.
struct Followed {
    /// The latest description of the run (it names the backend once it is open).
    run: Value,
    iterations: Vec<u64>,
    versions: Vec<u64>,
    done: Value,
}

/// A page from the start: every page is sent the run's description first, and again when the
/// backend opens unless the page connected after that.
fn follow_page(events: &mut common::http::Events) -> Followed {
    let (name, run) = events.next().expect("the run's description");
    assert_eq!(name, "run", "a page hears first what the run is");
    follow(events, run)
}

/// The rest of a stream, from `run` as the page last heard it.
fn follow(events: &mut common::http::Events, mut run: Value) -> Followed {
    let (mut iterations, mut versions) = (Vec::new(), Vec::new());
    while let Some((name, data)) = events.next() {
        match name.as_str() {
            "run" => run = data,
            "report" => {
                iterations.push(data["iteration"].as_u64().expect("iteration"));
                versions.push(data["version"].as_u64().expect("version"));
            }
            "done" => return Followed { run, iterations, versions, done: data },
            _ => {}
        }
    }
    panic!("the stream ended before the run did")
}

#[test]
fn a_live_run_streams_its_report_points_and_replays_them_to_late_pages() {
    let args = ["train", "--serve", "0", "--samples", "2000", "--test-samples", "500", "--iterations", "40"];
    let mut s = Served::start(&[&args[..], &["--eval-every", "5", "--backend", "cpu"]].concat());
    let mut early = s.events();
    let Followed { run, iterations, versions, done } = follow_page(&mut early);
    assert_eq!((run["steps"].as_u64(), run["batches"].as_u64()), (Some(40), Some(1)), "{run}");
    assert!(run["backend"].as_str().is_some_and(|b| b.starts_with("cpu (")), "{run}");
    assert_eq!(iterations, (1..=8).map(|i| 5 * i).collect::<Vec<u64>>());
    assert!(versions.windows(2).all(|v| v[1] == v[0] + 1), "new weights at each point: {versions:?}");
    assert_eq!(done["stopped"], false);
    assert!(done["message"].as_str().is_some_and(|m| m.contains("done: 40 iterations, test accuracy")), "{done}");
    // The page of the run shows the weights of its last report point, and a page that connects
    // now is sent the whole run.
    let model = s.get("/api/model").json();
    assert_eq!((model["live"].as_bool(), model["version"].as_u64()), (Some(true), versions.last().copied()));
    let late = follow_page(&mut s.events());
    assert_eq!(late.iterations, iterations);
    assert_eq!(late.run, run, "the run as it is now");
    let saved = checkpoint::load(&s.scratch.path().join("model.safetensors")).expect("saved");
    let shown =
        s.post("/api/analyse", Some("application/json"), format!("{{\"pixels\": {:?}}}", vec![0u8; 784]).as_bytes());
    let want = fast::probabilities(&saved.params, saved.activation, &SparseRows::from_pixels(&[0; 784], 784));
    common::assert_close("blank image", &floats(&shown.json()["probabilities"]), &want, FAST_PATH.atol, FAST_PATH.rtol);
    let after = s.printed_until("Ctrl-C stops", Duration::from_secs(30));
    assert!(after.iter().any(|l| l.contains("the page is still at")), "{after:?}");
    assert!(s.running(), "the page stays up after the run");
    assert_eq!(s.post("/api/stop", None, b"").status, 409, "nothing left to stop");
    // Pages that go away are dropped: the run's stream has no listeners left.
    drop(early);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while s.get("/api/status").json()["listeners"] != 0 {
        assert!(std::time::Instant::now() < deadline, "closed streams still listed: {}", s.get("/api/status").json());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_deeper_network_shows_every_hidden_layer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("deep.safetensors");
    let args = ["train", "--backend", "cpu", "--samples", "500", "--iterations", "3", "--hidden", "32,16"];
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(args)
        .arg("--out")
        .arg(&model)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = Served::start(&["serve", "--port", "0", "--model", model.to_str().expect("utf-8")]);
    assert_eq!(s.get("/api/model").json()["widths"], serde_json::json!([784, 32, 16, 10]));
    let w = s.get("/api/weights").json();
    assert_eq!((w["units"].as_u64(), w["inputs"].as_u64()), (Some(32), Some(784)), "the first layer's tiles");
    let a = s.get("/api/test/0").json();
    let widths: Vec<usize> = a["layers"].as_array().expect("layers").iter().map(|l| floats(l).len()).collect();
    assert_eq!(widths, [32, 16], "both hidden layers' activations");
}

#[test]
fn the_stop_button_ends_the_run_as_ctrl_c_does() {
    let args = ["train", "--serve", "0", "--samples", "1000", "--test-samples", "200", "--iterations", "100000"];
    let mut s = Served::start(&[&args[..], &["--eval-every", "2", "--backend", "cpu"]].concat());
    let mut events = s.events();
    while events.next().is_some_and(|(name, _)| name != "report") {}
    let r = s.post("/api/stop", None, b"");
    assert_eq!((r.status, r.json()["stopping"].as_bool()), (200, Some(true)));
    let done = follow(&mut events, Value::Null).done;
    assert_eq!(done["stopped"], true, "{done}");
    let message = done["message"].as_str().expect("a message");
    assert!(
        message.contains("interrupted at iteration") && message.contains("resume with: gpu-mnist train --init-from")
    );
    let printed = s.printed_until("Ctrl-C stops", Duration::from_secs(30));
    assert!(printed.iter().any(|l| l.contains("saved: ")), "saved as on Ctrl-C: {printed:?}");
    let saved = checkpoint::load(&s.scratch.path().join("model.safetensors")).expect("the model was saved");
    assert!(saved.provenance.iterations < 100_000, "stopped early");
    assert!(s.running(), "the page stays up after a stop from the page");
}
