//! Bad input, end to end: a table of malformed data sets (IDX, CSV, image folders) and model
//! files, each given to the program as a user would. Every one must end with exit status 1 and
//! exactly one line on stderr that names the offending file (and row), with no panic, under a
//! 1 GiB address-space limit: a header that lies about its size must not be believed.

mod common;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{f32s, mnist, subset};
use flate2::Compression;
use flate2::write::GzEncoder;
use gpu_mnist::data::Dataset;
use safetensors::tensor::Dtype;

/// Address space for each run, in KiB: far below what any lying header asks for (4 GiB and up),
/// far above what the real runs here use (about 200 MiB).
const MEMORY_LIMIT_KIB: u64 = 1 << 20;

fn idx_images(set: &Dataset) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for x in [set.n, set.rows, set.cols] {
        v.extend((x as u32).to_be_bytes());
    }
    v.extend(&set.pixels);
    v
}

fn idx_labels(set: &Dataset) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend((set.n as u32).to_be_bytes());
    v.extend(&set.labels);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// The four IDX files of small real splits in `dir`, with `file` replaced by `bytes`.
fn idx_folder(dir: &Path, file: &str, bytes: Option<Vec<u8>>) {
    let m = mnist();
    let (train, test) = (subset(&m.train, 100), subset(&m.test, 20));
    std::fs::create_dir_all(dir).expect("mkdir");
    for (name, content) in [
        ("train-images-idx3-ubyte", idx_images(&train)),
        ("train-labels-idx1-ubyte", idx_labels(&train)),
        ("t10k-images-idx3-ubyte", idx_images(&test)),
        ("t10k-labels-idx1-ubyte", idx_labels(&test)),
    ] {
        let content = if name == file { bytes.clone() } else { Some(content) };
        if let Some(c) = content {
            std::fs::write(dir.join(name), c).expect("write");
        }
    }
}

fn csv_rows(set: &Dataset, n: usize) -> String {
    let mut s = String::new();
    for i in 0..n.min(set.n) {
        let row: Vec<String> = set.image(i).iter().map(|p| p.to_string()).collect();
        let _ = writeln!(s, "{},{}", set.labels[i], row.join(","));
    }
    s
}

fn png(path: &Path, side: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    image::GrayImage::from_fn(side, side, |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8])).save(path).expect("png");
}

/// A 784 -> 4 -> 10 model file with the given metadata overrides and f32 tensors.
fn model(path: &Path, meta: &[(&str, &str)], tensors: &[(&str, Vec<usize>, Vec<u8>)]) {
    let tensors: Vec<_> = tensors.iter().map(|(n, s, b)| (*n, Dtype::F32, s.clone(), b.clone())).collect();
    common::write_model_file(path, [784, 4, 10], meta, &tensors);
}

/// One bad input: how to make it in a fresh folder, the arguments that use it (`{}` is the
/// folder), and what the error line must contain besides the file's name.
struct Case {
    name: &'static str,
    make: fn(&Path) -> PathBuf,
    args: &'static [&'static str],
    says: &'static str,
}

