//! Saved models: round trip, atomic writes, and every malformed file refused with a one-line
//! reason naming it.

mod common;

use std::path::Path;

use common::f32s;
use gpu_mnist::backend::Backend;
use gpu_mnist::checkpoint::{self, METADATA_KEYS, Model, Provenance, RUN_KEYS, RunRecord};
use gpu_mnist::cpu::CpuBackend;
use gpu_mnist::model::{Activation, Params, Shape};
use gpu_mnist::optim::{Optimizer, OptimizerConfig, OptimizerState};
use safetensors::tensor::Dtype;

fn model(bias: bool) -> Model {
    let shape = Shape::new(784, &[33], 10, bias);
    let mut params = Params::init(shape.clone(), Activation::Elu, 3);
    if bias {
        params.layers[0].b.iter_mut().enumerate().for_each(|(i, b)| *b = i as f32 * 0.01);
        params.layers[1].b.iter_mut().enumerate().for_each(|(i, b)| *b = -(i as f32) * 0.02);
    }
    let provenance = Provenance {
        dataset: "mnist".into(),
        iterations: 12,
        backend: "cpu (2 threads)".into(),
        test_accuracy: 0.9123,
        version: "test".into(),
    };
    let run = RunRecord { lr: Some(0.8), seed: Some(3), ..Default::default() };
    Model { params, activation: Activation::Elu, provenance, run, optimizer: None }
}

#[test]
fn round_trip_with_and_without_bias() {
    let dir = tempfile::tempdir().expect("temp dir");
    for bias in [true, false] {
        let path = dir.path().join(format!("m{bias}.safetensors"));
        let m = model(bias);
        checkpoint::save(&path, &m).expect("saves");
        assert_eq!(checkpoint::load(&path).expect("loads"), m);
        // Other tools see the documented tensors and metadata.
        let bytes = std::fs::read(&path).expect("read");
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors");
        let meta = header.metadata().clone().expect("metadata");
        for key in METADATA_KEYS {
            assert!(meta.contains_key(key), "metadata lacks {key}");
        }
        let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let mut names = file.names();
        names.sort();
        assert_eq!(names, if bias { vec!["b1", "b2", "w1", "w2"] } else { vec!["w1", "w2"] });
        assert_eq!(file.tensor("w1").expect("w1").shape(), &[784, 33]);
    }
    // Only the models are left: no temporary files.
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 2);
}

#[test]
fn a_deeper_model_round_trips_with_its_optimizer_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("deep.safetensors");
    let mut m = model(true);
    m.params = Params::init(Shape::new(784, &[37, 19, 11], 10, true), Activation::Relu, 9);
    m.run.batch_size = Some(128);
    let mut state = OptimizerState::new(Optimizer::Adam, m.params.shape.clone());
    state.t = 41;
    for (l, layer) in state.v.layers.iter_mut().enumerate() {
        layer.w.iter_mut().enumerate().for_each(|(i, v)| *v = (i + l) as f32 * 1e-3);
    }
    m.run.optimizer = Some(OptimizerConfig { kind: Optimizer::Adam, ..Default::default() });
    m.optimizer = Some(state);
    checkpoint::save(&path, &m).expect("saves");
    assert_eq!(checkpoint::load(&path).expect("loads"), m);
    let bytes = std::fs::read(&path).expect("read");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert_eq!(file.tensor("w3").expect("w3").shape(), &[19, 11]);
    assert_eq!(file.tensor("w4").expect("w4").shape(), &[11, 10]);
    assert_eq!(file.tensor("opt.v.b4").expect("opt.v.b4").shape(), &[10]);
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors");
    let meta = header.metadata().clone().expect("metadata");
    assert_eq!(meta.get("hidden").map(String::as_str), Some("37,19,11"));
    assert_eq!(meta.get("batch_size").map(String::as_str), Some("128"));
}

#[test]
fn a_failed_save_leaves_the_old_file_and_no_temporary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("busy");
    std::fs::create_dir(&target).expect("mkdir");
    std::fs::write(target.join("keep"), b"x").expect("write");
    let err = checkpoint::save(&target, &model(true)).expect_err("cannot replace a folder");
    assert!(err.to_string().contains("busy"), "{err}");
    assert!(target.join("keep").exists());
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "temporary file left behind");
}

