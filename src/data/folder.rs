//! A folder of image files, one sub-folder per class: `dir/0/*.png`, `dir/1/*.jpg`, ...
//!
//! Every image is made like MNIST's: 8-bit grey, `side x side` (resized with a triangle filter,
//! aspect ignored), bright ink on a dark background (an image whose border is light on average is
//! inverted). Samples are ordered by class, then by file name, so the order the file system lists
//! them in never changes the result.
//!
//! Files are untrusted input: each is decoded under [`ImageReader::limits`] (at most
//! [`MAX_IMAGE_SIDE`] pixels a side and [`MAX_DECODE_ALLOC`] bytes), so a small file claiming a
//! huge image is refused rather than allocated, and every defect is a one-line [`DataError`] naming
//! the file or folder.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use image::imageops::{self, FilterType};
use image::{ColorType, DynamicImage, GrayImage, ImageReader, Limits};

use super::dataset::Dataset;
use super::error::{DataError, malformed, one_line};

/// Largest width or height of an image file accepted, and of `side`.
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// Most bytes a decoder may allocate for one image: 256 MiB.
pub const MAX_DECODE_ALLOC: u64 = 256 << 20;

/// What loading a folder of images changed, for a note to the user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FolderNotes {
    /// Images that were not `side x side` and were resized.
    pub resized: usize,
    /// Images in colour (not grey, with or without alpha), made grey.
    pub colour: usize,
    /// Images of dark ink on a light background, inverted.
    pub inverted: usize,
    /// Entries left out: hidden files and folders, files outside a class folder, folders inside one.
    pub skipped: usize,
}

/// Reads `dir/<class>/*` where class folders are named `0`..`classes-1` (decimal). Every image is
/// converted to 8-bit grey, resized to `side`x`side` if it is not (Triangle filter, aspect ignored), and
/// inverted when it is dark-on-light (mean of its border pixels > 127), so ink is bright like MNIST.
/// Samples are ordered by class, then by file name (sorted), so directory order never changes results.
///
/// A class may have no folder, but a class folder must hold at least one image. `classes` must be
/// 1..=10 and `side` 1..=[`MAX_IMAGE_SIDE`].
pub fn read_image_folder(dir: &Path, classes: usize, side: usize) -> Result<(Dataset, FolderNotes), DataError> {
    if !(1..=10).contains(&classes) || !(1..=MAX_IMAGE_SIDE as usize).contains(&side) {
        let m =
            format!("cannot load {classes} classes at {side}x{side}: need 1..=10 classes, 1..={MAX_IMAGE_SIDE} a side");
        return Err(malformed(dir, m));
    }
    let mut notes = FolderNotes::default();
    let mut set = Dataset { n: 0, rows: side, cols: side, pixels: Vec::new(), labels: Vec::new() };
    for (class, folder) in class_folders(dir, classes, &mut notes)? {
        let files = image_files(&folder, &mut notes)?;
        if files.is_empty() {
            return Err(malformed(&folder, format!("class folder {class} holds no images")));
        }
        for file in files {
            let grey = load_image(&file, side as u32, &mut notes)?;
            set.pixels.extend_from_slice(grey.as_raw());
            set.labels.push(class);
            set.n += 1;
        }
    }
    Ok((set, notes))
}

/// Whether `dir` holds at least one sub-folder named like a class (`0`..`9`), for format detection.
pub fn looks_like_image_folder(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        name.to_str().is_some_and(|s| class_of(s, 10).is_some()) && e.path().is_dir()
    })
}

/// The class folders of `dir`, sorted by class; counts what is skipped in `notes`.
fn class_folders(dir: &Path, classes: usize, notes: &mut FolderNotes) -> Result<Vec<(u8, PathBuf)>, DataError> {
    let expected = format!("expected sub-folders named 0..{}", classes - 1);
    if !dir.exists() {
        // Not `DataError::NotFound`: its message ends with a hint about the IDX files.
        return Err(DataError::Io { path: dir.to_path_buf(), reason: "no such folder".into() });
    } else if !dir.is_dir() {
        return Err(malformed(dir, format!("not a folder; {expected}, one per class")));
    }
    let mut found = Vec::new();
    for path in list(dir, notes)? {
        if !path.is_dir() {
            notes.skipped += 1;
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str());
        let Some(class) = name.and_then(|n| class_of(n, classes)) else {
            return Err(malformed(&path, format!("sub-folder is not a class: {expected}")));
        };
        found.push((class, path));
    }
    if found.is_empty() {
        return Err(malformed(dir, format!("no class folders: {expected}, one per class")));
    }
    found.sort();
    Ok(found)
}

