//! Property tests for the three parsers of untrusted files: IDX (raw and gzip), CSV and the
//! model file (safetensors, PyTorch state dicts, ONNX). Valid files written from random data parse back to that data, and any
//! bytes at all (random, or a valid file damaged) give `Ok` or a one-line error, never a panic,
//! and an `Ok` never holds more than the input's bytes can account for.

use std::io::Write;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use gpu_mnist::augment::{Augment, Augmentation};
use gpu_mnist::checkpoint::{self, LoadOptions, Model, Provenance, RunRecord, onnx};
use gpu_mnist::data::csv::parse_csv;
use gpu_mnist::data::{Dataset, parse_idx_images, parse_idx_labels};
use gpu_mnist::model::{Activation, Params, Shape};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// Writers and strategies

/// A labelled set of `n` images of `rows x cols`, every label a digit.
fn dataset(rows: impl Strategy<Value = usize>, cols: impl Strategy<Value = usize>) -> impl Strategy<Value = Dataset> {
    (1..20usize, rows, cols).prop_flat_map(|(n, rows, cols)| {
        (prop::collection::vec(any::<u8>(), n * rows * cols), prop::collection::vec(0..=9u8, n))
            .prop_map(move |(pixels, labels)| Dataset { n, rows, cols, pixels, labels })
    })
}

/// A set with rows and cols 1..9 each.
fn any_dataset() -> impl Strategy<Value = Dataset> {
    dataset(1..=9usize, 1..=9usize)
}

/// A set of square images (the only kind a CSV holds), side 1..9.
fn square_dataset() -> impl Strategy<Value = Dataset> {
    (1..=9usize).prop_flat_map(|side| dataset(Just(side), Just(side)))
}

fn idx_images(set: &Dataset) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for x in [set.n, set.rows, set.cols] {
        out.extend((x as u32).to_be_bytes());
    }
    out.extend(&set.pixels);
    out
}

fn idx_labels(set: &Dataset) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 1];
    out.extend((set.n as u32).to_be_bytes());
    out.extend(&set.labels);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The CSV layouts the parser recognises.
#[derive(Clone, Copy, Debug)]
enum CsvLayout {
    /// `label,pixel0,...` then label-first rows (Kaggle's train.csv).
    HeaderLabelled,
    /// `pixel0,...` then pixel-only rows (Kaggle's test.csv).
    HeaderUnlabelled,
    /// No header, label-first rows (pjreddie's mnist_train.csv).
    Labelled,
    /// No header, pixel-only rows.
    Unlabelled,
}

impl CsvLayout {
    fn labelled(self) -> bool {
        matches!(self, CsvLayout::HeaderLabelled | CsvLayout::Labelled)
    }
}

fn csv_layout() -> impl Strategy<Value = CsvLayout> {
    prop_oneof![
        Just(CsvLayout::HeaderLabelled),
        Just(CsvLayout::HeaderUnlabelled),
        Just(CsvLayout::Labelled),
        Just(CsvLayout::Unlabelled),
    ]
}

/// `set` as CSV text in `layout`, lines ended by `eol`, the last one too when `final_eol`.
fn to_csv(set: &Dataset, layout: CsvLayout, eol: &str, final_eol: bool) -> String {
    let mut lines = Vec::new();
    let header: Vec<String> = (0..set.d()).map(|j| format!("pixel{j}")).collect();
    match layout {
        CsvLayout::HeaderLabelled => lines.push(format!("label,{}", header.join(","))),
        CsvLayout::HeaderUnlabelled => lines.push(header.join(",")),
        CsvLayout::Labelled | CsvLayout::Unlabelled => {}
    }
    for i in 0..set.n {
        let mut row: Vec<String> = set.image(i).iter().map(u8::to_string).collect();
        if layout.labelled() {
            row.insert(0, set.labels[i].to_string());
        }
        lines.push(row.join(","));
    }
    let mut text = lines.join(eol);
    if final_eol {
        text += eol;
    }
    text
}

