//! `gpu-mnist bench` runs on a small size, checks itself, and writes finite figures as JSON.
//! (Timings are not asserted: machines are noisy; the benchmark is a command.)

mod common;

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let o = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["bench", "--samples", "700", "--hidden", "33", "--repeats", "2", "--warmup", "1", "--json"])
        .arg(&json)
        .args(args)
        .env("GPU_MNIST_CACHE_DIR", dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("CPU: ") && out.contains("GFLOP per iteration"), "{out}");
    serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).expect("valid JSON")
}

fn finite(v: &serde_json::Value, what: &str) -> f64 {
    let x = v.as_f64().unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x >= 0.0, "{what} = {x}");
    x
}

fn check_point(p: &serde_json::Value, backends: &[&str]) {
    let results = p["results"].as_array().expect("results");
    let names: Vec<&str> = results.iter().filter_map(|r| r["backend"].as_str()).collect();
    assert_eq!(names, backends, "{p}");
    for r in results {
        assert!(r["self_check"].as_str().is_some_and(|s| s.starts_with("passed")), "{r}");
        assert!(finite(&r["seconds_per_iteration"], "seconds per iteration") > 0.0);
        finite(&r["gflops"], "GFLOP/s");
        let ops = r["ops"].as_array().expect("ops");
        assert!(ops.len() >= 4, "{r}");
        let mut share = 0.0;
        for o in ops {
            finite(&o["seconds"], "op seconds");
            finite(&o["gbytes_per_s"], "GB/s");
            share += finite(&o["share"], "share");
            if !o["gflops"].is_null() {
                finite(&o["gflops"], "op GFLOP/s");
            }
        }
        // Shares are of the ops' summed times.
        assert!((share - 1.0).abs() < 1e-9, "shares add up to {share}: {r}");
    }
}

/// The single point of a bench run on 700 digits at H = 33.
fn single_point(v: &serde_json::Value) -> &serde_json::Value {
    assert!(v["cpu"].is_string() && v["simd"].is_string(), "{v}");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 1);
    assert_eq!(points[0]["n"], 700);
    assert_eq!(points[0]["h"], 33);
    &points[0]
}

#[test]
fn bench_json_on_the_cpu() {
    let v = bench(&["--backend", "cpu"]);
    check_point(single_point(&v), &["cpu"]);
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn bench_json_on_all_backends() {
    let v = bench(&["--naive"]);
    let point = single_point(&v);
    check_point(point, &["cpu", "gpu"]);
    finite(&point["gpu_over_cpu"], "ratio");
    let naive = v["naive"].as_array().expect("naive figures");
    assert_eq!(naive.len(), 2);
    for f in naive {
        for key in ["naive_gflops", "register_gflops", "shared_gflops"] {
            finite(&f[key], key);
        }
    }
}

#[test]
fn bench_sweep_on_the_cpu() {
    let v = bench(&["--backend", "cpu", "--sweep"]);
    let points = v["points"].as_array().expect("points");
    let hs: Vec<u64> = points.iter().filter_map(|p| p["h"].as_u64()).collect();
    assert_eq!(hs, [32, 64, 128, 256, 512, 1024], "H sweep at N = --samples (no N below 700 in the N sweep)");
    for p in points {
        check_point(p, &["cpu"]);
    }
}

/// `bench --optimizer` on `backends` ("cpu", or every backend) times each rule's update and
/// checks it.
fn optimizer_updates(backend: &str, backends: &[&str]) {
    for rule in ["momentum", "adam"] {
        let v = bench(&["--optimizer", rule, "--backend", backend]);
        let point = &v["points"][0];
        // check_point requires a passed self-check; the GPU's compares this rule's update with the CPU's.
        check_point(point, backends);
        for r in point["results"].as_array().expect("results") {
            let ops = r["ops"].as_array().expect("ops");
            let update = ops.iter().filter_map(|o| o["op"].as_str()).find(|o| o.contains("_update"));
            assert!(update.is_some_and(|o| o.starts_with(&format!("{rule}_update"))), "{rule}: {r}");
        }
    }
}

#[test]
fn bench_times_each_optimizer_update_and_checks_it_on_the_cpu() {
    optimizer_updates("cpu", &["cpu"]);
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn bench_times_each_optimizer_update_and_checks_it_on_the_gpu() {
    optimizer_updates("all", &["cpu", "gpu"]);
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn bench_tune_times_every_candidate_under_webgpu_limits() {
    let v = bench(&["--backend", "gpu", "--tune", "--tune-seconds", "0.3", "--limits", "webgpu"]);
    check_point(single_point(&v), &["gpu"]);
    let tuning = v["tuning"].as_array().expect("tuning figures");
    let mut products: Vec<&str> = tuning.iter().filter_map(|t| t["product"].as_str()).collect();
    products.dedup();
    assert_eq!(products.len(), 3, "the step's three wide products: {products:?}");
    for product in products {
        let rows: Vec<_> = tuning.iter().filter(|t| t["product"] == product).collect();
        assert!(rows.len() >= 6, "{product}: every tile is timed: {rows:?}");
        assert_eq!(rows.iter().filter(|t| t["chosen"] == true).count(), 1, "{product}: one choice");
        for t in &rows {
            assert!(finite(&t["seconds"], "seconds") > 0.0 && t["config"].is_string(), "{t}");
        }
    }
}
