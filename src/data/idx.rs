//! The IDX format, raw or gzipped (MNIST's own files).
//!
//! An IDX file is big-endian: a 4-byte magic `00 00 <type> <ndims>` (type 0x08 = unsigned byte),
//! then `ndims` u32 sizes, then the data. Images are `00 00 08 03` (2051) with sizes
//! `[count, rows, cols]`; labels are `00 00 08 01` (2049) with sizes `[count]`.
//!
//! Files are untrusted input: every defect gives a one-line [`DataError`] naming the file, and
//! nothing is allocated from a header's claims. The payload size is computed with checked
//! arithmetic, capped at [`MAX_PAYLOAD`] bytes, and read through `Read::take(expected + 1)` into a
//! `Vec` that grows only as real bytes arrive, so a lying header or a gzip bomb costs at most what
//! the file really holds plus one byte. Gzip or raw is decided by content (magic `1f 8b`).

use std::cmp::Ordering;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::bufread::MultiGzDecoder;

use super::dataset::{Dataset, Mnist};
use super::error::{DataError, malformed, not_found, one_line};

/// Largest payload (decompressed data after the header) accepted, in bytes: 4 GiB.
pub const MAX_PAYLOAD: u64 = 1 << 32;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Load the four files from `dir`. Each file may be named with or without `.gz`, and with the
/// common variant `train-images.idx3-ubyte` (dot instead of dash before idx). Gzip vs raw is decided
/// by the content (gzip magic 1f 8b), not the name.
pub fn load_mnist(dir: &Path) -> Result<Mnist, DataError> {
    let (train, _) = load_split_from(dir, "train")?;
    let (test, test_images) = load_split_from(dir, "t10k")?;
    if (test.rows, test.cols) != (train.rows, train.cols) {
        let (r, c) = (train.rows, train.cols);
        let m = format!("images are {}x{} but training images are {r}x{c}", test.rows, test.cols);
        return Err(malformed(&test_images, m));
    }
    Ok(Mnist { train, test })
}

/// One split by prefix ("train" or "t10k"): images + labels, checked to agree in count.
pub fn load_split(dir: &Path, prefix: &str) -> Result<Dataset, DataError> {
    load_split_from(dir, prefix).map(|(set, _)| set)
}

/// [`load_split`], also returning the images file's path for later messages.
fn load_split_from(dir: &Path, prefix: &str) -> Result<(Dataset, PathBuf), DataError> {
    if !dir.is_dir() {
        return Err(not_found(dir, "data directory not found"));
    }
    let images_path = find_file(dir, prefix, "images", "idx3")?;
    let labels_path = find_file(dir, prefix, "labels", "idx1")?;
    let (n, rows, cols, pixels) = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch { images_path, images: n, labels_path, labels: labels.len() });
    }
    let set = Dataset { n, rows, cols, pixels, labels };
    Ok((set, images_path))
}

/// The first of `P-K-I-ubyte`, `P-K-I-ubyte.gz`, `P-K.I-ubyte`, `P-K.I-ubyte.gz` that is a file.
fn find_file(dir: &Path, prefix: &str, kind: &str, idx: &str) -> Result<PathBuf, DataError> {
    for sep in ['-', '.'] {
        for ext in ["", ".gz"] {
            let path = dir.join(format!("{prefix}-{kind}{sep}{idx}-ubyte{ext}"));
            if path.is_file() {
                return Ok(path);
            }
        }
    }
    let what = format!("not found (nor .gz, nor {prefix}-{kind}.{idx}-ubyte[.gz])");
    Err(not_found(&dir.join(format!("{prefix}-{kind}-{idx}-ubyte")), &what))
}

/// Parse one IDX image file -> (count, rows, cols, pixels)
pub fn read_idx_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    parse_idx_images(&read_file(path)?, path)
}

/// Parse one IDX label file -> labels (each checked <= 9)
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    parse_idx_labels(&read_file(path)?, path)
}

/// Same two parsers over bytes already in memory (raw or gzip by content); `name` is used in messages.
pub fn parse_idx_images(bytes: &[u8], name: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let (dims, pixels) = parse_idx(bytes, name, IMAGES_MAGIC)?;
    Ok((dims[0], dims[1], dims[2], pixels))
}

/// See [`parse_idx_images`]; every label is checked to be a digit 0..=9.
pub fn parse_idx_labels(bytes: &[u8], name: &Path) -> Result<Vec<u8>, DataError> {
    let (_, labels) = parse_idx(bytes, name, LABELS_MAGIC)?;
    if let Some((index, &value)) = labels.iter().enumerate().find(|&(_, &v)| v > 9) {
        let path = name.to_path_buf();
        return Err(DataError::BadLabel { path, index, value });
    }
    Ok(labels)
}

/// Read a whole file, refusing one larger than any acceptable IDX file before reading it.
fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => not_found(path, "file not found"),
        _ => DataError::Io { path: path.to_path_buf(), reason: one_line(&e) },
    };
    let len = fs::metadata(path).map_err(io_err)?.len();
    if len > MAX_PAYLOAD + 1024 {
        let limit = format!("file is {len} bytes, larger than the {MAX_PAYLOAD}-byte limit");
        return Err(malformed(path, limit));
    }
    fs::read(path).map_err(io_err)
}