/// Finite f32s of every kind: normal, subnormal and zero, either sign.
fn finite_f32() -> impl Strategy<Value = f32> {
    use prop::num::f32::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![Just(Activation::Sigmoid), Just(Activation::Relu), Just(Activation::Elu)]
}

/// A small model of one to three hidden layers with random weights (biases zero when it has
/// none, as `parse` returns them) and random provenance; the accuracy has the 4 decimals a file
/// stores.
fn any_model() -> impl Strategy<Value = Model> {
    let hidden = prop::collection::vec(1..=10usize, 1..=3);
    (1..=20usize, hidden, 2..=11usize, any::<bool>()).prop_flat_map(|(d, hidden, k, bias)| {
        let shape = Shape::new(d, &hidden, k, bias);
        // Every tensor's values in one list, dealt out layer by layer below.
        let values = prop::collection::vec(finite_f32(), shape.parameter_count());
        let provenance = ("(?s).{0,16}", any::<usize>(), "(?s).{0,16}", 0..=10_000u32, "[0-9a-z.+-]{0,12}").prop_map(
            |(dataset, iterations, backend, acc, version)| Provenance {
                dataset,
                iterations,
                backend,
                test_accuracy: f64::from(acc) / 10_000.0,
                version,
            },
        );
        (values, activation(), provenance, any_run()).prop_map(move |(values, activation, provenance, run)| {
            let mut params = Params::zeros(shape.clone());
            let mut next = values.into_iter();
            for layer in &mut params.layers {
                layer.w.iter_mut().for_each(|v| *v = next.next().unwrap_or(0.0));
                if bias {
                    layer.b.iter_mut().for_each(|v| *v = next.next().unwrap_or(0.0));
                }
            }
            // A batching cannot begin after the model's last step.
            let mut run = run;
            run.batch_origin = run.batch_origin.map(|o| o.min(provenance.iterations));
            Model { params, activation, provenance, run, optimizer: None }
        })
    })
}

/// A run's plan with every field present or absent, each value one a file may hold.
fn any_run() -> impl Strategy<Value = RunRecord> {
    use gpu_mnist::data::Format;
    use gpu_mnist::optim::{Optimizer, OptimizerConfig};
    use gpu_mnist::schedule::LrSchedule;
    let some = |p: f64| prop::option::weighted(p, 1..=100_000usize);
    let rule = prop::sample::select(Optimizer::ALL.to_vec());
    let optimizer = prop::option::of((rule, 0.0f32..1.0, 0.0f32..1.0, 1e-9f32..1.0, 0.0f32..1.0)).prop_map(|o| {
        o.map(|(kind, momentum, beta, eps, weight_decay)| {
            let d = OptimizerConfig::default();
            // A file holds only the rule's own hyper-parameters; the others load as defaults.
            let (momentum, beta1) = match kind {
                Optimizer::Momentum | Optimizer::Nesterov => (momentum, d.beta1),
                Optimizer::Adam => (d.momentum, beta),
                Optimizer::Gd => (d.momentum, d.beta1),
            };
            let (beta2, eps) = if kind == Optimizer::Adam { (beta, eps) } else { (d.beta2, d.eps) };
            OptimizerConfig { kind, momentum, beta1, beta2, eps, weight_decay }
        })
    });
    let data = (
        prop::option::of("[a-z/._-]{1,12}"),
        prop::option::of("[a-z/._-]{1,12}"),
        prop::option::of(prop::sample::select(Format::ALL.to_vec())),
    );
    let schedule = (
        prop::option::of(1e-6f32..10.0),
        prop::option::of(prop::sample::select(LrSchedule::ALL.to_vec())),
        prop::option::of(0..1000usize),
        some(0.5),
        prop::option::of(0.01f32..=1.0),
        prop::option::of(any::<usize>()),
    );
    let rows = (some(0.5), some(0.5), prop::option::of(0.01f64..0.99), some(0.5), prop::option::of(any::<usize>()));
    let backend = prop::option::of(prop::sample::select(gpu_mnist::backend::BackendChoice::ALL.to_vec()));
    let reports = (some(0.5), some(0.5), prop::option::of(0.01f64..0.99));
    let augment = prop::option::of(
        (
            prop::sample::select(vec![Augmentation::Affine, Augmentation::Elastic]),
            0f32..5.0,
            0f32..60.0,
            0f32..0.9,
            0f32..60.0,
            0f32..50.0,
            0.1f32..10.0,
        )
            .prop_map(|(kind, shift, rotate, scale, shear, alpha, sigma)| Augment {
                kind,
                shift,
                rotate,
                scale,
                shear,
                alpha,
                sigma,
            }),
    );
    let best =
        (prop::option::of(any::<bool>()), some(0.5), prop::option::of(any::<usize>()), prop::option::of(0f32..0.99));
    (prop::option::of(any::<u64>()), backend, data, schedule, optimizer, rows, reports, (augment, best)).prop_map(
        |(
            seed,
            backend,
            (data, test_data, format),
            (lr, kind, warmup, step_every, gamma, planned),
            optimizer,
            rows,
            (eval_every, report_every, target),
            (augment, (keep_best, patience, best_of, dropout)),
        )| {
            let (samples, test_samples, val_split, batch_size, batch_origin) = rows;
            RunRecord {
                seed,
                backend,
                data: data.map(Into::into),
                test_data: test_data.map(Into::into),
                format,
                samples,
                test_samples,
                val_split,
                lr,
                lr_schedule: kind,
                warmup,
                lr_step_every: step_every,
                lr_gamma: gamma,
                planned_iterations: planned,
                optimizer,
                batch_size,
                batch_origin,
                eval_every,
                report_every,
                target_accuracy: target,
                augment,
                keep_best,
                patience,
                dropout,
                best_of,
            }
        },
    )
}

