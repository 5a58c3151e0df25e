//! CSV files of images: one image a line, its pixels as decimal integers 0..=255, optionally a
//! label 0..=9 first.
//!
//! The layout is decided by the content. A first line whose fields are not all integers is a header;
//! a header whose first field is `label` (any case) means labels come first (Kaggle's `train.csv`,
//! the `label,1x1,...,28x28` of "MNIST in CSV"), any other header means no labels (Kaggle's
//! `test.csv`). Without a header, a row of `D + 1` fields with `D` a perfect square is a label and
//! an image (pjreddie's `mnist_train.csv`), and a row of `D` fields with `D` a perfect square (and
//! `D + 1` not) is an image alone. Images are square: `rows = cols = sqrt(D)`.
//!
//! Files are untrusted input: the file is streamed line by line through one reused buffer, each
//! line read through `Read::take` so that a line is at most [`MAX_LINE`] bytes whatever the file
//! holds, pixels grow only as rows arrive, and every defect is a one-line [`DataError`] naming the
//! file and the line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::dataset::Dataset;
use super::error::{DataError, malformed, one_line};
use super::idx::MAX_PAYLOAD;

/// Longest line accepted, in bytes, line ending excluded: 64 KiB.
pub const MAX_LINE: usize = 64 * 1024;

/// Longest field quoted in an error message, in characters.
const QUOTE_MAX: usize = 20;

const BOM: &[u8] = b"\xef\xbb\xbf";

/// Reads a CSV file of images, streamed through a BufReader (never slurped whole).
pub fn read_csv(path: &Path) -> Result<Dataset, DataError> {
    // Not `DataError::NotFound`: its message ends with a hint about the IDX files.
    let file = File::open(path).map_err(|e| read_error(path, e))?;
    parse_csv(BufReader::with_capacity(1 << 16, file), path)
}

/// The same over any reader; `name` is used in messages.
pub fn parse_csv(mut r: impl BufRead, name: &Path) -> Result<Dataset, DataError> {
    let row_err = |line: usize, reason: String| DataError::Row { path: name.to_path_buf(), line, reason };
    let mut buf = Vec::new();
    let mut fields: Vec<u32> = Vec::new();
    let mut layout: Option<Layout> = None;
    let mut set = Dataset { n: 0, rows: 0, cols: 0, pixels: Vec::new(), labels: Vec::new() };
    // The number of the first blank line of a run, for "blank lines only at the end".
    let mut blank_since: Option<usize> = None;
    let mut line_no = 0;
    while read_line(&mut r, &mut buf).map_err(|e| read_error(name, e))? {
        line_no += 1;
        // The length counts a first line's BOM, so that stripping it cannot let a cut line pass.
        if trim_line(&buf, false).len() > MAX_LINE {
            return Err(row_err(line_no, format!("line longer than {MAX_LINE} bytes (no newline?)")));
        }
        let line = trim_line(&buf, line_no == 1);
        if line.len() > MAX_LINE {
            return Err(row_err(line_no, format!("line longer than {MAX_LINE} bytes (no newline?)")));
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            blank_since.get_or_insert(line_no);
            continue;
        }
        if let Some(blank) = blank_since {
            return Err(row_err(blank, "empty line before more rows".into()));
        }
        let parsed = parse_row(line, &mut fields);
        let lay = match layout {
            Some(lay) => lay,
            None => {
                let lay = match parsed {
                    Err(FieldError::NotNumber(_)) => header_layout(line),
                    Err(e) => Err(e.describe(line)),
                    Ok(()) => data_layout(fields.len()),
                };
                let lay = lay.map_err(|m| row_err(line_no, m))?;
                (set.rows, set.cols) = (lay.side, lay.side);
                layout = Some(lay);
                if lay.header {
                    continue;
                }
                lay
            }
        };
        parsed.map_err(|e| row_err(line_no, e.describe(line)))?;
        if fields.len() != lay.fields {
            let (got, want) = (fields.len(), lay.fields);
            let like = if lay.header { "the header" } else { "line 1" };
            return Err(row_err(line_no, format!("{got} fields, expected {want} like {like}")));
        }
        let pixels = if lay.labelled {
            if fields[0] > 9 {
                let m = format!("column 1: label {} is not a digit 0..=9", quote(field_text(line, 0)));
                return Err(row_err(line_no, m));
            }
            set.labels.push(fields[0] as u8);
            &fields[1..]
        } else {
            &fields[..]
        };
        if let Some(i) = pixels.iter().position(|&v| v > 255) {
            let col = i + 1 + usize::from(lay.labelled);
            let m = format!("column {col}: pixel {} is above 255", quote(field_text(line, col - 1)));
            return Err(row_err(line_no, m));
        }
        if (set.pixels.len() + pixels.len()) as u64 > MAX_PAYLOAD {
            return Err(malformed(name, format!("more than {MAX_PAYLOAD} bytes of pixels")));
        }
        set.pixels.extend(pixels.iter().map(|&v| v as u8));
        set.n += 1;
    }
    match layout {
        None => Err(malformed(name, "empty file: no rows of data".into())),
        Some(_) if set.n == 0 => Err(malformed(name, "a header but no rows of data".into())),
        Some(_) => Ok(set),
    }
}