fn run(case: &Case, dir: &Path) {
    let bad = (case.make)(dir);
    let args: Vec<String> = case.args.iter().map(|a| a.replace("{}", dir.to_str().expect("UTF-8"))).collect();
    let line = format!("ulimit -v {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\"");
    let o = Command::new("bash")
        .arg("-c")
        .arg(line)
        .arg(env!("CARGO_BIN_EXE_gpu-mnist"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GPU_MNIST_HIDE_ADAPTERS", "1")
        .output()
        .expect("bash runs");
    let err = String::from_utf8_lossy(&o.stderr);
    // predict reports each file on its own line of stdout, then one summary line on stderr.
    let named = err.to_string() + &String::from_utf8_lossy(&o.stdout);
    let file = bad.file_name().and_then(|f| f.to_str()).expect("a file name");
    let c = case.name;
    assert_eq!(o.status.code(), Some(1), "{c}: exit {:?}, stderr:\n{err}", o.status);
    assert_eq!(err.lines().count(), 1, "{c}: one line expected:\n{err}");
    assert!(err.starts_with("error: ") && !err.contains("panicked"), "{c}: {err}");
    assert!(named.contains(file), "{c}: the error should name {file}: {named}");
    assert!(named.contains(case.says), "{c}: the error should say {:?}: {named}", case.says);
}

const TRAIN: &[&str] = &["train", "--data", "{}/data", "--iterations", "1", "--backend", "cpu", "--out", "{}/m.st"];
const TRAIN_CSV: &[&str] =
    &["train", "--data", "{}/data.csv", "--iterations", "1", "--backend", "cpu", "--out", "{}/m.st"];
const EVAL: &[&str] = &["eval", "--model", "{}/model.safetensors"];

fn idx(dir: &Path, file: &str, bytes: Vec<u8>) -> PathBuf {
    idx_folder(&dir.join("data"), file, Some(bytes));
    dir.join("data").join(file)
}

fn small() -> Dataset {
    subset(&mnist().train, 100)
}

fn csv(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("data.csv");
    std::fs::write(&p, text).expect("write");
    p
}

fn good_csv() -> String {
    csv_rows(&small(), 5)
}

/// `good_csv()` with the first `from` on line `line` (from 1) replaced by `to`.
fn edited_csv(line: usize, from: &str, to: &str) -> String {
    let mut lines: Vec<String> = good_csv().lines().map(str::to_string).collect();
    lines[line - 1] = lines[line - 1].replacen(from, to, 1);
    lines.join("\n") + "\n"
}

const CASES: &[Case] = &[
    // ---- IDX ----
    Case {
        name: "idx bad magic",
        make: |d| idx(d, "train-images-idx3-ubyte", b"PK\x03\x04 not idx".to_vec()),
        args: TRAIN,
        says: "bad magic",
    },
    Case {
        name: "idx labels bad magic",
        make: |d| idx(d, "train-labels-idx1-ubyte", vec![1, 2, 3, 4, 0, 0, 0, 1, 5]),
        args: TRAIN,
        says: "bad magic",
    },
    Case {
        name: "idx truncated header",
        make: |d| idx(d, "train-images-idx3-ubyte", vec![0, 0, 8, 3, 0, 0]),
        args: TRAIN,
        says: "truncated header",
    },
    Case {
        name: "idx truncated data",
        make: |d| {
            let mut v = idx_images(&small());
            v.truncate(5000);
            idx(d, "train-images-idx3-ubyte", v)
        },
        args: TRAIN,
        says: "truncated data",
    },
    Case {
        name: "idx huge header sizes",
        make: |d| {
            let mut v = vec![0, 0, 8, 3];
            for x in [u32::MAX, 28, 28] {
                v.extend(x.to_be_bytes())
            }
            v.extend([0; 100]);
            idx(d, "train-images-idx3-ubyte", v)
        },
        args: TRAIN,
        says: "limit",
    },
    Case {
        name: "idx huge header, gzipped",
        make: |d| {
            let mut v = vec![0, 0, 8, 3];
            for x in [1 << 21, 28, 28] {
                v.extend((x as u32).to_be_bytes())
            }
            v.extend([0; 100]);
            idx(d, "train-images-idx3-ubyte", gzip(&v))
        },
        args: TRAIN,
        says: "truncated data",
    },
    Case {
        name: "idx counts disagree",
        make: |d| {
            let mut s = small();
            s.truncate(60);
            idx(d, "train-labels-idx1-ubyte", idx_labels(&s))
        },
        args: TRAIN,
        says: "holds 100 images but",
    },
    Case {
        name: "idx label out of range",
        make: |d| {
            let mut s = small();
            s.labels[17] = 12;
            idx(d, "train-labels-idx1-ubyte", idx_labels(&s))
        },
        args: TRAIN,
        says: "index 17 is 12",
    },
    Case {
        name: "idx trailing bytes",
        make: |d| {
            let mut v = idx_labels(&small());
            v.extend([1, 2]);
            idx(d, "train-labels-idx1-ubyte", v)
        },
        args: TRAIN,
        says: "trailing bytes",
    },
    Case {
        name: "idx corrupt gzip",
        make: |d| {
            let mut v = gzip(&idx_images(&small()));
            let n = v.len();
            v.truncate(n / 2);
            idx(d, "train-images-idx3-ubyte", v)
        },
        args: TRAIN,
        says: "gzip",
    },
    Case {
        name: "idx empty file",
        make: |d| idx(d, "t10k-labels-idx1-ubyte", Vec::new()),
        args: TRAIN,
        says: "empty file",
    },
    Case {
        name: "idx float data type",
        make: |d| {
            idx(d, "train-images-idx3-ubyte", vec![0, 0, 0x0d, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
        },
        args: TRAIN,
        says: "float",
    },
    Case {
        name: "idx labels where images belong",
        make: |d| idx(d, "train-images-idx3-ubyte", idx_labels(&small())),
        args: TRAIN,
        says: "expected images",
    },
    Case {
        name: "idx zero-sized images",
        make: |d| idx(d, "t10k-images-idx3-ubyte", vec![0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 28]),
        args: TRAIN,
        says: "zero-sized",
    },
    Case {
        name: "idx missing file",
        make: |d| {
            idx_folder(&d.join("data"), "t10k-labels-idx1-ubyte", None);
            d.join("data").join("t10k-labels-idx1-ubyte")
        },
        args: TRAIN,
        says: "not found",
    },
    // ---- CSV ----
    Case {
        name: "csv non-numeric field",
        make: |d| csv(d, &edited_csv(3, ",0,", ",zero,")),
        args: TRAIN_CSV,
        says: "line 3: column",
    },
    Case {
        name: "csv short row",
        make: |d| {
            let mut s = good_csv();
            s += "3,0,0,0\n";
            csv(d, &s)
        },
        args: TRAIN_CSV,
        says: "line 6: 4 fields",
    },
    Case {
        name: "csv pixel above 255",
        make: |d| csv(d, &edited_csv(2, ",0,", ",300,")),
        args: TRAIN_CSV,
        says: "line 2: column",
    },
    Case {
        name: "csv negative pixel",
        make: |d| csv(d, &edited_csv(4, ",0,", ",-4,")),
        args: TRAIN_CSV,
        says: "line 4",
    },
    Case {
        name: "csv label out of range",
        make: |d| csv(d, &edited_csv(2, "", "1")),
        args: TRAIN_CSV,
        says: "line 2: column 1: label",
    },
    Case {
        name: "csv header only",
        make: |d| csv(d, "label,pixel0,pixel1,pixel2,pixel3\n"),
        args: TRAIN_CSV,
        says: "no rows",
    },
    Case { name: "csv empty", make: |d| csv(d, ""), args: TRAIN_CSV, says: "" },
    Case {
        name: "csv one endless line",
        make: |d| csv(d, &"1,".repeat(5_000_000)),
        args: TRAIN_CSV,
        says: "line 1: line longer than",
    },
    Case {
        name: "csv binary garbage",
        make: |d| {
            let p = d.join("data.csv");
            std::fs::write(&p, (0..4096u32).map(|i| (i * 97 % 251) as u8).collect::<Vec<u8>>()).expect("write");
            p
        },
        args: TRAIN_CSV,
        says: "",
    },
    Case {
        name: "csv without labels for training",
        make: |d| {
            let s = small();
            let rows: Vec<String> =
                (0..4).map(|i| s.image(i).iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",")).collect();
            csv(d, &rows.join("\n"))
        },
        args: TRAIN_CSV,
        says: "has no labels",
    },
    Case {
        name: "csv test images of another size",
        make: |d| {
            csv(d, &good_csv());
            let p = d.join("test.csv");
            std::fs::write(&p, "1,0,0,0,0,0,0,0,0,255\n").expect("write");
            p
        },
        args: &[
            "train",
            "--data",
            "{}/data.csv",
            "--test-data",
            "{}/test.csv",
            "--backend",
            "cpu",
            "--iterations",
            "1",
            "--out",
            "{}/m.st",
        ],
        says: "3x3",
    },
    // ---- image folders ----
    Case {
        name: "folder empty class",
        make: |d| {
            png(&d.join("data/0/a.png"), 28);
            std::fs::create_dir_all(d.join("data/3")).expect("mkdir");
            d.join("data/3")
        },
        args: TRAIN,
        says: "holds no images",
    },
    Case {
        name: "folder non-image file",
        make: |d| {
            png(&d.join("data/0/a.png"), 28);
            let p = d.join("data/1/notes.png");
            std::fs::create_dir_all(d.join("data/1")).expect("mkdir");
            std::fs::write(&p, "not a picture").expect("write");
            p
        },
        args: TRAIN,
        says: "not a decodable image",
    },
    Case {
        name: "folder unknown class name",
        make: |d| {
            png(&d.join("data/0/a.png"), 28);
            png(&d.join("data/cat/b.png"), 28);
            d.join("data/cat")
        },
        args: TRAIN,
        says: "not a class",
    },
    Case {
        name: "folder truncated png",
        make: |d| {
            let p = d.join("data/4/cut.png");
            png(&p, 28);
            let b = std::fs::read(&p).expect("read");
            std::fs::write(&p, &b[..b.len() / 2]).expect("write");
            p
        },
        args: TRAIN,
        says: "not a decodable image",
    },
    Case {
        name: "folder of loose files, forced",
        make: |d| {
            std::fs::create_dir_all(d.join("data")).expect("mkdir");
            std::fs::write(d.join("data/readme.txt"), "hi").expect("write");
            d.join("data")
        },
        args: &["train", "--data", "{}/data", "--format", "images", "--backend", "cpu", "--out", "{}/m.st"],
        says: "no class folders",
    },
    Case {
        name: "data that is not there",
        make: |d| d.join("missing"),
        args: &["train", "--data", "{}/missing", "--backend", "cpu"],
        says: "no such file or folder",
    },
    // ---- model files ----
    Case {
        name: "model that is text",
        make: |d| {
            let p = d.join("model.safetensors");
            std::fs::write(&p, "hello").expect("write");
            p
        },
        args: EVAL,
        says: "",
    },
    Case {
        name: "model with a wrong shape",
        make: |d| {
            let p = d.join("model.safetensors");
            model(&p, &[], &[("w1", vec![784, 3], f32s(784 * 3, 0.1)), ("w2", vec![4, 10], f32s(40, 0.1))]);
            p
        },
        args: EVAL,
        says: "shape [784, 3]",
    },
    Case {
        name: "model claiming huge layers",
        make: |d| {
            let p = d.join("model.safetensors");
            model(
                &p,
                &[("hidden", "4000000000")],
                &[("w1", vec![784, 4], f32s(784 * 4, 0.1)), ("w2", vec![4, 10], f32s(40, 0.1))],
            );
            p
        },
        args: EVAL,
        says: "but the metadata says [784, 4000000000]",
    },
    Case {
        name: "model lacking a tensor",
        make: |d| {
            let p = d.join("model.safetensors");
            model(&p, &[], &[("w1", vec![784, 4], f32s(784 * 4, 0.1))]);
            p
        },
        args: EVAL,
        says: "lacks tensor \"w2\"",
    },
    Case {
        name: "model with NaN weights",
        make: |d| {
            let p = d.join("model.safetensors");
            model(&p, &[], &[("w1", vec![784, 4], f32s(784 * 4, f32::NAN)), ("w2", vec![4, 10], f32s(40, 0.1))]);
            p
        },
        args: EVAL,
        says: "NaN",
    },
    Case {
        name: "model cut short",
        make: |d| {
            let p = d.join("model.safetensors");
            let b = std::fs::read("data/model.safetensors").expect("shipped model");
            std::fs::write(&p, &b[..b.len() / 3]).expect("write");
            p
        },
        args: EVAL,
        says: "",
    },
    Case {
        name: "ONNX model cut short",
        make: |d| {
            let p = d.join("model.onnx");
            let m = gpu_mnist::checkpoint::load(Path::new("data/model.safetensors")).expect("shipped model");
            let b = gpu_mnist::checkpoint::onnx::export(&m);
            std::fs::write(&p, &b[..b.len() / 2]).expect("write");
            p
        },
        args: &["eval", "--model", "{}/model.onnx"],
        says: "nor a whole ONNX model",
    },
    Case {
        name: "ONNX model that is not a perceptron",
        make: |d| {
            use gpu_mnist::checkpoint::onnx_proto as pb;
            use prost::Message;
            let p = d.join("model.onnx");
            let conv = pb::NodeProto {
                op_type: Some("Conv".into()),
                input: vec!["x".into(), "k".into()],
                output: vec!["y".into()],
                ..Default::default()
            };
            let x = pb::ValueInfoProto { name: Some("x".into()), ..Default::default() };
            let graph = pb::GraphProto { node: vec![conv], input: vec![x], ..Default::default() };
            let opset_import = vec![pb::OperatorSetIdProto { domain: Some(String::new()), version: Some(13) }];
            let model = pb::ModelProto { ir_version: Some(8), graph: Some(graph), opset_import, ..Default::default() };
            std::fs::write(&p, model.encode_to_vec()).expect("write");
            p
        },
        args: &["info", "{}/model.onnx"],
        says: "ONNX node 0 (Conv): not read here",
    },
    Case {
        name: "PyTorch state dict without --activation",
        make: |d| {
            let p = d.join("torch.safetensors");
            let t = [
                ("0.weight", Dtype::F32, vec![4, 784], f32s(4 * 784, 0.1)),
                ("2.weight", Dtype::F32, vec![10, 4], f32s(40, 0.1)),
            ];
            common::write_state_dict(&p, &t);
            p
        },
        args: &["eval", "--model", "{}/torch.safetensors"],
        says: "name it with --activation",
    },
    Case {
        name: "PyTorch layers that do not chain",
        make: |d| {
            let p = d.join("torch.safetensors");
            let t = [
                ("0.weight", Dtype::F32, vec![4, 784], f32s(4 * 784, 0.1)),
                ("2.weight", Dtype::F32, vec![10, 5], f32s(50, 0.1)),
            ];
            common::write_state_dict(&p, &t);
            p
        },
        args: &["export", "{}/torch.safetensors", "--activation", "relu", "--onnx", "{}/m.onnx"],
        says: "takes 5 inputs, but the layer below gives 4",
    },
    Case {
        name: "model for other images",
        make: |d| {
            let p = d.join("model.safetensors");
            std::fs::copy("data/model.safetensors", &p).expect("copy");
            csv(d, "1,0,0,0,0,0,0,0,0,255\n");
            p
        },
        args: &[
            "train",
            "--init-from",
            "{}/model.safetensors",
            "--data",
            "{}/data.csv",
            "--backend",
            "cpu",
            "--out",
            "{}/m.st",
        ],
        says: "784 inputs",
    },
    Case {
        name: "predict on a file that is not an image",
        make: |d| {
            let p = d.join("digit.png");
            std::fs::write(&p, "<html>").expect("write");
            p
        },
        args: &["predict", "{}/digit.png"],
        says: "",
    },
];

#[test]
fn every_malformed_input_gets_one_clear_line_and_exit_status_1() {
    assert!(CASES.len() >= 30, "the issue asks for at least 30 cases");
    for case in CASES {
        let dir = tempfile::tempdir().expect("temp dir");
        run(case, dir.path());
    }
}