/// The bytes of `model` as `checkpoint::save` writes them (through a temporary file).
fn model_bytes(model: &Model) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, model).unwrap();
    std::fs::read(&path).unwrap()
}

/// One way to damage a file.
#[derive(Clone, Debug)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at`.
    Flip(Index, u8),
    /// Insert `byte` before `at` (or at the end).
    Insert(Index, u8),
    /// Remove the byte at `at`.
    Delete(Index),
    /// Keep only the bytes before `at`.
    Truncate(Index),
    /// Overwrite 4 bytes at `at` with a big-endian u32, like a header size.
    Word(Index, u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop_oneof![Just(0), Just(1), Just(u32::MAX), Just(1 << 31), any::<u32>()])
            .prop_map(|(at, w)| Mutation::Word(at, w)),
    ]
}

/// `bytes` with every mutation applied in turn.
fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            bytes.push(0);
        }
        let len = bytes.len();
        match m {
            Mutation::Flip(at, bit) => bytes[at.index(len)] ^= 1 << bit,
            Mutation::Insert(at, b) => bytes.insert(at.index(len + 1), *b),
            Mutation::Delete(at) => {
                bytes.remove(at.index(len));
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(len)),
            Mutation::Word(at, w) => {
                let at = at.index(len);
                for (dst, src) in bytes[at..].iter_mut().zip(w.to_be_bytes()) {
                    *dst = src;
                }
            }
        }
    }
    bytes
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..6)
}

// ---------------------------------------------------------------------------------------------
// The contract every parser keeps on any input

/// Ok or an error whose message is one line.
fn one_line<T, E: std::fmt::Display>(r: &Result<T, E>) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        let msg = e.to_string();
        prop_assert!(!msg.contains('\n') && !msg.contains('\r'), "multi-line error: {msg:?}");
        prop_assert!(!msg.is_empty());
    }
    Ok(())
}