/// The files of a class folder, sorted by name; counts what is skipped in `notes`.
fn image_files(folder: &Path, notes: &mut FolderNotes) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for path in list(folder, notes)? {
        if path.is_file() {
            files.push(path);
        } else {
            notes.skipped += 1;
        }
    }
    files.sort();
    Ok(files)
}

/// The entries of `dir`, unsorted, but for hidden ones (names starting with '.'), counted as skipped.
fn list(dir: &Path, notes: &mut FolderNotes) -> Result<Vec<PathBuf>, DataError> {
    let io_err = |e: io::Error| DataError::Io { path: dir.to_path_buf(), reason: one_line(&e) };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            notes.skipped += 1;
        } else {
            paths.push(entry.path());
        }
    }
    Ok(paths)
}

/// The class a folder name stands for: a decimal number below `classes`, written plainly.
fn class_of(name: &str, classes: usize) -> Option<u8> {
    let class: u8 = name.parse().ok()?;
    (usize::from(class) < classes && class.to_string() == name).then_some(class)
}

/// Decodes an image file's bytes (PNG, JPEG, GIF, BMP, TIFF, WebP) under the limits, or says
/// why not in one line.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, String> {
    let one_line = |e: &dyn std::fmt::Display| e.to_string().replace(['\n', '\r'], " ");
    let mut reader = ImageReader::new(io::Cursor::new(bytes)).with_guessed_format().map_err(|e| one_line(&e))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    reader.decode().map_err(|e| one_line(&e))
}

/// Decode one image under the limits and make it like MNIST's, counting what changed in `notes`.
fn load_image(path: &Path, side: u32, notes: &mut FolderNotes) -> Result<GrayImage, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::Io { path: path.to_path_buf(), reason: one_line(&e) })?;
    let image = decode(&bytes).map_err(|reason| malformed(path, format!("not a decodable image: {reason}")))?;
    if !matches!(image.color(), ColorType::L8 | ColorType::La8 | ColorType::L16 | ColorType::La16) {
        notes.colour += 1;
    }
    let mut grey = image.to_luma8();
    if grey.dimensions() != (side, side) {
        grey = imageops::resize(&grey, side, side, FilterType::Triangle);
        notes.resized += 1;
    }
    if light_border(&grey) {
        imageops::invert(&mut grey);
        notes.inverted += 1;
    }
    Ok(grey)
}

