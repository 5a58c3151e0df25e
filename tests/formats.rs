//! Every data format trains from the command line: CSV (pjreddie's and Kaggle's layouts, a folder
//! or single files with --test-data), folders of images (grey and colour, any size), and
//! Fashion-MNIST from Debian's package. Each is written from a slice of the real MNIST, so the
//! runs must learn as they do from the IDX files.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use common::{mnist, subset};
use gpu_mnist::data::Dataset;

fn gpu_mnist(args: &[&str], dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-mnist"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    if args.first() == Some(&"train") && !args.contains(&"--out") {
        cmd.arg("--out").arg(dir.join("model.safetensors"));
    }
    cmd.output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Trains 6 CPU iterations on `--data` plus `extra`, and returns what it printed.
fn train(data: &Path, extra: &[&str], scratch: &Path) -> String {
    let data = data.to_str().expect("a UTF-8 path");
    let args = [&["train", "--data", data, "--iterations", "6", "--backend", "cpu"][..], extra].concat();
    let o = gpu_mnist(&args, scratch);
    let out = text(&o);
    assert!(o.status.success(), "{args:?}: exit {:?}\n{out}", o.status);
    out
}

/// The accuracy in percent that follows `what` in the final line.
fn final_accuracy(out: &str, what: &str) -> f64 {
    let line = out.lines().find(|l| l.starts_with("final:")).unwrap_or_else(|| panic!("no final: line\n{out}"));
    let at = line.find(what).unwrap_or_else(|| panic!("no {what} in {line}")) + what.len();
    line[at..].split('%').next().and_then(|v| v.trim().parse().ok()).expect("a percentage")
}

fn csv(set: &Dataset, header: Option<&str>, labels: bool) -> String {
    let mut s = String::new();
    if let Some(h) = header {
        s += h;
        s += "\n";
    }
    for i in 0..set.n {
        if labels {
            let _ = write!(s, "{},", set.labels[i]);
        }
        let row: Vec<String> = set.image(i).iter().map(|p| p.to_string()).collect();
        s += &row.join(",");
        s += "\r\n";
    }
    s
}

fn kaggle_header(labels: bool) -> String {
    let pixels: Vec<String> = (0..784).map(|j| format!("pixel{j}")).collect();
    if labels { format!("label,{}", pixels.join(",")) } else { pixels.join(",") }
}

#[test]
fn csv_in_pjreddies_layout_trains_like_the_idx_files() {
    let (m, tmp) = (mnist(), tempfile::tempdir().expect("temp dir"));
    let (train_set, test_set) = (subset(&m.train, 1000), subset(&m.test, 300));
    std::fs::write(tmp.path().join("mnist_train.csv"), csv(&train_set, None, true)).expect("write");
    std::fs::write(tmp.path().join("mnist_test.csv"), csv(&test_set, None, true)).expect("write");
    let out = train(tmp.path(), &[], tmp.path());
    assert!(
        out.contains("MNIST: 1000 training and 300 test images of 28x28") && out.contains("(CSV, read in"),
        "{out}"
    );
    // The same images and order as the IDX run: the same model, so the same accuracy.
    let idx = train(Path::new("data/mnist"), &["--samples", "1000", "--test-samples", "300"], tmp.path());
    assert_eq!(final_accuracy(&out, "test accuracy"), final_accuracy(&idx, "test accuracy"), "{out}\n{idx}");
    // eval reads one CSV file as the set to evaluate.
    let (model, test_csv) = (tmp.path().join("model.safetensors"), tmp.path().join("mnist_test.csv"));
    let o = gpu_mnist(
        &["eval", "--model", model.to_str().expect("UTF-8"), "--data", test_csv.to_str().expect("UTF-8")],
        tmp.path(),
    );
    let out = text(&o);
    assert!(o.status.success() && out.contains("test set: 300 images"), "{out}");
}

#[test]
fn kaggle_csv_with_an_unlabelled_test_file_trains_on_a_validation_split() {
    let (m, tmp) = (mnist(), tempfile::tempdir().expect("temp dir"));
    let train_csv = csv(&subset(&m.train, 1000), Some(&kaggle_header(true)), true);
    std::fs::write(tmp.path().join("train.csv"), train_csv).expect("write");
    std::fs::write(tmp.path().join("test.csv"), csv(&subset(&m.test, 50), Some(&kaggle_header(false)), false))
        .expect("write");
    let out = train(tmp.path(), &["--val-split", "0.2", "--eval-every", "3"], tmp.path());
    assert!(out.contains("test.csv has no labels"), "{out}");
    assert!(out.contains("MNIST: 800 training and 200 validation images") && out.contains("no test set"), "{out}");
    assert!(final_accuracy(&out, "validation accuracy") > 40.0, "{out}");
}