/// Both IDX parsers on `bytes`: no panic, one-line errors, and an Ok whose size matches its header
/// and, for raw input, is no more than the input holds.
fn check_idx(bytes: &[u8]) -> Result<(), TestCaseError> {
    let name = Path::new("x.idx");
    let raw = !bytes.starts_with(&[0x1f, 0x8b]);
    let images = parse_idx_images(bytes, name);
    one_line(&images)?;
    if let Ok((n, rows, cols, pixels)) = &images {
        prop_assert_eq!(pixels.len(), n * rows * cols);
        prop_assert!(*n > 0 && *rows > 0 && *cols > 0);
        if raw {
            prop_assert_eq!(pixels.len() + 16, bytes.len());
        }
    }
    let labels = parse_idx_labels(bytes, name);
    one_line(&labels)?;
    if let Ok(labels) = &labels {
        prop_assert!(!labels.is_empty() && labels.iter().all(|&l| l <= 9));
        if raw {
            prop_assert_eq!(labels.len() + 8, bytes.len());
        }
    }
    Ok(())
}

/// The CSV parser on `bytes`: no panic, one-line errors, and an Ok that is a consistent set with
/// no more pixels than the input has bytes.
fn check_csv(bytes: &[u8]) -> Result<(), TestCaseError> {
    let r = parse_csv(bytes, Path::new("x.csv"));
    one_line(&r)?;
    if let Ok(set) = &r {
        prop_assert!(set.n > 0 && set.rows > 0 && set.rows == set.cols);
        prop_assert_eq!(set.pixels.len(), set.n * set.d());
        prop_assert!(set.labels.is_empty() || set.labels.len() == set.n);
        prop_assert!(set.labels.iter().all(|&l| l <= 9));
        prop_assert!(set.pixels.len() <= bytes.len());
    }
    Ok(())
}

/// The model parser on `bytes`: no panic, one-line errors, and an Ok whose tensors fit its shape,
/// are finite, and were all in the input.
fn check_model(bytes: &[u8]) -> Result<(), TestCaseError> {
    check_model_with(bytes, LoadOptions::default())?;
    // A PyTorch state dict is read only with an activation: reach that reader too.
    check_model_with(bytes, LoadOptions { activation: Some(Activation::Relu) })
}