/// Whether the mean of the pixels on the image's border is above 127.
fn light_border(grey: &GrayImage) -> bool {
    let (w, h) = grey.dimensions();
    let on_border = |x: u32, y: u32| x == 0 || y == 0 || x + 1 == w || y + 1 == h;
    let (mut sum, mut count) = (0u64, 0u64);
    for (x, y, p) in grey.enumerate_pixels() {
        if on_border(x, y) {
            sum += u64::from(p.0[0]);
            count += 1;
        }
    }
    sum > 127 * count
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbImage};

    /// A `side x side` grey digit-like image: a black border, varied pixels inside.
    fn digit(i: usize, side: u32) -> GrayImage {
        GrayImage::from_fn(side, side, |x, y| {
            let border = x == 0 || y == 0 || x + 1 == side || y + 1 == side;
            Luma([if border { 0 } else { ((i as u32 * 53 + x * 7 + y * 31) % 256) as u8 }])
        })
    }

    fn load(dir: &Path) -> Result<(Dataset, FolderNotes), DataError> {
        read_image_folder(dir, 10, 28)
    }

    fn err(dir: &Path, classes: usize) -> String {
        let msg = read_image_folder(dir, classes, 28).unwrap_err().to_string();
        assert!(!msg.contains('\n'), "{msg}");
        msg
    }

    #[test]
    fn a_folder_parses_to_the_same_data_in_class_then_name_order() {
        for side in [28, 3] {
            let dir = tempfile::tempdir().unwrap();
            // Created out of order: class 2 first, names descending within a class.
            let files = [(2, "b.png"), (2, "a.png"), (0, "z.png"), (0, "m.tiff"), (0, "10.png")];
            for (i, (class, name)) in files.iter().enumerate() {
                let folder = dir.path().join(class.to_string());
                fs::create_dir_all(&folder).unwrap();
                digit(i, side).save(folder.join(name)).unwrap();
            }
            let (set, notes) = read_image_folder(dir.path(), 10, side as usize).unwrap();
            // Sorted: 0/10.png, 0/m.tiff, 0/z.png, 2/a.png, 2/b.png.
            let order = [4, 3, 2, 1, 0];
            let pixels: Vec<u8> = order.iter().flat_map(|&i| digit(i, side).into_raw()).collect();
            let side = side as usize;
            let want = Dataset { n: 5, rows: side, cols: side, pixels, labels: vec![0, 0, 0, 2, 2] };
            assert_eq!(notes, FolderNotes::default());
            assert!(set == want, "side {side}: {:?} vs {:?}", set.labels, want.labels);
        }
    }

    #[test]
    fn resizing_colour_inversion_and_skipping_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("1");
        fs::create_dir(&one).unwrap();
        // Colour, 56x56, black ink on white: resized, colour and inverted.
        RgbImage::from_fn(56, 56, |x, _| Rgb(if (20..36).contains(&x) { [0, 0, 0] } else { [255, 255, 255] }))
            .save(one.join("a.png"))
            .unwrap();
        // Grey, the right size, dark on light: only inverted.
        let light = GrayImage::from_fn(28, 28, |x, _| Luma([if x == 14 { 10 } else { 200 }]));
        light.save(one.join("b.png")).unwrap();
        // Grey 16-bit, smaller: only resized.
        image::ImageBuffer::<Luma<u16>, _>::from_pixel(14, 14, Luma([0u16])).save(one.join("c.png")).unwrap();
        // Skipped: a hidden file, a folder inside a class folder, a file and a hidden folder at the top.
        fs::write(one.join(".DS_Store"), b"junk").unwrap();
        fs::create_dir(one.join("more")).unwrap();
        fs::write(dir.path().join("README.txt"), b"digits").unwrap();
        fs::create_dir(dir.path().join(".git")).unwrap();
        let (set, notes) = load(dir.path()).unwrap();
        assert_eq!(notes, FolderNotes { resized: 2, colour: 1, inverted: 2, skipped: 4 });
        assert_eq!((set.n, set.rows, set.labels.clone()), (3, 28, vec![1, 1, 1]));
        // The inverted images: background 0, ink bright.
        let (a, b) = (set.image(0), set.image(1));
        assert_eq!((a[0], a[14 * 28 + 14]), (0, 255));
        assert_eq!((b[0], b[14], b[15]), (55, 245, 55));
        assert!(set.image(2).iter().all(|&p| p == 0));
    }

    #[test]
    fn bad_folders_give_one_line_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let missing = root.join("nope");
        assert!(err(&missing, 10).ends_with("nope: cannot read: no such folder"));
        fs::write(root.join("file"), b"x").unwrap();
        assert!(err(&root.join("file"), 10).contains("file: not a folder; expected sub-folders named 0..9"));
        assert!(err(root, 10).contains("no class folders: expected sub-folders named 0..9"));
        for name in ["cat", "10", "-1", "03", "+1"] {
            let bad = root.join(name);
            fs::create_dir(&bad).unwrap();
            let msg = err(root, 10);
            assert!(msg.contains(&format!("{name}: sub-folder is not a class")), "{msg}");
            fs::remove_dir(&bad).unwrap();
        }
        // Class 5 is fine with ten classes, not with five.
        fs::create_dir(root.join("5")).unwrap();
        digit(0, 28).save(root.join("5/x.png")).unwrap();
        assert!(err(root, 5).contains("5: sub-folder is not a class: expected sub-folders named 0..4"));
        fs::create_dir(root.join("3")).unwrap();
        fs::write(root.join("3/.hidden.png"), b"x").unwrap();
        assert!(err(root, 10).ends_with("3: class folder 3 holds no images"));
        fs::write(root.join("3/notes.png"), b"not an image\nat all").unwrap();
        let msg = err(root, 10);
        assert!(msg.contains("notes.png: not a decodable image: "), "{msg}");
        let png = fs::read(root.join("5/x.png")).unwrap();
        fs::write(root.join("3/notes.png"), &png[..png.len() / 2]).unwrap();
        assert!(err(root, 10).contains("notes.png: not a decodable image: "));
    }

    #[test]
    fn a_huge_image_is_refused_by_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("0")).unwrap();
        GrayImage::new(MAX_IMAGE_SIDE + 1, 1).save(dir.path().join("0/wide.png")).unwrap();
        let msg = err(dir.path(), 10);
        assert!(msg.contains("wide.png: not a decodable image: ") && msg.contains("limit"), "{msg}");
    }

    #[test]
    fn arguments_out_of_range_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (classes, side) in [(0, 28), (11, 28), (10, 0)] {
            assert!(read_image_folder(dir.path(), classes, side).unwrap_err().to_string().contains("cannot load"));
        }
    }

    #[test]
    fn detection() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!looks_like_image_folder(dir.path()));
        assert!(!looks_like_image_folder(&dir.path().join("nope")));
        fs::write(dir.path().join("7"), b"a file").unwrap();
        fs::create_dir(dir.path().join("cat")).unwrap();
        assert!(!looks_like_image_folder(dir.path()));
        fs::create_dir(dir.path().join("4")).unwrap();
        assert!(looks_like_image_folder(dir.path()));
    }
}
