//! Tests of the IDX/MNIST loader: the real bundled data, then a table of malformed inputs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use gpu_mnist::data::{self, DataError};
use tempfile::TempDir;

// ---- a global allocator that records the largest single allocation made by each thread ----

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Run `f` and return its result with the largest single allocation this thread made meanwhile.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|c| c.set(0));
    let out = f();
    (out, LARGEST.with(|c| c.get()))
}

// ---- builders of IDX bytes ----

fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut v = header(0x803, &[n, rows, cols]);
    v.extend((0..n * rows * cols).map(|i| (i * 7 % 256) as u8));
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = header(0x801, &[labels.len() as u32]);
    v.extend_from_slice(labels);
    v
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
    out
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// Write a consistent split of `n` samples into `dir`.
fn write_split(dir: &Path, prefix: &str, n: u32, gz: bool, sep: char) {
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let ext = if gz { ".gz" } else { "" };
    let wrap = |b: Vec<u8>| if gz { gzip(&b) } else { b };
    let images_path = dir.join(format!("{prefix}-images{sep}idx3-ubyte{ext}"));
    let labels_path = dir.join(format!("{prefix}-labels{sep}idx1-ubyte{ext}"));
    std::fs::write(images_path, wrap(idx_images(n, 4, 3))).unwrap();
    std::fs::write(labels_path, wrap(idx_labels(&labels))).unwrap();
}

fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// Asserts the error's message is one line and contains every phrase.
fn assert_message(err: &DataError, phrases: &[&str]) {
    let msg = err.to_string();
    assert!(!msg.contains('\n') && !msg.contains('\r'), "not one line: {msg:?}");
    for p in phrases {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

// ---- the real data ----

#[test]
fn loads_bundled_mnist() {
    let start = std::time::Instant::now();
    let m = data::load_mnist(&mnist_dir()).unwrap();
    eprintln!("loaded MNIST in {:.3} s", start.elapsed().as_secs_f64());
    for (set, n) in [(&m.train, 60_000), (&m.test, 10_000)] {
        assert_eq!((set.n, set.rows, set.cols, set.d()), (n, 28, 28, 784));
        assert_eq!(set.pixels.len(), n * 784);
        assert_eq!(set.labels.len(), n);
        assert!(set.labels.iter().all(|&l| l <= 9));
        assert_eq!(set.image(n - 1).len(), 784);
    }
    assert_eq!(m.train.labels[0], 5);
    let zeros = m.train.pixels.iter().filter(|&&p| p == 0).count();
    assert!(zeros * 10 > m.train.pixels.len() * 7, "only {zeros} zero pixels");
    assert!(m.train.pixels.contains(&255), "no full-ink pixel");
    let mut per_class = [0usize; 10];
    for &l in &m.train.labels {
        per_class[l as usize] += 1;
    }
    assert!(per_class.iter().all(|&c| c > 5000), "class counts {per_class:?}");

    let mut small = m.train.clone();
    small.truncate(100);
    assert_eq!((small.n, small.pixels.len(), small.labels.len()), (100, 78_400, 100));
    assert_eq!(small.image(99), m.train.image(99));
    small.truncate(1_000);
    assert_eq!(small.n, 100);
}

#[test]
fn raw_dot_named_copy_loads_identically() {
    let tmp = TempDir::new().unwrap();
    for entry in std::fs::read_dir(mnist_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        let Some(stem) = name.strip_suffix(".gz") else {
            continue;
        };
        let raw = gunzip(&std::fs::read(&path).unwrap());
        let dotted = stem.replace("-idx", ".idx"); // train-images.idx3-ubyte
        std::fs::write(tmp.path().join(dotted), raw).unwrap();
    }
    let gz = data::load_mnist(&mnist_dir()).unwrap();
    let raw = data::load_mnist(tmp.path()).unwrap();
    assert_eq!(gz.train, raw.train);
    assert_eq!(gz.test, raw.test);
}

// ---- small synthetic splits ----

#[test]
fn raw_and_gzip_and_both_spellings_agree() {
    let mut loaded = Vec::new();
    for gz in [false, true] {
        for sep in ['-', '.'] {
            let tmp = TempDir::new().unwrap();
            write_split(tmp.path(), "train", 25, gz, sep);
            write_split(tmp.path(), "t10k", 7, gz, sep);
            let m = data::load_mnist(tmp.path()).unwrap();
            assert_eq!((m.train.n, m.test.n, m.train.rows, m.train.cols), (25, 7, 4, 3));
            assert_eq!(m.train.image(1), &idx_images(25, 4, 3)[16 + 12..16 + 24]);
            loaded.push(m);
        }
    }
    for m in &loaded[1..] {
        assert_eq!(m.train, loaded[0].train);
        assert_eq!(m.test, loaded[0].test);
    }
}

#[test]
fn missing_directory_and_files_give_the_data_hint() {
    let tmp = TempDir::new().unwrap();
    let gone = tmp.path().join("no-such-dir");
    let err = data::load_mnist(&gone).unwrap_err();
    assert_message(&err, &["no-such-dir", "not found", "--data PATH"]);

    write_split(tmp.path(), "train", 5, true, '-'); // no t10k files
    let err = data::load_mnist(tmp.path()).unwrap_err();
    assert_message(&err, &["t10k-images-idx3-ubyte", "not found", "--data PATH"]);

    let err = data::read_idx_labels(&tmp.path().join("absent-labels")).unwrap_err();
    assert_message(&err, &["absent-labels", "not found", "--data PATH"]);
}

#[test]
fn count_mismatch_names_both_files() {
    let tmp = TempDir::new().unwrap();
    write_split(tmp.path(), "train", 5, false, '-');
    let labels = idx_labels(&[1, 2, 3, 4]);
    std::fs::write(tmp.path().join("train-labels-idx1-ubyte"), labels).unwrap();
    let err = data::load_split(tmp.path(), "train").unwrap_err();
    let phrases = ["train-images-idx3-ubyte", "5 images", "train-labels-idx1-ubyte", "4 labels"];
    assert_message(&err, &phrases);
}

#[test]
fn splits_of_different_image_sizes_are_refused() {
    let tmp = TempDir::new().unwrap();
    write_split(tmp.path(), "train", 5, false, '-');
    write_split(tmp.path(), "t10k", 5, false, '-');
    std::fs::write(tmp.path().join("t10k-images-idx3-ubyte"), idx_images(5, 3, 4)).unwrap();
    let err = data::load_mnist(tmp.path()).unwrap_err();
    assert_message(&err, &["t10k-images-idx3-ubyte", "3x4", "4x3"]);
}

// ---- the table of malformed files ----

enum Kind {
    Images,
    Labels,
}

#[test]
fn malformed_files_give_one_line_errors_naming_file_and_reason() {
    use Kind::*;
    let good_images = idx_images(3, 4, 3);
    let good_gz = gzip(&good_images);
    let mut bad_crc = good_gz.clone();
    let at = bad_crc.len() - 8; // first CRC byte of the gzip trailer
    bad_crc[at] ^= 0xff;
    let mut garbage_gz = good_gz[..10].to_vec(); // a valid gzip header, then noise
    garbage_gz.extend((0..200u32).map(|i| (i * 37 + 11) as u8));
    let truncated = cat(&header(0x803, &[60_000, 28, 28]), &[0u8; 1000]);
    let huge = cat(&header(0x803, &[4_000_000_000, 28, 28]), &[0u8; 84]);
    let wrong_type = cat(&header(0x0d03, &[3, 4, 3]), &[0u8; 36]);
    let wrong_ndims = cat(&header(0x802, &[3, 12]), &[0u8; 36]);
    let f = |s: &str| s.to_string();

    #[rustfmt::skip]
    let cases: Vec<(&str, Kind, Vec<u8>, Vec<String>)> = vec![
        ("empty", Images, vec![], vec![f("empty file")]),
        ("empty-gz", Labels, gzip(&[]), vec![f("empty file")]),
        ("three-bytes", Images, vec![0, 0, 8], vec![f("truncated header: only 3 of the 16")]),
        ("short-dims", Images, good_images[..10].to_vec(), vec![f("truncated header: only 10 of the 16 header bytes")]),
        ("short-dims-gz", Images, gzip(&good_images[..10]), vec![f("truncated header")]),
        ("bad-magic", Images, cat(b"PK\x03\x04", &good_images[4..]), vec![f("bad magic 0x504b0304"), f("0x00000803")]),
        ("labels-as-images", Images, idx_labels(&[1, 2, 3]), vec![f("is a label file"), f("expected images")]),
        ("images-as-labels", Labels, gzip(&good_images), vec![f("is an image file"), f("expected labels")]),
        ("wrong-type", Images, wrong_type, vec![f("data type 0x0d (float)"), f("expected 0x08")]),
        ("wrong-ndims", Images, wrong_ndims, vec![f("has 2 dimensions"), f("expected 3")]),
        ("zero-rows", Images, header(0x803, &[3, 0, 28]), vec![f("zero-sized images"), f("3 images of 0x28")]),
        ("zero-count", Labels, header(0x801, &[0]), vec![f("0 labels"), f("no samples")]),
        ("huge-count", Images, huge.clone(), vec![f("4000000000 images of 28x28"), f("limit")]),
        ("huge-count-gz", Images, gzip(&huge), vec![f("4000000000 images of 28x28"), f("limit")]),
        ("truncated-data", Images, truncated.clone(),
            vec![f("header says 60000 images of 28x28 (47040000 bytes) but only 1000 bytes follow")]),
        ("truncated-data-gz", Images, gzip(&truncated), vec![f("truncated data"), f("only 1000 bytes follow")]),
        ("truncated-labels", Labels, idx_labels(&[1, 2, 3])[..10].to_vec(), vec![f("3 labels (3 bytes) but only 2 bytes follow")]),
        ("trailing", Images, cat(&good_images, &[1, 2, 3]), vec![f("3 trailing bytes after the data"), f("36 bytes")]),
        ("trailing-gz", Images, gzip(&cat(&good_images, &[9])), vec![f("trailing bytes"), f("more follow")]),
        ("garbage-gz", Images, garbage_gz, vec![f("corrupt or truncated gzip")]),
        ("bad-crc-gz", Images, bad_crc, vec![f("corrupt or truncated gzip")]),
        ("cut-gz", Images, good_gz[..good_gz.len() / 2].to_vec(), vec![f("corrupt or truncated gzip")]),
        ("label-10", Labels, idx_labels(&[1, 2, 3, 10, 4]), vec![f("index 3 is 10"), f("0..=9")]),
        ("label-255-gz", Labels, gzip(&idx_labels(&[255])), vec![f("index 0 is 255")]),
    ];

    let tmp = TempDir::new().unwrap();
    for (name, kind, bytes, phrases) in cases {
        let file = format!("{name}.idx");
        let path = tmp.path().join(&file);
        std::fs::write(&path, &bytes).unwrap();
        let (from_file, from_memory) = match kind {
            Images => (data::read_idx_images(&path).map(|_| ()), data::parse_idx_images(&bytes, &path).map(|_| ())),
            Labels => (data::read_idx_labels(&path).map(|_| ()), data::parse_idx_labels(&bytes, &path).map(|_| ())),
        };
        let err = from_file.expect_err(name);
        eprintln!("{name:>20}: {err}");
        let mut all: Vec<&str> = phrases.iter().map(String::as_str).collect();
        all.push(&file);
        assert_message(&err, &all);
        assert_eq!(err.to_string(), from_memory.expect_err(name).to_string());
    }
}

// ---- headers that lie about their size must not drive allocation ----

#[test]
fn lying_headers_and_gzip_bombs_allocate_only_what_is_there() {
    let name = Path::new("liar.gz");
    // 4,000,000 images of 28x28 is 3.1 GB, under the limit, but only 100 bytes follow.
    let liar = cat(&header(0x803, &[4_000_000, 28, 28]), &[7u8; 100]);
    for bytes in [liar.clone(), gzip(&liar)] {
        let (res, largest) = largest_allocation(|| data::parse_idx_images(&bytes, name));
        assert_message(&res.unwrap_err(), &["liar.gz", "only 100 bytes follow"]);
        assert!(largest < 1 << 20, "allocated {largest} bytes");
    }
    // A 50 MB run of zeros (about 50 kB gzipped) behind a header claiming 10 tiny images.
    let bomb = gzip(&cat(&header(0x803, &[10, 28, 28]), &vec![0u8; 50 << 20]));
    assert!(bomb.len() < 1 << 20);
    let (res, largest) = largest_allocation(|| data::parse_idx_images(&bomb, name));
    assert_message(&res.unwrap_err(), &["liar.gz", "trailing bytes"]);
    assert!(largest < 1 << 20, "allocated {largest} bytes");
}