/// A 4 -> 3 -> 2 model file with the given metadata overrides and tensors.
fn write(path: &Path, meta: &[(&str, &str)], tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    common::write_model_file(path, [4, 3, 2], meta, tensors);
}

#[test]
fn malformed_models_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let w1 = || ("w1", Dtype::F32, vec![4, 3], f32s(12, 0.5));
    let w2 = || ("w2", Dtype::F32, vec![3, 2], f32s(6, 0.5));
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<(&'a str, Dtype, Vec<usize>, Vec<u8>)>, &'a str);
    let cases: Vec<Case> = vec![
        ("ok", vec![], vec![w1(), w2()], ""),
        ("no-w2", vec![], vec![w1()], "lacks tensor \"w2\""),
        ("bias-missing", vec![("bias", "true")], vec![w1(), w2()], "lacks tensor \"b1\""),
        ("f64", vec![], vec![("w1", Dtype::F64, vec![4, 3], f32s(24, 0.0)), w2()], "is F64, expected F32"),
        (
            "shape",
            vec![],
            vec![("w1", Dtype::F32, vec![3, 4], f32s(12, 0.5)), w2()],
            "has shape [3, 4], but the metadata says [4, 3]",
        ),
        ("extra", vec![], vec![w1(), w2(), ("w3", Dtype::F32, vec![1], f32s(1, 0.0))], "unexpected tensor \"w3\""),
        ("nan", vec![], vec![("w1", Dtype::F32, vec![4, 3], f32s(12, f32::NAN)), w2()], "NaN or infinite"),
        ("no-meta", vec![("hidden", "")], vec![w1(), w2()], "metadata lacks \"hidden\""),
        ("format", vec![("format", "pytorch")], vec![w1(), w2()], "expected \"gpu-mnist-mlp/1\""),
        ("act", vec![("activation", "tanh")], vec![w1(), w2()], "unknown activation \"tanh\""),
        ("bias-word", vec![("bias", "yes")], vec![w1(), w2()], "expected true or false"),
        ("sizes", vec![("hidden", "x")], vec![w1(), w2()], "\"hidden\" is not a list of whole numbers"),
        ("sizes-list", vec![("hidden", "3,")], vec![w1(), w2()], "\"hidden\" is not a list of whole numbers"),
        ("zero-width", vec![("hidden", "3,0")], vec![w1(), w2()], "cannot make a classifier"),
        ("too-deep", vec![("hidden", "3,3,3,3,3,3,3,3")], vec![w1(), w2()], "more than the 7 supported"),
        (
            "depth",
            vec![("hidden", "3,5")],
            vec![w1(), w2()],
            "tensor \"w2\" has shape [3, 2], but the metadata says [3, 5]",
        ),
        (
            "deep-ok",
            vec![("hidden", "3,5")],
            vec![w1(), ("w2", Dtype::F32, vec![3, 5], f32s(15, 0.5)), ("w3", Dtype::F32, vec![5, 2], f32s(10, 0.5))],
            "",
        ),
        ("classes", vec![("classes", "1")], vec![w1(), w2()], "cannot make a classifier"),
        ("batch", vec![("batch_size", "0")], vec![w1(), w2()], "\"batch_size\" is \"0\", not a whole number above 0"),
        ("batch-word", vec![("batch_size", "all")], vec![w1(), w2()], "\"batch_size\" is \"all\""),
    ];
    for (name, meta, tensors, reason) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        write(&path, &meta, &tensors);
        match checkpoint::load(&path) {
            Ok(_) if reason.is_empty() => {}
            Ok(_) => panic!("{name}: loaded, expected \"{reason}\""),
            Err(e) => {
                let msg = e.to_string();
                assert!(!reason.is_empty(), "{name}: refused a good file: {msg}");
                assert!(msg.contains(reason) && msg.contains(&format!("{name}.safetensors")), "{name}: {msg}");
                assert_eq!(msg.lines().count(), 1, "{name}: {msg}");
            }
        }
    }
    for (name, bytes) in [
        ("empty", vec![]),
        ("text", b"not a model at all".to_vec()),
        ("huge-header", {
            let mut b = u64::MAX.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let msg = checkpoint::load(&path).expect_err("refused").to_string();
        assert!(msg.contains("not a safetensors file") && msg.contains(name), "{name}: {msg}");
    }
    let missing = checkpoint::load(&dir.path().join("absent.safetensors")).expect_err("refused").to_string();
    assert!(missing.contains("absent.safetensors"), "{missing}");
}

/// A model with `kind`'s state: moments of recognisable values, 7 steps.
fn with_optimizer(bias: bool, kind: Optimizer) -> Model {
    let mut m = model(bias);
    let config = OptimizerConfig { kind, weight_decay: 0.01, beta1: 0.8, ..Default::default() };
    let mut state = OptimizerState::new(kind, m.params.shape.clone());
    for (name, t) in state.m.tensors_mut().into_iter().chain(state.v.tensors_mut()) {
        if bias || name.starts_with('w') {
            t.iter_mut().enumerate().for_each(|(i, v)| *v = (i % 13) as f32 * 1e-3);
        }
    }
    if kind != Optimizer::Adam {
        state.v = Params::zeros(m.params.shape.clone());
    }
    state.t = if kind == Optimizer::Adam { 7 } else { 0 };
    m.run.optimizer = Some(config);
    m.optimizer = (kind != Optimizer::Gd).then_some(state);
    m
}

#[test]
fn optimizer_state_round_trips() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (kind, tensors) in
        [(Optimizer::Momentum, ["opt.m.w1"].as_slice()), (Optimizer::Adam, &["opt.m.w1", "opt.v.b2"])]
    {
        for bias in [true, false] {
            let path = dir.path().join(format!("{kind:?}{bias}.safetensors"));
            let mut m = with_optimizer(bias, kind);
            checkpoint::save(&path, &m).expect("saves");
            let loaded = checkpoint::load(&path).expect("loads");
            // Hyper-parameters the rule does not use are not written; they load as the defaults.
            if kind != Optimizer::Adam {
                m.run.optimizer.as_mut().unwrap().beta1 = OptimizerConfig::default().beta1;
            }
            assert_eq!(loaded, m, "{kind:?} bias {bias}");
            let bytes = std::fs::read(&path).expect("reads");
            let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
            for name in tensors.iter().filter(|n| bias || !n.contains(".b")) {
                assert!(st.names().contains(name), "{kind:?}: {name} in {:?}", st.names());
            }
            let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
            let meta = header.metadata().clone().expect("metadata");
            assert_eq!(meta["optimizer"], kind.name());
            assert_eq!(meta.contains_key("adam_t"), kind == Optimizer::Adam);
        }
    }
    // Plain descent keeps no state: its file holds the rule and its weight decay, no state
    // tensors and no step count, and it loads without state.
    let a = dir.path().join("a.safetensors");
    let mut gd = with_optimizer(true, Optimizer::Gd);
    gd.run.optimizer.as_mut().unwrap().beta1 = OptimizerConfig::default().beta1;
    checkpoint::save(&a, &gd).expect("saves");
    let loaded = checkpoint::load(&a).expect("loads");
    assert_eq!(loaded.optimizer, None);
    assert_eq!(loaded, gd);
    let bytes = std::fs::read(&a).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert!(st.names().iter().all(|n| !n.starts_with("opt.")), "{:?}", st.names());
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let meta = header.metadata().clone().expect("metadata");
    assert_eq!((meta["optimizer"].as_str(), meta["weight_decay"].as_str()), ("gd", "0.01"));
    assert!(!meta.contains_key("adam_t"));
}