/// Whether the first bytes look like a CSV of images (ASCII digits, commas, optional header line),
/// for format detection: true for Kaggle's train and test files, pjreddie's and "MNIST in CSV".
/// `first_bytes` may end anywhere, even inside the header.
pub fn looks_like_csv(first_bytes: &[u8]) -> bool {
    let bytes = first_bytes.strip_prefix(BOM).unwrap_or(first_bytes);
    let (first, rest) = match bytes.iter().position(|&b| b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    let numeric = |b: &u8| b.is_ascii_digit() || b" ,\t\r-".contains(b);
    let header_ok = |b: &u8| b.is_ascii_graphic() || b" \t\r".contains(b);
    let first_ok = first.iter().all(numeric) || first.iter().all(header_ok);
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    first_ok && first.contains(&b',') && has_digit && rest.iter().all(|b| numeric(b) || *b == b'\n')
}

/// What the first line says about every row.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Whether line 1 is a header rather than data.
    header: bool,
    /// Whether each row starts with a label.
    labelled: bool,
    /// Fields a row must have.
    fields: usize,
    /// The images are `side x side`.
    side: usize,
}

/// The layout given by a header line.
fn header_layout(line: &[u8]) -> Result<Layout, String> {
    let text = String::from_utf8_lossy(line);
    let names: Vec<&str> = text.split(',').map(|f| f.trim().trim_matches('"').trim()).collect();
    let is_label = |f: &&str| f.eq_ignore_ascii_case("label");
    if let Some(i) = names.iter().skip(1).position(is_label) {
        return Err(format!("header: column {} is the label; it must be the first column", i + 2));
    }
    let labelled = names.first().is_some_and(is_label);
    let d = names.len() - usize::from(labelled);
    let Some(side) = square_side(d) else {
        let what = if labelled { "a label and " } else { "" };
        return Err(format!("header names {what}{d} pixel columns, not a square image (like 784 = 28x28)"));
    };
    Ok(Layout { header: true, labelled, fields: names.len(), side })
}

/// The layout given by a first line of `n` integers.
fn data_layout(n: usize) -> Result<Layout, String> {
    let lay = |labelled, side| Layout { header: false, labelled, fields: n, side };
    match (square_side(n.saturating_sub(1)), square_side(n)) {
        (Some(side), _) => Ok(lay(true, side)),
        (None, Some(side)) => Ok(lay(false, side)),
        (None, None) => {
            Err(format!("{n} fields, neither D pixels nor a label and D pixels with D a square (like 784 = 28x28)"))
        }
    }
}

/// `sqrt(d)` if `d > 0` is a perfect square.
fn square_side(d: usize) -> Option<usize> {
    let s = (d as f64).sqrt().round() as usize;
    (d > 0 && s.checked_mul(s) == Some(d)).then_some(s)
}