#[test]
fn a_single_csv_file_with_a_test_file_beside_it() {
    let (m, tmp) = (mnist(), tempfile::tempdir().expect("temp dir"));
    let (train_path, test_path) = (tmp.path().join("digits.csv"), tmp.path().join("check.csv"));
    std::fs::write(&train_path, csv(&subset(&m.train, 1000), Some(&kaggle_header(true)), true)).expect("write");
    std::fs::write(&test_path, csv(&subset(&m.test, 300), None, true)).expect("write");
    let out = train(&train_path, &["--test-data", test_path.to_str().expect("UTF-8")], tmp.path());
    assert!(out.contains("1000 training and 300 test images"), "{out}");
    assert!(final_accuracy(&out, "test accuracy") > 40.0, "{out}");
}

/// Writes `set` as `dir/<label>/<index>.png`; every third image in colour at 56x56 and dark on
/// light, to exercise conversion, resizing and inversion.
fn write_folders(set: &Dataset, dir: &Path) {
    for i in 0..set.n {
        let class = dir.join(set.labels[i].to_string());
        std::fs::create_dir_all(&class).expect("class folder");
        let grey = image::GrayImage::from_raw(28, 28, set.image(i).to_vec()).expect("28x28");
        let path = class.join(format!("{i:05}.png"));
        if i % 3 == 0 {
            let big = image::imageops::resize(&grey, 56, 56, image::imageops::FilterType::Triangle);
            let rgb = image::RgbImage::from_fn(56, 56, |x, y| {
                let v = 255 - big.get_pixel(x, y)[0];
                image::Rgb([v, v, v.saturating_sub(10)])
            });
            rgb.save(&path).expect("write PNG");
        } else {
            grey.save(&path).expect("write PNG");
        }
    }
}

#[test]
fn folders_of_images_in_colour_and_other_sizes_train() {
    let (m, tmp) = (mnist(), tempfile::tempdir().expect("temp dir"));
    write_folders(&subset(&m.train, 600), &tmp.path().join("train"));
    write_folders(&subset(&m.test, 150), &tmp.path().join("test"));
    let out = train(tmp.path(), &[], tmp.path());
    assert!(
        out.contains("MNIST: 600 training and 150 test images of 28x28") && out.contains("(image folders, read in"),
        "{out}"
    );
    assert!(out.contains("200 of 600 images resized to 28x28"), "{out}");
    assert!(out.contains("200 of 600 images inverted"), "{out}");
    assert!(out.contains("images converted from colour to grey"), "{out}");
    assert!(final_accuracy(&out, "test accuracy") > 40.0, "{out}");
}

#[test]
#[ignore = "needs Debian's dataset-fashion-mnist package; run with --include-ignored"]
fn fashion_mnist_trains_and_reports_class_names() {
    let dir = Path::new(gpu_mnist::data::source::FASHION_SYSTEM_DIR);
    assert!(dir.is_dir(), "this test needs {} (apt-get install dataset-fashion-mnist)", dir.display());
    let tmp = tempfile::tempdir().expect("temp dir");
    let model = tmp.path().join("fashion.safetensors");
    let m = model.to_str().expect("UTF-8");
    let args = [
        "train",
        "--dataset",
        "fashion",
        "--iterations",
        "10",
        "--lr",
        "0.2",
        "--samples",
        "2000",
        "--backend",
        "cpu",
        "--out",
        m,
    ];
    let o = gpu_mnist(&args, tmp.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Fashion-MNIST: 2000 training and 10000 test images of 28x28"), "{out}");
    assert!(final_accuracy(&out, "test accuracy") > 40.0, "{out}");
    let saved = gpu_mnist::checkpoint::load(&model).expect("the model loads");
    assert_eq!(saved.provenance.dataset, "fashion-mnist");
    // eval reads the data set from the model and names the classes.
    let o = gpu_mnist(&["eval", "--model", m], tmp.path());
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for name in ["T-shirt/top", "Trouser", "Ankle boot", "0 T-shirt/top, 1 Trouser"] {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
}
