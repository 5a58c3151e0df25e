//! `gpu-mnist bench` runs on a small size, checks itself, and writes finite figures as JSON.
//! (Timings are not asserted: machines are noisy; the benchmark is a command.)

mod common;

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let base = ["--samples", "700", "--hidden", "33", "--repeats", "2", "--warmup", "1"];
    run_bench(&[&base[..], args].concat()).1
}

/// `gpu-mnist bench ARGS --json FILE`: its standard output and the JSON it wrote.
fn run_bench(args: &[&str]) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let o = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .env("GPU_MNIST_CACHE_DIR", dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("CPU: ") && out.contains("GFLOP per iteration"), "{out}");
    let v = serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).expect("valid JSON");
    (out.into_owned(), v)
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

/// `--threads` sets the pool as for `train`: one thread times the step, the peak and the report.
#[test]
fn bench_runs_on_the_threads_it_is_given() {
    let (out, v) =
        run_bench(&["--backend", "cpu", "--samples", "700", "--hidden", "33", "--repeats", "1", "--threads", "1"]);
    assert_eq!(v["threads"], 1, "{v}");
    assert!(out.contains("on 1 thread at once") && out.contains("cpu (1 thread, "), "{out}");
    check_point(single_point(&v), &["cpu"]);
}

/// `bench` measures the CPU's peak before the point and after it, the highest counting, and sets
/// each phase's real work against it: the input layer's products run 8 FLOPs (4 fused
/// multiply-adds) per inked quad of a row and hidden unit, counted here from the pixels
/// themselves; the output layer runs its dense count.
#[test]
fn bench_sets_each_cpu_phase_s_work_against_the_measured_peak() {
    let v = bench(&["--backend", "cpu"]);
    let peak = finite(&v["peak_gflops"], "peak GFLOP/s");
    // Even the baseline build's libm fmaf calls run a few GFLOP/s.
    assert!(peak > 0.1, "peak {peak} GFLOP/s");
    let measured: Vec<f64> =
        v["peak_measurements"].as_array().expect("peak measurements").iter().map(|m| finite(m, "a peak")).collect();
    assert_eq!(measured.len(), 2, "before the point and after it: {measured:?}");
    assert_eq!(peak, measured.iter().copied().fold(0.0, f64::max), "the highest counts: {measured:?}");
    let mnist = gpu_mnist::data::load_mnist(std::path::Path::new("data/mnist")).expect("the bundled MNIST");
    let pixels = &mnist.train.pixels[..700 * 784];
    let inked = pixels.chunks(784).flat_map(|row| row.chunks(4)).filter(|q| q.iter().any(|&p| p != 0)).count();
    let input_work = 8.0 * inked as f64 * 33.0 / 1e9;
    let ops = v["points"][0]["results"][0]["ops"].as_array().expect("ops");
    let names: Vec<&str> = ops.iter().filter_map(|o| o["op"].as_str()).collect();
    assert!(names[0].starts_with("layer 1 forward") && names[2].starts_with("layer 1 backward"), "{names:?}");
    for (i, o) in ops.iter().enumerate() {
        if names[i].contains("_update") {
            assert!(o["work_gflops"].is_null() && o["of_peak"].is_null(), "{o}");
            continue;
        }
        let seconds = finite(&o["seconds"], "op seconds");
        let work = finite(&o["work_gflops"], "work GFLOP/s") * seconds;
        let want = if i == 1 { finite(&o["gflops"], "op GFLOP/s") * seconds } else { input_work };
        assert!((work - want).abs() <= 1e-9 * want, "{}: work {work} GFLOP, want {want}", names[i]);
        let of_peak = finite(&o["of_peak"], "share of the peak");
        let want = finite(&o["work_gflops"], "work GFLOP/s") / peak;
        assert!((of_peak - want).abs() <= 1e-12 * want, "{}: {of_peak} of the peak, want {want}", names[i]);
    }
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

#[test]
fn bench_crossover_times_both_hidden_products_at_every_density() {
    let base = ["--backend", "cpu", "--samples", "700", "--repeats", "1", "--warmup", "0", "--crossover"];
    let (out, v) = run_bench(&[&base[..], &["--hidden", "40,24"]].concat());
    // The one hidden-to-hidden layer of 784-40-24-10 at this CPU's level, then at the baseline's
    // where that is another.
    let layers = v["crossover"].as_array().expect("crossover");
    let levels: Vec<&str> = layers.iter().filter_map(|l| l["simd"].as_str()).collect();
    assert!(matches!(levels.len(), 1 | 2) && levels.iter().all(|l| !l.is_empty()), "{levels:?}");
    assert!(levels.len() == 1 || (levels[0] != levels[1] && ["SSE2", "baseline"].contains(&levels[1])), "{levels:?}");
    for layer in layers {
        assert_eq!((layer["fan_in"].as_u64(), layer["fan_out"].as_u64()), (Some(40), Some(24)));
        let dense_from = finite(&layer["dense_from"], "dense_from");
        assert!(dense_from > 0.0 && dense_from <= 1.0, "{dense_from}");
        let points = layer["points"].as_array().expect("points");
        let densities: Vec<f64> = points.iter().map(|p| finite(&p["density"], "density")).collect();
        assert_eq!(densities.len(), 20, "5% to 100% in steps of 5%");
        assert!((densities[0] - 0.05).abs() < 1e-9 && (densities[19] - 1.0).abs() < 1e-9, "{densities:?}");
        for p in points {
            finite(&p["sparse_s"], "sparse_s");
            finite(&p["dense_s"], "dense_s");
            assert_eq!(p["same_bits"], true, "{p}");
        }
    }
    assert!(out.contains("hidden layer 40 -> 24") && out.contains("this build takes them from"), "{out}");
    assert!(!out.contains("DIFFERENT BITS"), "{out}");
    // Without a hidden-to-hidden layer it times 256 -> 128.
    let (_, v) = run_bench(&[&base[..], &["--hidden", "16"]].concat());
    let layer = &v["crossover"][0];
    assert_eq!((layer["fan_in"].as_u64(), layer["fan_out"].as_u64()), (Some(256), Some(128)), "{v}");
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

/// Dense-equivalent FLOPs of one step over `n` rows of 784-`hidden`-10: each layer's forward
/// product and weight gradient, and the input gradient of each layer above the first.
fn dense_flops(n: usize, hidden: &[usize]) -> f64 {
    let widths: Vec<usize> = [&[784][..], hidden, &[10]].concat();
    let products: usize = widths.windows(2).enumerate().map(|(l, w)| if l == 0 { 2 } else { 3 } * w[0] * w[1]).sum();
    2.0 * (n * products) as f64
}

/// The CPU's phase rows of 784-64-32-10, in the order the step runs them.
const DEEPER_PHASES: [&str; 5] = [
    "layer 1 forward: act(X·W1 + b1)",
    "layer 2 forward: act(A1·W2 + b2)",
    "output: A2·W3 + b3, softmax, back to dZ2",
    "layer 2 backward: dW2, db2, dZ1",
    "layer 1 backward: X^T·dZ1, db1",
];

/// The op names of `result`, and the GFLOP its ops but the update count (those that count any).
fn ops_and_gflop(result: &serde_json::Value) -> (Vec<String>, f64) {
    let ops = result["ops"].as_array().expect("ops");
    let names = ops.iter().map(|o| o["op"].as_str().expect("op name").to_string()).collect();
    let gflop = ops
        .iter()
        .filter(|o| !o["op"].as_str().is_some_and(|n| n.contains("_update")) && !o["gflops"].is_null())
        .map(|o| finite(&o["gflops"], "op GFLOP/s") * finite(&o["seconds"], "op seconds"))
        .sum();
    (names, gflop)
}

#[test]
fn bench_times_each_layer_of_a_deeper_network_on_the_cpu() {
    let args = ["--backend", "cpu", "--hidden", "64,32", "--samples", "2000", "--repeats", "1", "--warmup", "0"];
    let (out, v) = run_bench(&args);
    assert!(out.contains("784-64-32-10, N 2000, full batch"), "{out}");
    // Each layer's forward and backward has its row in the table, in the step's order.
    let at: Vec<usize> =
        DEEPER_PHASES.iter().map(|p| out.find(p).unwrap_or_else(|| panic!("no {p:?}: {out}"))).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "phases out of order: {out}");
    assert!(out.contains("self-check: passed: fast vs reference on 2000 digits"), "{out}");
    let point = &v["points"][0];
    check_point(point, &["cpu"]);
    assert_eq!(point["hidden"], serde_json::json!([64, 32]), "{point}");
    assert_eq!(point["h"], 64);
    assert!(point["batch_size"].is_null(), "{point}");
    assert_eq!(point["steps_per_epoch"], 1);
    let want = dense_flops(2000, &[64, 32]) / 1e9;
    let gflop = finite(&point["gflop_per_iteration"], "GFLOP per iteration");
    assert!((gflop - want).abs() <= 1e-9 * want, "{gflop} GFLOP per iteration, want {want}");
    let result = &point["results"][0];
    let (names, phases_gflop) = ops_and_gflop(result);
    assert_eq!(names[..5], DEEPER_PHASES.map(String::from), "{result}");
    assert!(names[5].starts_with("gd_update"), "{result}");
    // Hidden-to-hidden layers take sparse or dense products block by block: their work is not
    // counted; the input and output layers' is.
    let counted: Vec<bool> = (0..5).map(|i| !result["ops"][i]["work_gflops"].is_null()).collect();
    assert_eq!(counted, [true, false, true, false, true], "{result}");
    // The phases' FLOPs add up to the step's.
    assert!((phases_gflop - want).abs() <= 1e-6 * want, "phases count {phases_gflop} GFLOP, the step {want}");
    let (step, epoch) = (&result["seconds_per_iteration"], &result["seconds_per_epoch"]);
    assert_eq!(finite(step, "seconds per iteration"), finite(epoch, "seconds per epoch"), "one step an epoch");
}

/// `X s per step, Y s per epoch (S steps)` of `backend`'s line in `out`.
fn step_and_epoch(out: &str, backend: &str) -> (f64, f64, usize) {
    let line = out.lines().find(|l| l.starts_with(&format!("{backend} ("))).unwrap_or_else(|| panic!("{out}"));
    let word_before = |marker: &str| -> &str {
        let head = &line[..line.find(marker).unwrap_or_else(|| panic!("no {marker:?} in {line}"))];
        head.rsplit(' ').next().unwrap_or("")
    };
    let number = |marker: &str| word_before(marker).parse::<f64>().unwrap_or_else(|e| panic!("{e}: {line}"));
    let steps = word_before(" steps)").trim_start_matches('(').parse().unwrap_or_else(|e| panic!("{e}: {line}"));
    (number(" s per step"), number(" s per epoch"), steps)
}

#[test]
fn bench_times_the_mini_batch_step_with_adam_on_the_cpu() {
    let args = [
        "--backend",
        "cpu",
        "--hidden",
        "64,32",
        "--samples",
        "2000",
        "--repeats",
        "3",
        "--warmup",
        "1",
        "--batch-size",
        "128",
        "--optimizer",
        "adam",
    ];
    let (out, v) = run_bench(&args);
    assert!(out.contains("N 2000 in mini-batches of 128 (16 steps per epoch"), "{out}");
    let (step, epoch, steps) = step_and_epoch(&out, "cpu");
    assert_eq!(steps, 16, "ceil(2000 / 128): {out}");
    assert!(step > 0.0 && epoch > 0.0, "{out}");
    // Printed with 6 and 4 decimals.
    assert!((epoch - 16.0 * step).abs() <= 0.5e-4 + 16.0 * 0.5e-6, "{epoch} s per epoch, {step} s per step: {out}");
    assert!(out.contains("self-check: passed: fast mini-batch rows vs reference on 128 digits"), "{out}");
    let point = &v["points"][0];
    check_point(point, &["cpu"]);
    assert_eq!(point["hidden"], serde_json::json!([64, 32]), "{point}");
    assert_eq!(point["batch_size"], 128, "{point}");
    assert_eq!(point["steps_per_epoch"], 16, "{point}");
    let want = dense_flops(128, &[64, 32]) / 1e9;
    let gflop = finite(&point["gflop_per_iteration"], "GFLOP per iteration");
    assert!((gflop - want).abs() <= 1e-9 * want, "{gflop} GFLOP per step, want {want}");
    let result = &point["results"][0];
    let step = finite(&result["seconds_per_iteration"], "seconds per step");
    let epoch = finite(&result["seconds_per_epoch"], "seconds per epoch");
    assert!(step > 0.0 && (epoch - 16.0 * step).abs() <= 1e-12 * epoch, "{result}");
    let (names, phases_gflop) = ops_and_gflop(result);
    assert_eq!(names[..5], DEEPER_PHASES.map(String::from), "{result}");
    assert!(names[5].starts_with("adam_update"), "{result}");
    assert!(result["ops"][5]["share"].as_f64().is_some_and(|s| s > 0.0), "the update's share: {result}");
    assert!((phases_gflop - want).abs() <= 1e-6 * want, "phases count {phases_gflop} GFLOP, the step {want}");
}

#[test]
fn bench_refuses_more_hidden_layers_than_a_model_may_have() {
    let o = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(["bench", "--backend", "cpu", "--samples", "700", "--hidden", "8,8,8,8,8,8,8,8"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--hidden lists 8 layers; at most 7"), "{err}");
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn bench_times_a_deeper_mini_batch_step_on_all_backends() {
    let args = [
        "--hidden",
        "33,17",
        "--samples",
        "700",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--batch-size",
        "256",
        "--optimizer",
        "adam",
    ];
    let (out, v) = run_bench(&args);
    let point = &v["points"][0];
    // check_point requires each backend's passed self-check: the GPU's on the first batch.
    check_point(point, &["cpu", "gpu"]);
    assert_eq!(point["hidden"], serde_json::json!([33, 17]), "{point}");
    assert_eq!((point["batch_size"].as_u64(), point["steps_per_epoch"].as_u64()), (Some(256), Some(3)), "{point}");
    let (step, epoch, steps) = step_and_epoch(&out, "gpu");
    assert!(steps == 3 && step > 0.0 && (epoch - 3.0 * step).abs() <= 0.5e-4 + 3.0 * 0.5e-6, "{out}");
    let (names, _) = ops_and_gflop(&point["results"][1]);
    for kernel in ["linear_forward L3", "linear_backward_input L2", "linear_backward_weight L1", "adam_update"] {
        assert!(names.iter().any(|n| n.starts_with(kernel)), "no {kernel}: {names:?}");
    }
}