/// Read one line, line ending included, into `buf` (cleared first), taking at most
/// `MAX_LINE + 2` bytes so a file without newlines is never read whole. False at the end of input.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let got = r.by_ref().take(MAX_LINE as u64 + 2).read_until(b'\n', buf)?;
    Ok(got > 0)
}

/// The line without its line ending (and without a BOM on the first line).
fn trim_line(buf: &[u8], first: bool) -> &[u8] {
    let mut line = buf.strip_suffix(b"\n").unwrap_or(buf);
    line = line.strip_suffix(b"\r").unwrap_or(line);
    if first { line.strip_prefix(BOM).unwrap_or(line) } else { line }
}

/// Why a field is not a pixel or label; holds its 0-based column.
#[derive(Clone, Copy, Debug)]
enum FieldError {
    NotNumber(usize),
    Negative(usize),
}

impl FieldError {
    /// The one-line reason, quoting the field from `line`.
    fn describe(self, line: &[u8]) -> String {
        match self {
            FieldError::NotNumber(c) if field_text(line, c).is_empty() => format!("column {}: empty field", c + 1),
            FieldError::NotNumber(c) => format!("column {}: {} is not a number", c + 1, quote(field_text(line, c))),
            FieldError::Negative(c) => format!("column {}: {} is negative", c + 1, quote(field_text(line, c))),
        }
    }
}

/// Parse the comma-separated unsigned integers of `line` into `out`, allowing spaces around them.
/// Values too large for a u32 saturate (they are rejected later as above 255).
fn parse_row(line: &[u8], out: &mut Vec<u32>) -> Result<(), FieldError> {
    out.clear();
    let n = line.len();
    let mut i = 0;
    loop {
        let col = out.len();
        while i < n && (line[i] == b' ' || line[i] == b'\t') {
            i += 1;
        }
        let negative = i < n && line[i] == b'-';
        i += usize::from(negative);
        let start = i;
        let mut v: u32 = 0;
        while i < n && line[i].is_ascii_digit() {
            v = v.saturating_mul(10).saturating_add(u32::from(line[i] - b'0'));
            i += 1;
        }
        let digits = i > start;
        while i < n && (line[i] == b' ' || line[i] == b'\t') {
            i += 1;
        }
        if !digits || (i < n && line[i] != b',') {
            return Err(FieldError::NotNumber(col));
        } else if negative {
            return Err(FieldError::Negative(col));
        }
        out.push(v);
        if i == n {
            return Ok(());
        }
        i += 1;
    }
}

/// Field `col` (0-based) of `line`, trimmed.
fn field_text(line: &[u8], col: usize) -> String {
    let field = line.split(|&b| b == b',').nth(col).unwrap_or_default();
    String::from_utf8_lossy(field).trim().to_string()
}

/// `s` in double quotes, cut to [`QUOTE_MAX`] characters, control characters escaped.
fn quote(s: String) -> String {
    let mut q: String = s.chars().take(QUOTE_MAX).flat_map(char::escape_default).collect();
    if s.chars().count() > QUOTE_MAX {
        q.push_str("...");
    }
    format!("\"{q}\"")
}