#[test]
fn bad_optimizer_state_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m.safetensors");
    let mut m = with_optimizer(true, Optimizer::Adam);
    m.optimizer.as_mut().unwrap().v.layers[1].w[3] = f32::NAN;
    checkpoint::save(&path, &m).expect("saves");
    let e = checkpoint::load(&path).expect_err("NaN state").to_string();
    assert!(e.contains("\"opt.v\" holds NaN"), "{e}");
    // A momentum file's tensors in a file that says Adam: opt.v is missing.
    let m = with_optimizer(true, Optimizer::Momentum);
    checkpoint::save(&path, &m).expect("saves");
    let mut bytes = std::fs::read(&path).unwrap();
    let (from, to) = (b"\"optimizer\":\"momentum\"", b"\"optimizer\":\"adam\"    ");
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the optimizer key");
    bytes[at..at + to.len()].copy_from_slice(to);
    std::fs::write(&path, &bytes).unwrap();
    let e = checkpoint::load(&path).expect_err("missing moments").to_string();
    assert!(e.contains("lacks"), "{e}");
}

#[test]
fn a_resumed_cpu_run_continues_exactly() {
    // Ten Adam steps at once, or five, saved, loaded and five more: the same parameters.
    let data = {
        let mn = common::mnist();
        gpu_mnist::data::Splits::new(common::subset(&mn.train, 600), common::subset(&mn.test, 10))
    };
    let cfg = OptimizerConfig { kind: Optimizer::Adam, weight_decay: 0.1, ..Default::default() };
    let shape = Shape::new(784, &[20], 10, true);
    let start = Params::init(shape.clone(), Activation::Relu, 2);
    let new = |p: Params| CpuBackend::new(&data, p, Activation::Relu).with_optimizer(cfg);
    let mut straight = new(start.clone());
    let mut first = new(start);
    for _ in 0..10 {
        straight.step(0, 2e-3).unwrap();
    }
    for _ in 0..5 {
        first.step(0, 2e-3).unwrap();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("half.safetensors");
    let mut m = model(true);
    m.params = first.params().unwrap();
    m.activation = Activation::Relu;
    m.run.optimizer = Some(cfg);
    m.optimizer = Some(first.optimizer_state().unwrap());
    checkpoint::save(&path, &m).expect("saves");
    let loaded = checkpoint::load(&path).expect("loads");
    let mut second = new(loaded.params);
    second.set_optimizer_state(loaded.optimizer.expect("state")).expect("state fits");
    for _ in 0..5 {
        second.step(0, 2e-3).unwrap();
    }
    assert_eq!(second.params().unwrap(), straight.params().unwrap());
    assert_eq!(second.optimizer_state().unwrap(), straight.optimizer_state().unwrap());
}

#[test]
fn every_key_a_model_file_holds_is_documented() {
    // A model with every field of its plan and Adam's state: the keys it writes are the
    // network's and provenance's, the plan's, and Adam's step count.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("all.safetensors");
    let mut m = with_optimizer(true, Optimizer::Adam);
    m.run = RunRecord {
        seed: Some(1),
        backend: Some(gpu_mnist::backend::BackendChoice::Cpu),
        data: Some("/data".into()),
        test_data: Some("/test.csv".into()),
        format: Some(gpu_mnist::data::Format::Csv),
        samples: Some(10),
        test_samples: Some(5),
        val_split: Some(0.1),
        lr: Some(0.5),
        lr_schedule: Some(gpu_mnist::schedule::LrSchedule::Step),
        warmup: Some(2),
        lr_step_every: Some(3),
        lr_gamma: Some(0.5),
        planned_iterations: Some(20),
        optimizer: m.run.optimizer,
        batch_size: Some(4),
        batch_origin: Some(2),
        eval_every: Some(5),
        report_every: Some(5),
        target_accuracy: Some(0.9),
        augment: Some(gpu_mnist::augment::Augment {
            kind: gpu_mnist::augment::Augmentation::Elastic,
            shift: 1.5,
            rotate: 10.0,
            scale: 0.15,
            shear: 5.0,
            alpha: 30.0,
            sigma: 3.5,
        }),
        keep_best: Some(true),
        patience: Some(3),
        dropout: Some(0.25),
        best_of: Some(40),
    };
    checkpoint::save(&path, &m).expect("saves");
    assert_eq!(checkpoint::load(&path).expect("loads"), m);
    let bytes = std::fs::read(&path).expect("read");
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors");
    let meta = header.metadata().clone().expect("metadata");
    for key in meta.keys() {
        let known = METADATA_KEYS.contains(&key.as_str()) || RUN_KEYS.contains(&key.as_str()) || key == "adam_t";
        assert!(known, "{key} is written but not listed in METADATA_KEYS or RUN_KEYS");
    }
    // Adam has no momentum of its own; every other key of the plan is written.
    for key in RUN_KEYS.iter().filter(|&&k| k != "momentum") {
        assert!(meta.contains_key(*key), "{key} is listed but this model does not write it");
    }
}
