//! The command line end to end: short runs on subsets, summary lines, exit codes, bad options.

mod common;

use std::process::{Command, Output};

/// Runs the program from the sources' folder; `train` saves its model into a temporary folder
/// unless the arguments say where, and the tuner's cache lives in one that starts empty.
fn gpu_mnist(args: &[&str], env: &[(&str, &str)]) -> Output {
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd.env("GPU_MNIST_CACHE_DIR", scratch.path().join("cache"));
    if args.first() == Some(&"train") && !args.contains(&"--out") {
        cmd.arg("--out").arg(scratch.path().join("model.safetensors"));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

const SHORT: [&str; 7] = ["train", "--iterations", "6", "--samples", "1000", "--test-samples", "300"];

/// The test accuracy the summary line reports, in percent.
fn test_accuracy(stdout: &str) -> f64 {
    let line = stdout.lines().find(|l| l.starts_with("final:")).expect("a final: line");
    let at = line.find("test accuracy ").expect("test accuracy in the final line") + "test accuracy ".len();
    line[at..].split('%').next().and_then(|v| v.parse().ok()).expect("a percentage")
}

#[test]
fn cpu_training_run_prints_summary() {
    let o = gpu_mnist(&[&SHORT[..], &["--backend", "cpu", "--eval-every", "3"]].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "exit {:?}\n{out}\n{err}", o.status);
    assert!(out.contains("MNIST: 1000 training and 300 test images of 28x28"), "{out}");
    assert!(out.contains("backend: cpu ("), "{out}");
    assert!(out.lines().filter(|l| l.starts_with("iter ") && l.contains("test acc")).count() == 2, "{out}");
    assert!(out.contains("final: train loss"), "{out}");
    assert!(out.contains("time: 6 iterations in"), "{out}");
    assert!(test_accuracy(&out) > 40.0, "6 iterations already beat chance:\n{out}");
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gpu_training_run_verifies_against_cpu() {
    let o = gpu_mnist(&[&SHORT[..], &["--backend", "gpu", "--verify-every", "2", "--chunk-rows", "400"]].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "exit {:?}\n{out}\n{err}", o.status);
    assert!(out.contains("backend: gpu ("), "{out}");
    assert!(out.contains("chunks of 384 rows"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("verify iter")).count(), 4, "iterations 1, 2, 4, 6:\n{out}");
    assert!(test_accuracy(&out) > 40.0, "{out}");
}

#[test]
fn options_change_the_run() {
    let cpu = ["--backend", "cpu", "--threads", "1", "--no-bias", "--activation", "elu", "--hidden", "33"];
    let o = gpu_mnist(&[&SHORT[..], &cpu].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("784-33-10 (elu), 26202 parameters, no bias") && out.contains("cpu (1 thread)"), "{out}");
}

/// `--tiling auto` (the default) tunes on an adapter it has not seen, once: a second run reads
/// the cache. Under `--limits webgpu`, as a browser would open the device.
#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gpu_tunes_once_and_verifies_under_webgpu_limits() {
    let cache = tempfile::tempdir().expect("temp dir");
    let env = [("GPU_MNIST_CACHE_DIR", cache.path().to_str().expect("a UTF-8 path"))];
    let args = ["--backend", "gpu", "--limits", "webgpu", "--verify-every", "3"];
    let run = || {
        let o = gpu_mnist(&[&SHORT[..], &args].concat(), &env);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{out}\n{err}");
        assert!(out.contains("GPU: auto matmul tiling: "), "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("verify iter")).count(), 3, "iterations 1, 3, 6:\n{out}");
        out
    };
    let first = run();
    assert!(first.contains("GPU: tuning 3 matmuls for this adapter"), "{first}");
    assert_eq!(first.lines().filter(|l| l.starts_with("GPU: timing ")).count(), 3, "{first}");
    assert!(cache.path().join("tuning.json").exists());
    let second = run();
    assert!(!second.contains("tuning") && !second.contains("GPU: timing"), "{second}");
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gpu_options_change_the_run() {
    let gpu = ["--backend", "gpu", "--tiling", "shared", "--activation", "sigmoid", "--verify-every", "3"];
    let o = gpu_mnist(&[&SHORT[..], &gpu].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("GPU: shared matmul tiling") && out.contains("(sigmoid)"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("verify iter")).count(), 3, "iterations 1, 3, 6:\n{out}");
}

#[test]
fn an_adapter_name_that_matches_nothing_points_to_devices() {
    let o = gpu_mnist(&[&SHORT[..], &["--backend", "gpu", "--adapter", "no-such-gpu"]].concat(), &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("no GPU adapter named like \"no-such-gpu\"") && err.contains("gpu-mnist devices"), "{err}");
}

#[test]
fn auto_without_adapters_falls_back_to_cpu() {
    let o = gpu_mnist(&SHORT, &[("GPU_MNIST_HIDE_ADAPTERS", "1")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("no hardware GPU adapter (wgpu sees: none): using the CPU backend"), "{out}");
    assert!(out.contains("backend: cpu"), "{out}");
}

#[test]
fn gpu_without_adapters_is_a_clear_error() {
    let o = gpu_mnist(&[&SHORT[..], &["--backend", "gpu"]].concat(), &[("GPU_MNIST_HIDE_ADAPTERS", "1")]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("no GPU adapter; wgpu sees: none") && err.contains("--backend cpu"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn invalid_options_are_rejected_with_the_reason() {
    for (args, reason) in [
        (vec!["--lr", "0"], "must be a finite number above 0"),
        (vec!["--lr=-1"], "must be a finite number above 0"),
        (vec!["--lr", "nan"], "must be a finite number above 0"),
        (vec!["--lr", "inf"], "must be a finite number above 0"),
        (vec!["--hidden", "0"], "must be at least 1"),
        (vec!["--iterations", "0"], "must be at least 1"),
        (vec!["--samples=-5"], "not a whole number"),
        (vec!["--eval-every", "0"], "must be at least 1"),
        (vec!["--hidden", "65536"], "at most 65535"),
        (vec!["--chunk-rows", "10"], "at least 64"),
        (vec!["--tiling", "warp"], "invalid value"),
        (vec!["--activation", "tanh"], "invalid value"),
        (vec!["--backend", "tpu"], "invalid value"),
        (vec!["--val-split", "0"], "between 0 and 1"),
        (vec!["--val-split", "1"], "between 0 and 1"),
        (vec!["--val-split", "1.5"], "between 0 and 1"),
        (vec!["--val-split=-0.1"], "between 0 and 1"),
        (vec!["--val-split", "nan"], "between 0 and 1"),
        (vec!["--val-split", "ten"], "not a number"),
        (vec!["--format", "parquet"], "invalid value"),
        (vec!["--dataset", "cifar"], "invalid value"),
        (vec!["--lr-schedule", "linear"], "invalid value"),
        (vec!["--lr-gamma", "0"], "above 0 and at most 1"),
        (vec!["--lr-gamma", "2"], "above 0 and at most 1"),
        (vec!["--lr-step-every", "0"], "must be at least 1"),
        (vec!["--optimizer", "rmsprop"], "invalid value"),
        (vec!["--momentum", "1"], "at least 0 and below 1"),
        (vec!["--beta1=-0.1"], "at least 0 and below 1"),
        (vec!["--beta2", "nan"], "at least 0 and below 1"),
        (vec!["--eps", "0"], "must be a finite number above 0"),
        (vec!["--eps", "inf"], "must be a finite number above 0"),
        (vec!["--weight-decay=-1"], "0 or above"),
        (vec!["--weight-decay", "inf"], "0 or above"),
        (vec!["--batch-size", "0"], "must be at least 1"),
        (vec!["--epochs", "0"], "must be at least 1"),
        (vec!["--epochs", "2", "--iterations", "5"], "cannot be used with"),
        (vec!["--hidden", "64,0"], "must be at least 1"),
        (vec!["--hidden", "64,,32"], "not a whole number"),
        (vec!["--target-accuracy", "1.5"], "between 0 and 1"),
    ] {
        let o = gpu_mnist(&[&["train"][..], &args].concat(), &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
}

#[test]
fn a_validation_split_is_held_out_and_reported_apart_from_test() {
    let o = gpu_mnist(&[&SHORT[..], &["--backend", "cpu", "--eval-every", "3", "--val-split", "0.2"]].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "exit {:?}\n{out}\n{err}", o.status);
    assert!(out.contains("MNIST: 800 training, 200 validation and 300 test images of 28x28"), "{out}");
    let reports = out.lines().filter(|l| l.starts_with("iter ") && l.contains("val acc") && l.contains("test acc"));
    assert_eq!(reports.count(), 2, "{out}");
    let last = out.lines().find(|l| l.starts_with("final:")).expect("a final: line");
    assert!(last.contains("validation accuracy") && last.contains("of 200)") && last.contains("of 300)"), "{last}");
}

#[test]
fn missing_data_folder_says_what_to_do() {
    let o = gpu_mnist(&["train", "--data", "/nonexistent/mnist", "--backend", "cpu"], &[]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("/nonexistent/mnist") && err.contains("--data"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn devices_says_when_there_are_none() {
    let o = gpu_mnist(&["devices"], &[("GPU_MNIST_HIDE_ADAPTERS", "1")]);
    assert!(o.status.success());
    assert!(text(&o).0.contains("wgpu sees no adapters"));
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn devices_lists_the_adapters() {
    let o = gpu_mnist(&["devices"], &[]);
    assert!(o.status.success());
    assert!(text(&o).0.contains("--backend auto uses:"));
}

#[test]
fn every_optimizer_trains_and_adam_continues_from_its_saved_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("adam.safetensors");
    let out_s = out.to_str().expect("utf-8 path");
    for (rule, extra) in [("momentum", "0.3"), ("nesterov", "0.3"), ("adam", "0.003")] {
        let o = gpu_mnist(
            &[&SHORT[..], &["--backend", "cpu", "--optimizer", rule, "--lr", extra, "--weight-decay", "0.01"]].concat(),
            &[],
        );
        let (stdout, err) = text(&o);
        assert!(o.status.success(), "{rule}: {stdout}\n{err}");
        assert!(stdout.contains(&format!("optimizer: {rule}")), "{stdout}");
        assert!(test_accuracy(&stdout) > 40.0, "{rule}: 6 iterations already beat chance:\n{stdout}");
    }
    let adam = ["--backend", "cpu", "--optimizer", "adam", "--lr", "0.003", "--out", out_s];
    let o = gpu_mnist(&[&SHORT[..], &adam].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    let m = gpu_mnist::checkpoint::load(&out).expect("loads");
    assert_eq!(m.optimizer.expect("Adam's state is saved").t, 6);
    let o = gpu_mnist(&[&SHORT[..], &adam, &["--init-from", out_s]].concat(), &[]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{stdout}\n{err}");
    assert!(stdout.contains("optimizer: adam state restored (6 steps)"), "{stdout}");
    assert_eq!(gpu_mnist::checkpoint::load(&out).expect("loads").optimizer.expect("state").t, 12);
    // Another rule starts from fresh state, and says so.
    let o =
        gpu_mnist(&[&SHORT[..], &["--backend", "cpu", "--optimizer", "momentum", "--init-from", out_s]].concat(), &[]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{stdout}\n{err}");
    assert!(stdout.contains("holds adam state; --optimizer momentum starts from fresh state"), "{stdout}");
    let o = gpu_mnist(&[&SHORT[..], &["--lr", "2", "--weight-decay", "0.5"]].concat(), &[]);
    assert!(!o.status.success() && text(&o).1.contains("must be below 1"), "{:?}", text(&o));
}

#[test]
fn train_saves_and_continues_and_eval_reads_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("first.safetensors");
    let first_s = first.to_str().expect("utf-8 path");
    let o = gpu_mnist(&[&SHORT[..], &["--backend", "cpu", "--out", first_s]].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains(&format!("saved: {first_s}")), "{}", text(&o).0);
    let second = dir.path().join("second.safetensors");
    let second_s = second.to_str().expect("utf-8 path");
    let o =
        gpu_mnist(&["train", "--iterations", "4", "--samples", "1000", "--init-from", first_s, "--out", second_s], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("(6 iterations so far)"), "{out}");
    let m = gpu_mnist::checkpoint::load(&second).expect("the continued model loads");
    assert_eq!(m.provenance.iterations, 10);
    let o = gpu_mnist(&["eval", "--model", second_s], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("10 iterations on mnist") && out.contains("test set: 10000 images"), "{out}");
    assert!(out.contains("confusion matrix (rows: true class, columns: predicted)"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(),
        21,
        "10 class rows, the column header, 10 matrix rows:\n{out}"
    );
}

#[test]
fn eval_json_of_the_shipped_model() {
    let o = gpu_mnist(&["eval", "--json"], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["n"], 10000);
    assert!(v["accuracy"].as_f64().is_some_and(|a| a >= 0.96), "the shipped model reaches 96%: {v}");
    let confusion = v["confusion"].as_array().expect("confusion");
    assert_eq!(confusion.len(), 10);
    let total: u64 = confusion.iter().flat_map(|r| r.as_array().expect("row")).filter_map(|c| c.as_u64()).sum();
    assert_eq!(total, 10000);
    assert_eq!(v["per_class"].as_array().expect("per class").len(), 10);
}

#[test]
fn eval_of_a_file_that_is_not_a_model() {
    let o = gpu_mnist(&["eval", "--model", "Cargo.toml"], &[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("Cargo.toml: not a safetensors file"), "{err}");
}

#[test]
fn train_plots_its_curve_and_writes_metrics_as_it_goes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (curve, metrics) = (dir.path().join("curve.png"), dir.path().join("metrics.jsonl"));
    let weights = dir.path().join("weights.png");
    let args = [
        "--backend",
        "cpu",
        "--plot",
        curve.to_str().expect("utf-8"),
        "--metrics",
        metrics.to_str().expect("utf-8"),
        "--plot-weights",
        weights.to_str().expect("utf-8"),
    ];
    let o = gpu_mnist(&[&SHORT[..], &args].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    let img = image::open(&curve).expect("the curve is a PNG");
    assert_eq!((img.width(), img.height()), (900, 720));
    assert!(text(&o).0.contains(&format!("plotted: {}", weights.display())));
    image::open(&weights).expect("the weight tiles are a PNG");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics)
        .expect("metrics written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // 6 iterations report every iteration (iterations / 20, at least 1).
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[5]["iteration"], 6);
    for key in ["loss", "train_accuracy", "test_accuracy", "seconds"] {
        assert!(lines.iter().all(|l| l[key].as_f64().is_some_and(f64::is_finite)), "{key}: {lines:?}");
    }
}

#[test]
fn plot_weights_into_a_folder_draws_a_frame_per_report_point() {
    let dir = tempfile::tempdir().expect("temp dir");
    let frames = format!("{}/frames/", dir.path().display());
    let args = ["--backend", "cpu", "--eval-every", "2", "--plot-weights", &frames];
    let o = gpu_mnist(&[&SHORT[..], &args].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("plotted: the weights at each report point in"), "{:?}", text(&o));
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("frames"))
        .expect("the folder was made")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["weights-000002.png", "weights-000004.png", "weights-000006.png"]);
    let first = image::open(dir.path().join("frames/weights-000002.png")).expect("a PNG").to_rgb8();
    let last = image::open(dir.path().join("frames/weights-000006.png")).expect("a PNG").to_rgb8();
    assert_eq!(first.dimensions(), last.dimensions());
    assert_ne!(first.as_raw(), last.as_raw(), "the weights changed between the frames");
}

/// The program's stdout for `args`, which must succeed.
fn succeeds(args: &[&str]) -> String {
    let o = gpu_mnist(args, &[]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{stdout}\n{err}");
    stdout
}

#[test]
fn augmented_runs_repeat_bit_for_bit_and_continue_the_same_distortions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8 path").to_string();
    let base = ["train", "--samples", "1000", "--test-samples", "300", "--backend", "cpu", "--batch-size", "300"];
    let aug = ["--augment", "elastic", "--rotate", "10", "--optimizer", "adam", "--lr", "0.003"];
    let load = |p: &str| gpu_mnist::checkpoint::load(p.as_ref()).expect("loads");
    let run = |extra: &[&str], out: &str| succeeds(&[&base[..], extra, &["--out", out]].concat());
    let straight = path("straight.safetensors");
    let out = run(&[&aug[..], &["--epochs", "3"]].concat(), &straight);
    assert!(
        out.contains("augment: elastic (shift 2.5 px, rotate 10°, scale ±0.1, shear 8°, alpha 34, sigma 4)"),
        "{out}"
    );
    assert!(test_accuracy(&out) > 60.0, "{out}");
    let again = path("again.safetensors");
    run(&[&aug[..], &["--epochs", "3"]].concat(), &again);
    assert!(load(&straight).params == load(&again).params, "the same seed draws the same distortions");
    // Cut in the middle of epoch 2; the continued run keeps the saved augmentation.
    let half = path("half.safetensors");
    run(&[&aug[..], &["--iterations", "6"]].concat(), &half);
    assert_eq!(load(&half).run.augment.map(|a| a.rotate), Some(10.0), "the model file keeps the distortion");
    let o = gpu_mnist(&["train", "--init-from", &half, "--iterations", "6", "--out", &half], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(load(&half).params == load(&straight).params, "a continued run draws the same distortions");
    let plain = path("plain.safetensors");
    run(&["--optimizer", "adam", "--lr", "0.003", "--epochs", "3"], &plain);
    assert!(load(&plain).params != load(&straight).params, "augmentation changes the run");
}

#[test]
fn dropout_runs_repeat_bit_for_bit_and_continue_with_the_same_masks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8 path").to_string();
    let base = ["train", "--samples", "1000", "--test-samples", "300", "--backend", "cpu", "--batch-size", "300"];
    let drop = ["--dropout", "0.3", "--hidden", "64,32", "--optimizer", "adam", "--lr", "0.01"];
    let load = |p: &str| gpu_mnist::checkpoint::load(p.as_ref()).expect("loads");
    let run = |extra: &[&str], out: &str| succeeds(&[&base[..], extra, &["--out", out]].concat());
    let straight = path("straight.safetensors");
    let out = run(&[&drop[..], &["--epochs", "3"]].concat(), &straight);
    assert!(out.contains("dropout: 0.3 of the hidden units"), "{out}");
    assert!(test_accuracy(&out) > 60.0, "{out}");
    let again = path("again.safetensors");
    run(&[&drop[..], &["--epochs", "3"]].concat(), &again);
    assert!(load(&straight).params == load(&again).params, "the same seed draws the same masks");
    // Cut in the middle of epoch 2; the continued run keeps the saved dropout and its step count.
    let half = path("half.safetensors");
    run(&[&drop[..], &["--iterations", "5"]].concat(), &half);
    assert_eq!(load(&half).run.dropout, Some(0.3), "the model file keeps the dropout");
    let o = gpu_mnist(&["train", "--init-from", &half, "--iterations", "7", "--out", &half], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(load(&half).params == load(&straight).params, "a continued run draws the same masks");
    let plain = path("plain.safetensors");
    run(&["--hidden", "64,32", "--optimizer", "adam", "--lr", "0.01", "--epochs", "3"], &plain);
    assert!(load(&plain).params != load(&straight).params, "dropout changes the run");
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gpu_augmented_runs_verify_against_the_cpu_step_by_step() {
    // Iterations 1, 2, 4, ... are verified; with dropout on two hidden layers too.
    let runs = [
        (&["--batch-size", "300", "--epochs", "2"][..], 5),
        (&["--iterations", "4"][..], 3),
        (&["--batch-size", "300", "--epochs", "2", "--dropout", "0.3", "--hidden", "48,24"][..], 5),
    ];
    for (batching, verified) in runs {
        let args = ["train", "--samples", "1000", "--test-samples", "300", "--backend", "gpu", "--augment", "elastic"];
        let o = gpu_mnist(&[&args[..], batching, &["--verify-every", "2"]].concat(), &[]);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{batching:?}: {out}\n{err}");
        let lines = out.lines().filter(|l| l.starts_with("verify iter")).count();
        assert_eq!(lines, verified, "{batching:?}: every verified step agrees:\n{out}");
    }
}

#[test]
fn keep_best_saves_the_best_report_point_and_patience_stops_the_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("best.safetensors");
    // A rate too large for a steady descent: validation accuracy rises and falls.
    let args = ["train", "--backend", "cpu", "--samples", "1000", "--test-samples", "300", "--val-split", "0.2"];
    let run = ["--iterations", "40", "--eval-every", "2", "--lr", "2.5", "--keep-best", "--patience", "4"];
    let o = gpu_mnist(&[&args[..], &run, &["--out", out.to_str().expect("utf-8")]].concat(), &[]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{stdout}\n{err}");
    let points: Vec<(usize, f64)> = stdout
        .lines()
        .filter(|l| l.starts_with("iter "))
        .map(|l| {
            let it = l.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("an iteration");
            let at = l.find("val acc ").expect("validation accuracy") + "val acc ".len();
            (it, l[at..].split('%').next().and_then(|v| v.parse().ok()).expect("a percentage"))
        })
        .collect();
    let (best, best_acc) = points.iter().fold((0, -1.0), |b, &(i, a)| if a > b.1 { (i, a) } else { b });
    let last = points.last().expect("report points").0;
    assert_eq!(last, best + 4 * 2, "patience 4 stops four report points after the best: {points:?}");
    assert!(last < 40, "the run stopped early: {stdout}");
    let said = format!(
        "stopped at iteration {last}: 4 report points without a better validation accuracy than {best_acc:.2}%"
    );
    assert!(stdout.contains(&said), "{said}\n{stdout}");
    assert!(
        stdout.contains(&format!("kept: the model of step {best} (validation accuracy {best_acc:.2}%)")),
        "{stdout}"
    );
    let m = gpu_mnist::checkpoint::load(&out).expect("loads");
    assert_eq!((m.provenance.iterations, m.run.best_of), (best, Some(last)), "the file says which point it holds");
    // The kept model is the best point's: eval on the same validation rows is not possible here,
    // but its saved test accuracy is the one reported with that point.
    let line = stdout.lines().find(|l| l.starts_with(&format!("iter {best:>5}"))).expect("the best point's line");
    let at = line.find("test acc ").expect("test accuracy") + "test acc ".len();
    let test: f64 = line[at..].split('%').next().and_then(|v| v.parse().ok()).expect("a percentage");
    assert!((100.0 * m.provenance.test_accuracy - test).abs() < 0.01, "{} vs {test}", m.provenance.test_accuracy);
    // Judged on validation data only.
    let o = gpu_mnist(&["train", "--samples", "500", "--iterations", "2", "--keep-best"], &[]);
    assert!(
        !o.status.success() && text(&o).1.contains("--keep-best judges the model on validation data"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn eval_draws_the_confusion_matrix_and_the_mistakes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = gpu_mnist(&["eval", "--plots", dir.path().to_str().expect("utf-8")], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    for (name, min_side) in [("confusion.png", 600), ("mistakes.png", 400)] {
        let img = image::open(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(img.width() >= min_side && img.height() >= 300, "{name}: {}x{}", img.width(), img.height());
        // Drawn, not blank: some pixels are dark (text, digits).
        assert!(img.to_luma8().pixels().filter(|p| p[0] < 64).count() > 500, "{name} looks empty");
    }
    // weights.png: a tile of 28x28 per hidden unit (the shipped model's 300), at 2 px when there
    // are more than 256, ceil(sqrt(H)) a row; the first is the unit that feeds the output most,
    // coloured blue-white-red on the scale of the largest |weight|.
    let m = gpu_mnist::checkpoint::load(std::path::Path::new("data/model.safetensors")).expect("shipped model");
    let h = m.params.shape.hidden[0];
    let (px, columns) = (if h > 256 { 2 } else { 3 }, (h as f64).sqrt().ceil() as u32);
    let tile = 28 * px + 4;
    let img = image::open(dir.path().join("weights.png")).expect("weights.png").to_rgb8();
    assert_eq!(
        (img.width(), img.height()),
        ((4 + columns * tile).max(640), 64 + (h as u32).div_ceil(columns) * tile + 4 + 50)
    );
    let first = gpu_mnist::plots::units_by_contribution(&m.params)[0];
    let w = &m.params.layers[0].w;
    let scale = w.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let norm = |j: usize| m.params.layers[1].w[j * 10..(j + 1) * 10].iter().map(|v| v * v).sum::<f32>();
    assert!((0..h).all(|j| norm(j) <= norm(first)), "the first tile contributes most");
    for i in [0, 14 * 28 + 14, 20 * 28 + 9] {
        let v = w[i * h + first] / scale;
        let (end, t) = if v < 0.0 { ([33.0, 102.0, 172.0], -v) } else { ([178.0, 24.0, 43.0], v) };
        let want = end.map(|e: f32| (255.0 + (e - 255.0) * t).round() as u8);
        let (x, y) = (4 + (i % 28) as u32 * px + 1, 64 + (i / 28) as u32 * px + 1);
        assert_eq!(img.get_pixel(x, y).0, want, "input pixel {i} of unit {first}");
    }
}

#[test]
fn a_schedule_drives_the_rate_and_a_resumed_run_continues_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8 path").to_string();
    let base = ["train", "--samples", "500", "--backend", "cpu", "--lr-schedule", "cosine", "--warmup", "2"];
    // Six iterations straight through.
    let straight = path("straight.safetensors");
    let o = gpu_mnist(&[&base[..], &["--iterations", "6", "--out", &straight]].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("lr 0.8 (cosine to 0 by iteration 6, 2 warm-up iterations)"), "{out}");
    // Three, then three more from the saved model: the schedule goes on where it stopped.
    let half = path("half.safetensors");
    let o = gpu_mnist(&[&base[..], &["--iterations", "3", "--out", &half]].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = gpu_mnist(&[&base[..], &["--iterations", "3", "--init-from", &half, "--out", &half]].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    let (a, b) = (
        gpu_mnist::checkpoint::load(straight.as_ref()).expect("loads"),
        gpu_mnist::checkpoint::load(half.as_ref()).expect("loads"),
    );
    assert!(a.params == b.params, "a resumed schedule must give the same model");
    // A constant run differs: the schedule really changed the rates.
    let constant = path("constant.safetensors");
    let o = gpu_mnist(&["train", "--samples", "500", "--backend", "cpu", "--iterations", "6", "--out", &constant], &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(gpu_mnist::checkpoint::load(constant.as_ref()).expect("loads").params != a.params);
}

#[test]
fn mini_batches_count_epochs_and_a_resumed_run_continues_the_same_shuffle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_str().expect("utf-8 path").to_string();
    // 1,000 rows in batches of 300: 4 steps an epoch, the last of 100 rows.
    let base = ["train", "--samples", "1000", "--test-samples", "300", "--backend", "cpu", "--batch-size", "300"];
    let adam = ["--optimizer", "adam", "--lr", "0.003"];
    let straight = path("straight.safetensors");
    let o = gpu_mnist(&[&base[..], &adam, &["--epochs", "3", "--out", &straight]].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("12 steps of 300-row mini-batches (3 epochs of 4 steps)"), "{out}");
    for epoch in ["epoch   1  step      4", "epoch   2  step      8", "epoch   3  step     12"] {
        assert!(out.lines().any(|l| l.starts_with(epoch) && l.contains("test acc")), "{epoch}:\n{out}");
    }
    assert!(out.contains("s/epoch)"), "{out}");
    assert!(test_accuracy(&out) > 70.0, "{out}");
    // Six steps, then six more from the saved model (which keeps its batch size): epoch 2 is cut
    // in the middle, and the resumed run must visit the rest of it in the same order.
    let half = path("half.safetensors");
    let o = gpu_mnist(&[&base[..], &adam, &["--iterations", "6", "--out", &half]].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    let resumed = ["train", "--samples", "1000", "--test-samples", "300", "--backend", "cpu", "--init-from", &half];
    let o = gpu_mnist(&[&resumed[..], &adam, &["--iterations", "6", "--out", &half]].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("6 steps of 300-row mini-batches"), "the saved batch size is used:\n{out}");
    let load = |p: &str| gpu_mnist::checkpoint::load(p.as_ref()).expect("loads");
    let (a, b) = (load(&straight), load(&half));
    assert!(a.params == b.params, "a resumed mini-batch run must give the same model");
    assert_eq!(b.run.batch_size, Some(300));
    assert_eq!(b.provenance.iterations, 12);
    // Another seed shuffles differently, so the model differs.
    let other = path("other.safetensors");
    let o = gpu_mnist(&[&base[..], &adam, &["--epochs", "3", "--seed", "0", "--out", &other]].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(load(&other).params == a.params, "the same seed gives the same model");
    let o = gpu_mnist(&[&base[..], &adam, &["--epochs", "3", "--seed", "1", "--out", &other]].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(load(&other).params != a.params, "another seed gives another model");
    // A full-batch model continued on mini-batches: its epochs count from where it was.
    let full = path("full.safetensors");
    let o = gpu_mnist(&[&base[..7], &["--iterations", "3", "--out", &full]].concat(), &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    let more = ["--init-from", &full, "--batch-size", "300", "--epochs", "1", "--out", &full];
    let o = gpu_mnist(&[&resumed[..7], &more[..]].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("epochs of 300-row batches start here"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("epoch   1  step      4")), "{out}");
    assert_eq!(load(&full).provenance.iterations, 7);
}

#[test]
fn a_target_accuracy_stops_the_run_and_prints_the_time() {
    let args = [
        "train",
        "--samples",
        "2000",
        "--test-samples",
        "500",
        "--backend",
        "cpu",
        "--batch-size",
        "100",
        "--epochs",
        "30",
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
        "--target-accuracy",
        "0.85",
    ];
    let o = gpu_mnist(&args, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let line = out.lines().find(|l| l.starts_with("reached ")).unwrap_or_else(|| panic!("no reached line:\n{out}"));
    assert!(line.contains("test accuracy (target 85.00%) at iteration"), "{line}");
    assert!(line.contains(" s of training, "), "{line}");
    // It stopped at an epoch's end well before 30 epochs, at or above the target.
    let steps: usize = line
        .split("at iteration ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("step");
    assert!(steps.is_multiple_of(20) && steps < 600, "{line}");
    assert!(test_accuracy(&out) >= 85.0, "{out}");
    // Out of reach: it says so and runs to the end.
    let far = [&args[..9], &["--optimizer", "adam", "--epochs", "1", "--target-accuracy", "0.999"]].concat();
    let o = gpu_mnist(&far, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("target 99.90% not reached in 20 iterations"), "{out}");
    // Data without a test set and no --val-split: nothing to measure, said before training.
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("train.csv");
    let row = |i: usize| format!("{},{}\n", i % 10, vec![(i * 7 % 256).to_string(); 784].join(","));
    std::fs::write(&csv, (0..20).map(row).collect::<String>()).expect("write");
    let o = gpu_mnist(&["train", "--data", csv.to_str().expect("utf-8"), "--target-accuracy", "0.9"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("--target-accuracy needs held-out data") && err.contains("--val-split"), "{err}");
}

#[test]
fn a_deeper_network_trains_and_eval_reads_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("deep.safetensors");
    let out_path = out_path.to_str().expect("utf-8 path");
    // Thirty full-batch iterations at lr 0.3 (the two-layer default of 0.8 is too fast for it).
    let cpu = ["--backend", "cpu", "--hidden", "48,24", "--iterations", "30", "--lr", "0.3", "--out", out_path];
    let o = gpu_mnist(&[&["train", "--samples", "1000", "--test-samples", "300"][..], &cpu].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("model: 784-48-24-10 (relu), 39106 parameters"), "{out}");
    assert!(test_accuracy(&out) > 60.0, "{out}");
    let m = gpu_mnist::checkpoint::load(out_path.as_ref()).expect("loads");
    assert_eq!(m.params.shape.hidden, vec![48, 24]);
    // A network too large to save is refused before its parameters are allocated.
    let huge = ["--backend", "cpu", "--hidden", "20000,20000", "--optimizer", "adam"];
    let o = gpu_mnist(&[&SHORT[..], &huge].concat(), &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("784-20000-20000-10 with adam would save a 4759 MiB model file"), "{err}");
    // eval reads the deeper model.
    let o = gpu_mnist(&["eval", "--model", out_path, "--json"], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("\"layers\": [\n    784,\n    48,\n    24,\n    10\n  ]"), "{out}");
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn a_deeper_network_on_the_gpu_verifies_against_the_cpu() {
    let gpu = ["--backend", "gpu", "--hidden", "48,24", "--verify-every", "2", "--chunk-rows", "400"];
    let o = gpu_mnist(&[&SHORT[..], &gpu].concat(), &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("model: 784-48-24-10"), "{out}");
    let verified: Vec<&str> = out.lines().filter(|l| l.starts_with("verify iter")).collect();
    assert_eq!(verified.len(), 4, "iterations 1, 2, 4, 6:\n{out}");
    assert!(verified.iter().all(|l| l.contains("dw3 ") && l.contains("db3 ")), "every layer checked:\n{out}");
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn gpu_mini_batches_verify_against_the_cpu() {
    let args = [
        "train",
        "--samples",
        "1000",
        "--test-samples",
        "300",
        "--backend",
        "gpu",
        "--batch-size",
        "300",
        "--epochs",
        "2",
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--verify-every",
        "3",
    ];
    let o = gpu_mnist(&args, &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("8 steps of 300-row mini-batches (2 epochs of 4 steps)"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("verify iter")).count(), 3, "iterations 1, 3, 6:\n{out}");
    assert!(out.lines().any(|l| l.starts_with("epoch   2  step      8")), "{out}");
    assert!(test_accuracy(&out) > 60.0, "{out}");
}