fn read_error(name: &Path, e: io::Error) -> DataError {
    DataError::Io { path: name.to_path_buf(), reason: one_line(&e) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{parse_idx_images, parse_idx_labels};

    /// `n` synthetic `side x side` images and labels, through the IDX parsers.
    fn idx_set(n: usize, side: usize) -> Dataset {
        let d = side * side;
        let mut images = vec![0, 0, 8, 3];
        for x in [n, side, side] {
            images.extend((x as u32).to_be_bytes());
        }
        images.extend((0..n * d).map(|i| (i * 37 % 256) as u8));
        let mut labels = vec![0, 0, 8, 1];
        labels.extend((n as u32).to_be_bytes());
        labels.extend((0..n).map(|i| (i * 7 % 10) as u8));
        let (n, rows, cols, pixels) = parse_idx_images(&images, Path::new("images")).unwrap();
        let labels = parse_idx_labels(&labels, Path::new("labels")).unwrap();
        Dataset { n, rows, cols, pixels, labels }
    }

    /// How a test names pixel column j in a header; no header when None.
    type Names<'a> = Option<&'a dyn Fn(usize) -> String>;

    /// `set` as CSV text: an optional header line, then rows, labels first when `labelled`.
    fn to_csv(set: &Dataset, header: Names, labelled: bool) -> String {
        let mut out = String::new();
        if let Some(name) = header {
            let mut names: Vec<String> = (0..set.d()).map(name).collect();
            if labelled {
                names.insert(0, "label".into());
            }
            out += &(names.join(",") + "\n");
        }
        for i in 0..set.n {
            let mut row: Vec<String> = set.image(i).iter().map(u8::to_string).collect();
            if labelled {
                row.insert(0, set.labels[i].to_string());
            }
            out += &(row.join(",") + "\n");
        }
        out
    }

    fn parse(text: &str) -> Result<Dataset, DataError> {
        parse_csv(text.as_bytes(), Path::new("digits.csv"))
    }

    fn unlabelled(set: &Dataset) -> Dataset {
        Dataset { labels: Vec::new(), ..set.clone() }
    }

    #[test]
    fn every_layout_parses_to_the_idx_data() {
        for side in [28, 3] {
            let set = idx_set(5, side);
            let kaggle = |j: usize| format!("pixel{j}");
            let oddrationale = |j: usize| format!("{}x{}", j / side + 1, j % side + 1);
            let layouts: [(Names, bool); 5] = [
                (Some(&kaggle), true),
                (Some(&kaggle), false),
                (None, true),
                (Some(&oddrationale), true),
                (None, false),
            ];
            for (header, labelled) in layouts {
                let text = to_csv(&set, header, labelled);
                let want = if labelled { set.clone() } else { unlabelled(&set) };
                let got = parse(&text).unwrap();
                assert_eq!(got, want, "side {side}, header {}, labelled {labelled}", header.is_some());
                assert_eq!(got.labelled(), labelled);
                // CRLF, spaces around fields, a BOM, an upper-case label and trailing blank lines.
                let messy = text.replace(',', " ,\t").replace('\n', "\r\n").replace("label", " LABEL ");
                let messy = format!("\u{feff}{messy}\r\n  \n");
                assert_eq!(parse(&messy).unwrap(), want, "messy, side {side}");
            }
        }
    }

    #[test]
    fn rows_of_784_and_785_fields() {
        let row = vec!["0"; 784].join(",");
        assert!(!parse(&row).unwrap().labelled());
        let set = parse(&format!("7,{row}")).unwrap();
        assert_eq!((set.n, set.rows, set.cols, set.labels), (1, 28, 28, vec![7]));
    }

    #[test]
    fn read_csv_reads_a_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.csv");
        let set = idx_set(5, 28);
        std::fs::write(&path, to_csv(&set, None, true)).unwrap();
        assert_eq!(read_csv(&path).unwrap(), set);
        let missing = read_csv(&dir.path().join("nope.csv")).unwrap_err();
        assert!(matches!(missing, DataError::Io { .. }), "{missing}");
        assert!(missing.to_string().contains("nope.csv: cannot read: "), "{missing}");
    }

    #[test]
    fn malformed_files_give_one_line_errors() {
        let long = "x".repeat(100);
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "digits.csv: empty file"),
            ("\n\r\n".into(), "digits.csv: empty file"),
            ("label,a,b,c,d\n".into(), "digits.csv: a header but no rows"),
            ("1,2,3,4,5\n1,2,3,4,5\n1,2,3\n".into(), "line 3: 3 fields, expected 5 like line 1"),
            ("label,a,b,c,d\n1,2,3,4,5,6\n".into(), "line 2: 6 fields, expected 5 like the header"),
            ("1,2,3,4,5\n1,2,3,abc,5\n".into(), "line 2: column 4: \"abc\" is not a number"),
            (format!("1,2,3,4,5\n1,{long},3,4,5\n"), "line 2: column 2: \"xxxxxxxxxxxxxxxxxxxx...\" is not"),
            ("1,2,3,4,5\n1,2,3.5,4,5\n".into(), "line 2: column 3: \"3.5\" is not a number"),
            ("1,2,3,4,5\n1,2,,4,5\n".into(), "line 2: column 3: empty field"),
            ("1,2,3,4,5\n1,2,3,4,5,\n".into(), "line 2: column 6: empty field"),
            ("1,2,3,4,5\n1,2,3,256,5\n".into(), "line 2: column 4: pixel \"256\" is above 255"),
            ("1,2,3,4,5\n1,2,3,99999999999999,5\n".into(), "column 4: pixel \"99999999999999\" is above"),
            ("1,2,3,4,5\n1,2,-3,4,5\n".into(), "line 2: column 3: \"-3\" is negative"),
            ("1,-2,3,4,5\n".into(), "line 1: column 2: \"-2\" is negative"),
            ("1,2,3,4,5\n10,2,3,4,5\n".into(), "line 2: column 1: label \"10\" is not a digit"),
            ("1,2,3,4,5\n\n1,2,3,4,5\n".into(), "line 2: empty line before more rows"),
            ("1,2,3\n".into(), "line 1: 3 fields, neither D pixels nor a label and D pixels"),
            ("a,b,c\n1,2,3\n".into(), "line 1: header names 3 pixel columns, not a square"),
            ("a,label,c,d\n1,2,3,4\n".into(), "line 1: header: column 2 is the label"),
            ("\u{feff}label,a,b\n".into(), "header names a label and 2 pixel columns"),
        ];
        for (text, want) in cases {
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.contains(want) && msg.starts_with("digits.csv: "), "{text:?}: {msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn a_huge_line_is_refused_after_reading_at_most_the_cap() {
        let big = "1".repeat(10 << 20);
        let mut rest = big.as_bytes();
        let msg = parse_csv(&mut rest, Path::new("big.csv")).unwrap_err().to_string();
        assert_eq!(msg, format!("big.csv: line 1: line longer than {MAX_LINE} bytes (no newline?)"));
        assert!(big.len() - rest.len() <= MAX_LINE + 2, "read {} bytes", big.len() - rest.len());
        // A BOM in front does not let the over-long line through as several short ones.
        let mut bom = b"\xef\xbb\xbf1".to_vec();
        bom.extend(std::iter::repeat_n(b' ', 70_000));
        let err = parse_csv(&bom[..], Path::new("bom.csv")).expect_err("too long");
        assert!(err.to_string().contains("line 1: line longer than"), "{err}");
        // A line right at the cap, with a CRLF, is fine.
        let row = format!("{}\r\n", ["255"; 4].join(",") + &" ".repeat(MAX_LINE - 15));
        assert_eq!(parse(&row).unwrap().pixels, vec![255; 4]);
    }

    #[test]
    fn detection() {
        let set = idx_set(3, 28);
        let kaggle = |j: usize| format!("pixel{j}");
        for text in [to_csv(&set, Some(&kaggle), true), to_csv(&set, Some(&kaggle), false), to_csv(&set, None, true)] {
            assert!(looks_like_csv(&text.as_bytes()[..512]), "{}", &text[..40]);
            assert!(looks_like_csv(text.as_bytes()));
        }
        assert!(looks_like_csv("\u{feff}label,1x1,1x2\r\n5,0,255\r\n".as_bytes()));
        let idx = [0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28];
        let not_csv: [&[u8]; 6] =
            [b"", &idx, b"\x1f\x8b\x08\x00", b"\x89PNG\r\n\x1a\n", b"hello world\n", b"a,b\nc,d\n"];
        for bytes in not_csv {
            assert!(!looks_like_csv(bytes), "{bytes:?}");
        }
    }
}