fn check_model_with(bytes: &[u8], options: LoadOptions) -> Result<(), TestCaseError> {
    let r = checkpoint::parse_with(bytes, Path::new("x.safetensors"), options);
    one_line(&r)?;
    if let Ok(m) = &r {
        let s = &m.params.shape;
        let widths = s.widths();
        prop_assert!(widths.iter().all(|&w| w > 0) && s.k >= 2);
        prop_assert_eq!(m.params.layers.len(), widths.len() - 1);
        for (layer, pair) in m.params.layers.iter().zip(widths.windows(2)) {
            prop_assert_eq!(layer.w.len(), pair[0] * pair[1]);
            prop_assert_eq!(layer.b.len(), pair[1]);
        }
        prop_assert!(m.params.tensors().iter().all(|(_, t)| t.iter().all(|v| v.is_finite())));
        prop_assert!(s.parameter_count() * 4 <= bytes.len());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Round trips

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A random set written as raw IDX images and labels files parses back to the same set.
    #[test]
    fn idx_raw_round_trip(set in any_dataset()) {
        let (n, rows, cols, pixels) = parse_idx_images(&idx_images(&set), Path::new("i")).unwrap();
        let labels = parse_idx_labels(&idx_labels(&set), Path::new("l")).unwrap();
        prop_assert_eq!(Dataset { n, rows, cols, pixels, labels }, set);
    }

    /// The same files gzipped parse back to the same set: gzip is told by content, not name.
    #[test]
    fn idx_gzip_round_trip(set in any_dataset()) {
        let (n, rows, cols, pixels) = parse_idx_images(&gzip(&idx_images(&set)), Path::new("i")).unwrap();
        let labels = parse_idx_labels(&gzip(&idx_labels(&set)), Path::new("l")).unwrap();
        prop_assert_eq!(Dataset { n, rows, cols, pixels, labels }, set);
    }

    /// A random set of square images written as CSV in each layout the parser recognises (header
    /// or not, label first or none), with LF or CRLF and with or without a final line ending,
    /// parses back to the same set (without labels for the unlabelled layouts).
    #[test]
    fn csv_round_trip(
        set in square_dataset(),
        layout in csv_layout(),
        eol in prop_oneof![Just("\n"), Just("\r\n")],
        final_eol in any::<bool>(),
    ) {
        let text = to_csv(&set, layout, eol, final_eol);
        let got = parse_csv(text.as_bytes(), Path::new("x.csv")).unwrap();
        let want = if layout.labelled() { set } else { Dataset { labels: Vec::new(), ..set } };
        prop_assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A random model (any layer sizes, with or without bias, any activation, any finite weights
    /// and any provenance strings) saved by `checkpoint::save` parses back equal.
    #[test]
    fn model_round_trip(model in any_model()) {
        let bytes = model_bytes(&model);
        let got = checkpoint::parse(&bytes, Path::new("m.safetensors")).unwrap();
        prop_assert_eq!(got, model);
    }

    /// The same model exported as ONNX reads back equal.
    #[test]
    fn onnx_round_trip(model in any_model()) {
        let got = checkpoint::parse(&onnx::export(&model), Path::new("m.onnx")).unwrap();
        prop_assert_eq!(got, model);
    }

    /// The same model's weights in PyTorch's layout (`0.weight` [out, in], ...) read back as
    /// the same perceptron.
    #[test]
    fn state_dict_round_trip(model in any_model()) {
        let got = checkpoint::parse_with(&state_dict_bytes(&model.params), Path::new("m.safetensors"),
            LoadOptions { activation: Some(model.activation) }).unwrap();
        prop_assert_eq!((got.params, got.activation), (model.params, model.activation));
    }
}

/// `params` as `safetensors.torch.save_file(model.state_dict())` writes an nn.Sequential of
/// Linear layers (at indices 0, 2, 4, ...) and activations.
fn state_dict_bytes(params: &Params) -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView, serialize};
    let mut tensors = Vec::new();
    for (l, layer) in params.layers.iter().enumerate() {
        let (i, o) = params.shape.layer(l);
        let w: Vec<f32> = (0..o).flat_map(|c| (0..i).map(move |r| (r, c))).map(|(r, c)| layer.w[r * o + c]).collect();
        tensors.push((format!("{}.weight", 2 * l), vec![o, i], w));
        if params.shape.bias {
            tensors.push((format!("{}.bias", 2 * l), vec![o], layer.b.clone()));
        }
    }
    let data: Vec<(String, Vec<usize>, Vec<u8>)> =
        tensors.into_iter().map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views = data.iter().map(|(n, s, b)| (n.as_str(), TensorView::new(Dtype::F32, s.clone(), b).unwrap()));
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    serialize(views, Some(meta)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Any input: no panic, one-line errors

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes never make the IDX parsers panic, and their errors are one line.
    #[test]
    fn idx_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_idx(&bytes)?;
    }

    /// Arbitrary bytes after a valid IDX magic (so the header and size checks are reached) never
    /// panic either.
    #[test]
    fn idx_any_bytes_after_magic(
        magic in prop_oneof![Just([0, 0, 8, 3]), Just([0, 0, 8, 1])],
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        check_idx(&[&magic[..], &rest].concat())?;
    }

    /// Arbitrary bytes never make the CSV parser panic, and its errors are one line.
    #[test]
    fn csv_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_csv(&bytes)?;
    }

    /// Arbitrary text of CSV's own characters (digits, commas, signs, spaces, line ends, a BOM,
    /// `label`) never makes the CSV parser panic, and its errors are one line.
    #[test]
    fn csv_any_csvish_text(text in "(\u{feff}|label|pixel|[0-9]{1,4}|,|-| |\t|\r|\n){0,80}") {
        check_csv(text.as_bytes())?;
    }

    /// Arbitrary bytes never make the model parser panic, and its errors are one line.
    #[test]
    fn model_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_model(&bytes)?;
    }

    /// Arbitrary bytes after an ONNX model's first byte (field 1, the IR version), so that they
    /// reach the ONNX reader, never panic either.
    #[test]
    fn model_any_onnx_like_bytes(rest in prop::collection::vec(any::<u8>(), 0..512)) {
        check_model(&[&[0x08u8][..], &rest].concat())?;
    }

    /// A safetensors length prefix followed by arbitrary JSON-ish text never makes the model
    /// parser panic (this reaches the JSON header parser, not just the length check).
    #[test]
    fn model_any_header_text(text in "[{}\\[\\]\":,0-9a-zA-Z_ ]{0,200}", tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = (text.len() as u64).to_le_bytes().to_vec();
        bytes.extend(text.as_bytes());
        bytes.extend(tail);
        check_model(&bytes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A valid raw IDX images or labels file damaged by bit flips, inserted, deleted or
    /// overwritten bytes, or truncation never makes the IDX parsers panic.
    #[test]
    fn idx_raw_mutated(set in any_dataset(), labels in any::<bool>(), ms in mutations()) {
        let file = if labels { idx_labels(&set) } else { idx_images(&set) };
        check_idx(&mutate(file, &ms))?;
    }

    /// The same for a gzipped IDX file (bad CRCs, cut streams, damaged gzip headers).
    #[test]
    fn idx_gzip_mutated(set in any_dataset(), labels in any::<bool>(), ms in mutations()) {
        let file = if labels { idx_labels(&set) } else { idx_images(&set) };
        check_idx(&mutate(gzip(&file), &ms))?;
    }

    /// A valid CSV in any layout, damaged, never makes the CSV parser panic.
    #[test]
    fn csv_mutated(set in square_dataset(), layout in csv_layout(), ms in mutations()) {
        check_csv(&mutate(to_csv(&set, layout, "\n", true).into_bytes(), &ms))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A valid model file, damaged (in its JSON header, its length prefix or its tensor bytes),
    /// never makes the model parser panic.
    #[test]
    fn model_mutated(model in any_model(), ms in prop::collection::vec(mutations(), 8)) {
        // One save, several damaged copies: saving goes through the file system.
        let bytes = model_bytes(&model);
        for m in &ms {
            check_model(&mutate(bytes.clone(), m))?;
        }
    }

    /// The same for the model exported as ONNX, and its weights as a PyTorch state dict.
    #[test]
    fn onnx_and_state_dict_mutated(model in any_model(), ms in prop::collection::vec(mutations(), 8)) {
        let (onnx_bytes, torch_bytes) = (onnx::export(&model), state_dict_bytes(&model.params));
        for m in &ms {
            check_model(&mutate(onnx_bytes.clone(), m))?;
            check_model(&mutate(torch_bytes.clone(), m))?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Model files quoting their own strings

/// A JSON string literal of `s`.
fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// A safetensors file with `meta` (JSON members) as `__metadata__` and tensors `(name, dtype,
/// shape)` of 4-byte zeros laid end to end.
fn safetensors_file(meta: &str, tensors: &[(&str, &str, &[usize])]) -> Vec<u8> {
    let mut members = vec![format!(r#""__metadata__":{{{meta}}}"#)];
    let mut end = 0;
    for (name, dtype, shape) in tensors {
        let len = 4 * shape.iter().product::<usize>();
        members.push(format!(
            r#"{}:{{"dtype":{},"shape":{shape:?},"data_offsets":[{end},{}]}}"#,
            json(name),
            json(dtype),
            end + len
        ));
        end += len;
    }
    let header = format!("{{{}}}", members.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.resize(bytes.len() + end, 0);
    bytes
}

/// `__metadata__` members of a 1 -> 1 -> 2 model, with these three values.
fn meta(format: &str, bias: &str, activation: &str) -> String {
    format!(
        r#""format":{},"bias":{},"activation":{},"inputs":"1","hidden":"1","classes":"2""#,
        json(format),
        json(bias),
        json(activation)
    )
}

const W1: (&str, &str, &[usize]) = ("w1", "F32", &[1, 1]);
const W2: (&str, &str, &[usize]) = ("w2", "F32", &[1, 2]);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever characters a model file's metadata values, tensor names or dtypes hold (line
    /// breaks included), the errors that quote them are one line.
    #[test]
    fn model_errors_quoting_the_file_are_one_line(s in "(?s).{0,6}(\n|\r).{0,6}", which in 0..5u8) {
        let ok = meta("gpu-mnist-mlp/1", "false", "relu");
        let bytes = match which {
            0 => safetensors_file(&meta(&s, "false", "relu"), &[W1, W2]),
            1 => safetensors_file(&meta("gpu-mnist-mlp/1", &s, "relu"), &[W1, W2]),
            2 => safetensors_file(&meta("gpu-mnist-mlp/1", "false", &s), &[W1, W2]),
            3 => safetensors_file(&ok, &[W1, W2, (&s, "F32", &[1])]),
            _ => safetensors_file(&ok, &[("w1", &s, &[1, 1]), W2]),
        };
        let r = checkpoint::parse(&bytes, Path::new("m.safetensors"));
        prop_assert!(r.is_err());
        check_model(&bytes)?;
    }
}

/// Found by the `model` fuzz target: a dtype holding a line break made the "not a safetensors
/// file" error (which quotes the JSON parser's message, and so the dtype) two lines.
#[test]
fn regression_model_dtype_with_a_line_break() {
    let header = br#"{"w2":{"dtype":"F\n","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    bytes.extend([0; 4]);
    let msg = checkpoint::parse(&bytes, Path::new("m.safetensors")).unwrap_err().to_string();
    let want = "m.safetensors: not a safetensors file (invalid JSON in header: unknown variant `F `";
    assert!(msg.starts_with(want), "{msg}");
    assert!(!msg.contains('\n'), "{msg:?}");
}

/// The same defect through the metadata: a `format`, `bias` or `activation` value, or an
/// unexpected tensor's name, holding a line break was quoted into a two-line error.
#[test]
fn regression_model_metadata_with_a_line_break() {
    let ok = meta("gpu-mnist-mlp/1", "false", "relu");
    let cases = [
        (safetensors_file(&meta("a\nb", "false", "relu"), &[W1, W2]), "format \"a b\""),
        (safetensors_file(&meta("gpu-mnist-mlp/1", "x\r\ny", "relu"), &[W1, W2]), "\"bias\" is \"x  y\""),
        (safetensors_file(&meta("gpu-mnist-mlp/1", "false", "re\nlu"), &[W1, W2]), "unknown activation \"re lu\""),
        (safetensors_file(&ok, &[W1, W2, ("x\ny", "F32", &[1])]), "unexpected tensor \"x y\""),
    ];
    for (bytes, want) in cases {
        let msg = checkpoint::parse(&bytes, Path::new("m.safetensors")).unwrap_err().to_string();
        assert!(msg.contains(want) && !msg.contains('\n'), "{want}: {msg:?}");
    }
    // And the same file with good strings loads.
    assert!(checkpoint::parse(&safetensors_file(&ok, &[W1, W2]), Path::new("m")).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Fuzz seeds

/// The seed corpora of the cargo-fuzz targets in `fuzz/seeds/<target>/` (small valid files of
/// every kind each parser takes) are the ones `write_fuzz_seeds` makes, and the valid ones parse.
/// `GPU_MNIST_WRITE_SEEDS=1 cargo test --test properties fuzz_seeds` writes them anew.
#[test]
fn the_fuzz_seeds_are_current_and_parse() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    if std::env::var_os("GPU_MNIST_WRITE_SEEDS").is_some() {
        write_fuzz_seeds(&committed);
        return;
    }
    let fresh = tempfile::tempdir().unwrap();
    write_fuzz_seeds(fresh.path());
    for target in ["idx", "csv", "model"] {
        let mut names: Vec<_> =
            std::fs::read_dir(fresh.path().join(target)).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for name in names {
            let (a, b) = (fresh.path().join(target).join(&name), committed.join(target).join(&name));
            let bytes = std::fs::read(&a).unwrap();
            assert_eq!(Some(&bytes), std::fs::read(&b).ok().as_ref(), "{} is stale", b.display());
            let first = name.to_string_lossy().contains("first");
            let ok = match target {
                "idx" if name.to_string_lossy().contains("labels") => parse_idx_labels(&bytes, &b).is_ok(),
                "idx" => parse_idx_images(&bytes, &b).is_ok(),
                "csv" => parse_csv(&bytes[..], &b).is_ok(),
                _ => checkpoint::parse(&bytes, &b).is_ok(),
            };
            // The "first" seeds are the real files' starts, whose headers claim more than follows.
            assert_eq!(ok, !first, "{} should {}parse", b.display(), if first { "not " } else { "" });
        }
    }
}

/// Writes the seed corpora into `root/<target>/`.
fn write_fuzz_seeds(root: &Path) {
    use std::io::Read;

    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let mnist = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    let head = |file: &str, len: u64| {
        let gz = std::fs::File::open(mnist.join(file)).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz).take(len).read_to_end(&mut out).unwrap();
        out
    };

    // IDX: the start of the real test files, as they are (a header that claims more than
    // follows) and with the count cut to what follows (valid); and tiny files, raw and gzipped.
    let labels = head("t10k-labels-idx1-ubyte.gz", 8 + 1000);
    write("idx", "t10k-labels-first-1000", &labels);
    let mut valid = labels.clone();
    valid[4..8].copy_from_slice(&1000u32.to_be_bytes());
    write("idx", "t10k-labels-1000", &valid);
    let images = head("t10k-images-idx3-ubyte.gz", 16 + 3 * 784);
    write("idx", "t10k-images-first-3", &images);
    let mut valid = images.clone();
    valid[4..8].copy_from_slice(&3u32.to_be_bytes());
    write("idx", "t10k-images-3", &valid);
    let tiny = Dataset { n: 2, rows: 2, cols: 3, pixels: (0..12).map(|i| i * 21).collect(), labels: vec![3, 9] };
    write("idx", "tiny-images", &idx_images(&tiny));
    write("idx", "tiny-labels", &idx_labels(&tiny));
    write("idx", "tiny-images.gz", &gzip(&idx_images(&tiny)));
    write("idx", "tiny-labels.gz", &gzip(&idx_labels(&tiny)));

    // CSV: every layout, LF and CRLF, and one row of a real 28x28 digit.
    let square = Dataset { n: 3, rows: 3, cols: 3, pixels: (0..27).map(|i| i * 9).collect(), labels: vec![0, 5, 9] };
    let layouts = [
        (CsvLayout::HeaderLabelled, "header-labelled"),
        (CsvLayout::HeaderUnlabelled, "header-unlabelled"),
        (CsvLayout::Labelled, "labelled"),
        (CsvLayout::Unlabelled, "unlabelled"),
    ];
    for (layout, name) in layouts {
        write("csv", &format!("{name}.csv"), to_csv(&square, layout, "\n", true).as_bytes());
    }
    let crlf =
        format!("\u{feff}{}", to_csv(&square, CsvLayout::HeaderLabelled, "\r\n", false).replace("label", "Label"));
    write("csv", "bom-crlf.csv", crlf.as_bytes());
    let digit = Dataset { n: 1, rows: 28, cols: 28, pixels: images[16..16 + 784].to_vec(), labels: vec![labels[8]] };
    write("csv", "mnist-digit.csv", to_csv(&digit, CsvLayout::Labelled, "\n", true).as_bytes());

    // Models: small ones with and without bias, saved by `checkpoint::save`.
    let provenance = Provenance {
        dataset: "mnist".into(),
        iterations: 100,
        backend: "cpu (2 threads)".into(),
        test_accuracy: 0.9,
        version: "0.1.0".into(),
    };
    let run = RunRecord { lr: Some(0.5), seed: Some(7), planned_iterations: Some(100), ..Default::default() };
    for (d, h, k, bias, activation) in [(4, 3, 2, true, Activation::Relu), (16, 5, 10, false, Activation::Sigmoid)] {
        let mut params = Params::init(Shape::new(d, &[h], k, bias), activation, 1);
        if bias {
            params.layers[0].b.iter_mut().for_each(|b| *b = 0.25);
        }
        let model = Model { params, activation, provenance: provenance.clone(), run: run.clone(), optimizer: None };
        write("model", &format!("d{d}-h{h}-k{k}-bias-{bias}.safetensors"), &model_bytes(&model));
    }
}