/// Parse an IDX file of unsigned bytes whose magic must be `want`; returns (sizes, data).
fn parse_idx(bytes: &[u8], name: &Path, want: u32) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut r = MultiGzDecoder::new(bytes);
        let h = parse_header(&mut r, name, want)?;
        // Grows only as decompressed bytes arrive, to at most `size + 1`.
        let mut data = Vec::new();
        let read = r.take(h.size + 1).read_to_end(&mut data);
        read.map_err(|e| gzip_error(name, e))?;
        check_length(data.len() as u64, &h, false, name)?;
        Ok((h.dims, data))
    } else {
        let mut r = bytes;
        let h = parse_header(&mut r, name, want)?;
        // `r` is now exactly the bytes after the header: check them before copying.
        check_length(r.len() as u64, &h, true, name)?;
        Ok((h.dims, r.to_vec()))
    }
}

/// Read and check the header, leaving `r` at the first payload byte.
/// Only a gzip stream can fail to read, so read errors are reported as gzip errors.
fn parse_header(r: &mut impl Read, name: &Path, want: u32) -> Result<Header, DataError> {
    let bad = |reason: String| malformed(name, reason);
    let (what, ndims, shape) = match want {
        IMAGES_MAGIC => ("images", 3, "count, rows, cols"),
        _ => ("labels", 1, "count"),
    };
    let header_len = 4 + 4 * ndims;
    let mut head = Vec::with_capacity(header_len);
    let read = r.take(header_len as u64).read_to_end(&mut head);
    read.map_err(|e| gzip_error(name, e))?;
    let truncated = |got| bad(format!("truncated header: only {got} of the {header_len} header bytes"));
    match head.len() {
        0 => return Err(bad("empty file (0 bytes of data)".into())),
        got @ 1..4 => return Err(truncated(got)),
        _ => {}
    }
    let found = be_u32(&head);
    if head[..2] != [0, 0] {
        let m = format!("not an IDX file: bad magic 0x{found:08x}, expected 0x{want:08x} ({what})");
        return Err(bad(m));
    }
    if head[2] != 0x08 {
        let t = type_name(head[2]);
        return Err(bad(format!("data type 0x{:02x} ({t}), expected 0x08 (unsigned byte)", head[2])));
    }
    if found != want {
        return Err(bad(match found {
            IMAGES_MAGIC => format!("is an image file (magic 0x{found:08x}), expected labels"),
            LABELS_MAGIC => format!("is a label file (magic 0x{found:08x}), expected images"),
            _ => format!("has {} dimensions, expected {ndims} ({shape}) for {what}", head[3]),
        }));
    }
    if head.len() < header_len {
        return Err(truncated(head.len()));
    }
    // A u32 always fits a usize on the 32- and 64-bit targets this crate builds for.
    let dims: Vec<usize> = head[4..].chunks_exact(4).map(|c| be_u32(c) as usize).collect();
    // Three u32 factors cannot overflow u128, but check anyway.
    let size = dims.iter().try_fold(1u128, |acc, &x| acc.checked_mul(x as u128));
    let size = size.unwrap_or(u128::MAX);
    let said = match dims[..] {
        [n, rows, cols] => format!("header says {n} images of {rows}x{cols} ({size} bytes)"),
        _ => format!("header says {} labels ({size} bytes)", dims[0]),
    };
    if dims.len() == 3 && (dims[1] == 0 || dims[2] == 0) {
        return Err(bad(format!("zero-sized images: {said}")));
    } else if dims[0] == 0 {
        return Err(bad(format!("{said}: the file holds no samples")));
    } else if size > u128::from(MAX_PAYLOAD) {
        return Err(bad(format!("{said}, more than the {MAX_PAYLOAD}-byte limit")));
    }
    Ok(Header { dims, size: size as u64, said })
}

/// A checked IDX header: its sizes, the payload length they imply, and a description of both.
struct Header {
    dims: Vec<usize>,
    size: u64,
    said: String,
}

/// Compare the payload length that follows the header with the header's size.
/// `exact`: `follow` is the true remaining length (raw input), not capped at `size + 1`.
fn check_length(follow: u64, h: &Header, exact: bool, name: &Path) -> Result<(), DataError> {
    let (size, said) = (h.size, &h.said);
    let m = match follow.cmp(&size) {
        Ordering::Equal => return Ok(()),
        Ordering::Less => format!("truncated data: {said} but only {follow} bytes follow"),
        Ordering::Greater if exact => {
            format!("{} trailing bytes after the data: {said}", follow - size)
        }
        Ordering::Greater => format!("trailing bytes after the data: {said} but more follow"),
    };
    Err(malformed(name, m))
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The IDX name of a data type byte.
fn type_name(t: u8) -> &'static str {
    match t {
        0x09 => "signed byte",
        0x0b => "short",
        0x0c => "int",
        0x0d => "float",
        0x0e => "double",
        _ => "unknown type",
    }
}

fn gzip_error(path: &Path, e: io::Error) -> DataError {
    DataError::Gzip { path: path.to_path_buf(), reason: one_line(&e) }
}
