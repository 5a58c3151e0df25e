//! Faults during training lose nothing: divergence stops at once and keeps the last good model,
//! Ctrl-C saves a checkpoint to resume from, GPU faults are errors rather than panics, sizes
//! beyond the device are refused, and the CPU backend is bit-for-bit deterministic.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{gpu, mnist, subset};
use gpu_mnist::backend::{Backend, BackendError};
use gpu_mnist::data::Splits;
use gpu_mnist::gpu::{GpuBackend, GpuOptions};
use gpu_mnist::model::{Activation, Params, Shape};

/// The program, run from the sources' folder, its tuner's cache in a folder of this test run's
/// (never the user's).
fn bin() -> Command {
    static CACHE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().expect("temp dir"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).env("GPU_MNIST_CACHE_DIR", cache.path());
    cmd
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn divergence_stops_at_once_and_never_overwrites_with_a_broken_model() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("model.safetensors");
    // An absurd learning rate: the first update sends the weights to infinity.
    let o =
        run(&["train", "--samples", "500", "--iterations", "50", "--lr", "1e30", "--backend", "cpu", "--out", s(&out)]);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(msg.contains("at iteration 2;") && msg.contains("try a smaller --lr"), "{msg}");
    assert!(!out.exists(), "no good model existed, so nothing is written: {msg}");
    assert!(!msg.contains("panicked"), "{msg}");

    // ELU at lr 1e8 overflows at iteration 4 (measured); with a report point every iteration the
    // parameters after iteration 3 are the last good ones, and they replace the older file.
    std::fs::write(&out, b"an older file").expect("write");
    let o = run(&[
        "train",
        "--samples",
        "500",
        "--iterations",
        "40",
        "--lr",
        "1e8",
        "--activation",
        "elu",
        "--backend",
        "cpu",
        "--eval-every",
        "1",
        "--out",
        s(&out),
    ]);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(msg.contains("became NaN at iteration 4"), "{msg}");
    assert!(msg.contains("saved the last good model (iteration 3)") && msg.contains("--init-from"), "{msg}");
    let m = gpu_mnist::checkpoint::load(&out).expect("the saved model is whole and finite");
    assert_eq!(m.provenance.iterations, 3);
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_prints_how_to_resume() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = tmp.path().join("model.safetensors");
    let mut child = bin()
        .args(["train", "--samples", "2000", "--iterations", "100000", "--backend", "cpu", "--eval-every", "1"])
        .args(["--out", s(&out)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    // Wait for the first report point, then interrupt as Ctrl-C does.
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("a line");
        seen += &line;
        if line.starts_with("iter ") {
            break;
        }
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let o = child.wait_with_output().expect("the run ends");
    let msg = format!("{seen}\n{}\n{}", rest.join("\n"), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(130), "{msg}");
    assert!(msg.contains("interrupted at iteration") && msg.contains("of 100000"), "{msg}");
    assert!(msg.contains(&format!("resume with: gpu-mnist train --init-from {}", out.display())), "{msg}");
    let m = gpu_mnist::checkpoint::load(&out).expect("the checkpoint loads");
    assert!(m.provenance.iterations >= 1 && m.provenance.iterations < 100000, "{:?}", m.provenance);
}

#[test]
fn the_same_seed_gives_bit_identical_models_whatever_the_threads() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for (i, threads) in ["2", "2", "1"].iter().enumerate() {
        let out = tmp.path().join(format!("m{i}.safetensors"));
        let args = [
            "train",
            "--samples",
            "1500",
            "--iterations",
            "8",
            "--backend",
            "cpu",
            "--seed",
            "5",
            "--threads",
            threads,
        ];
        let o = run(&[&args[..], &["--out", s(&out)]].concat());
        assert!(o.status.success(), "{}", text(&o));
        let mut m = gpu_mnist::checkpoint::load(&out).expect("loads");
        m.provenance.backend.clear(); // names the thread count
        files.push(m);
    }
    // The two runs on 2 threads wrote the same bytes (metadata included, in a fixed order).
    let bytes = |i: usize| std::fs::read(tmp.path().join(format!("m{i}.safetensors"))).expect("read");
    assert!(bytes(0) == bytes(1), "two runs with the same seed wrote different files");
    for m in &files[1..] {
        assert!(
            m.params.layers[0].w == files[0].params.layers[0].w && m.params.layers[0].b == files[0].params.layers[0].b
        );
        assert!(
            m.params.layers[1].w == files[0].params.layers[1].w && m.params.layers[1].b == files[0].params.layers[1].b
        );
        assert_eq!(m.provenance.test_accuracy.to_bits(), files[0].provenance.test_accuracy.to_bits());
    }
}

fn small_splits() -> Splits {
    let m = mnist();
    Splits::new(subset(&m.train, 256), subset(&m.test, 64))
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn a_hidden_layer_beyond_the_device_is_refused_clearly() {
    let ctx = gpu();
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    // The smallest H whose W1 alone passes the binding limit.
    let h = (limit / (784 * 4) + 1) as usize;
    let data = small_splits();
    let shape = Shape::new(784, &[h], 10, true);
    let params = Params::zeros(shape.clone());
    match GpuBackend::new(ctx, &data, &params, Activation::Relu, GpuOptions::default()) {
        Err(e @ BackendError::Unsupported(_)) => {
            let m = e.to_string();
            assert!(m.contains("binding limit") && m.contains("--backend cpu"), "{m}");
        }
        Err(e) => panic!("expected a clear refusal, got {e}"),
        Ok(_) => panic!("{h} hidden units cannot fit one binding of {limit} bytes"),
    }
}

#[test]
#[ignore = "needs a GPU adapter (lavapipe will do); run with --include-ignored"]
fn a_lost_gpu_device_is_an_error_not_a_panic() {
    let ctx = gpu();
    let data = small_splits();
    let params = Params::init(Shape::new(784, &[16], 10, true), Activation::Relu, 0);
    let mut b = GpuBackend::new(ctx, &data, &params, Activation::Relu, GpuOptions::default()).expect("backend");
    b.step(0, 0.1).expect("a step before the fault");
    b.step_stats().expect("statistics before the fault");
    b.context().device.destroy();
    let after = b.step(0, 0.1).and_then(|_| b.step_stats());
    match after {
        Err(BackendError::Gpu(m)) => assert!(!m.is_empty() && !m.contains('\n'), "{m}"),
        other => panic!("expected a GPU error after the device was destroyed, got {other:?}"),
    }
}

/// Starts `args` and sends it Ctrl-C's signal after its first report line; returns everything
/// it printed and its exit status.
fn interrupt(args: &[&str]) -> (String, Option<i32>) {
    let mut child = bin().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.expect("a line");
        seen += &format!("{line}\n");
        if line.starts_with("epoch ") || line.starts_with("iter ") {
            break;
        }
    }
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let o = child.wait_with_output().expect("the run ends");
    (format!("{seen}{}\n{}", rest.join("\n"), String::from_utf8_lossy(&o.stderr)), o.status.code())
}

#[test]
fn an_interrupted_run_continues_exactly_from_its_model_file_alone() {
    // 3,000 digits in batches of 50 (60 steps an epoch), Adam on a cosine schedule, 6,000 steps.
    let tmp = tempfile::tempdir().expect("temp dir");
    let (straight, half) = (tmp.path().join("straight.safetensors"), tmp.path().join("half.safetensors"));
    let args = [
        "train",
        "--samples",
        "3000",
        "--test-samples",
        "100",
        "--batch-size",
        "50",
        "--epochs",
        "100",
        "--hidden",
        "32",
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--lr-schedule",
        "cosine",
        "--seed",
        "3",
        "--eval-every",
        "20",
        "--backend",
        "cpu",
    ];
    let o = run(&[&args[..], &["--out", s(&straight)]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let (msg, code) = interrupt(&[&args[..], &["--out", s(&half)]].concat());
    assert_eq!(code, Some(130), "{msg}");
    let resume = format!("resume with: gpu-mnist train --init-from {}\n", half.display());
    assert!(msg.contains(&resume), "the model file alone continues the run:\n{msg}");
    let stopped = gpu_mnist::checkpoint::load(&half).expect("the checkpoint loads").provenance.iterations;
    assert!(stopped > 0 && stopped < 6000, "interrupted at {stopped}");
    // With no hardware GPU in sight, `auto` trains on the CPU, as the interrupted run did.
    let o = bin().args(["train", "--init-from", s(&half)]).env("GPU_MNIST_HIDE_ADAPTERS", "1").output().expect("runs");
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains(&format!("continuing the planned 6000 steps: {} to go", 6000 - stopped)), "{out}");
    let (a, b) =
        (gpu_mnist::checkpoint::load(&straight).expect("loads"), gpu_mnist::checkpoint::load(&half).expect("loads"));
    assert_eq!(b.provenance.iterations, 6000);
    assert!(a.params == b.params, "the continued run ends where the straight one did");
    assert_eq!(a.optimizer, b.optimizer, "with the same optimizer state");
    assert_eq!(a.run, b.run, "and the same plan");
}
