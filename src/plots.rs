//! Pictures people look at rather than read: the training curve, the confusion matrix as a heat
//! map with counts, a grid of the worst misclassified digits, and the first layer's weights as
//! one tile per hidden unit. PNGs drawn with plotters; text
//! uses DejaVu Sans, shipped in `data/fonts/` (see its licence there), so no system font is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::model::Params;

const FONT: &str = "sans-serif";

#[derive(Debug, thiserror::Error)]
#[error("{}: cannot draw the plot: {reason}", path.display())]
pub struct PlotError {
    path: PathBuf,
    reason: String,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped with the sources; if registering ever
        // failed, text would be missing from the plots, nothing else.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, include_bytes!("../data/fonts/DejaVuSans.ttf"));
    });
}

/// One report point of a training run.
#[derive(Clone, Copy, Debug)]
pub struct CurvePoint {
    pub iteration: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    pub validation_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
}

/// Runs `draw` on a white `size` PNG at `path`, turning plotters' errors into a `PlotError`.
fn png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), PlotError> {
    register_font();
    let err = |reason: String| PlotError { path: path.to_path_buf(), reason };
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    draw(&root).map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Loss (top) and train/test accuracy (bottom) against the iteration.
pub fn training_curve(path: &Path, points: &[CurvePoint]) -> Result<(), PlotError> {
    let last = points.last().map_or(1, |p| p.iteration).max(1) as f64;
    let max_loss = points.iter().map(|p| p.loss).fold(0.0, f64::max).max(1e-3) * 1.05;
    let accs = points.iter().flat_map(|p| [Some(p.train_accuracy), p.validation_accuracy, p.test_accuracy]).flatten();
    let min_acc = (accs.fold(1.0, f64::min) * 10.0).floor() / 10.0;
    png(path, (900, 720), |root| {
        let (top, bottom) = root.split_vertically(360);
        let mut loss = ChartBuilder::on(&top)
            .caption("Training loss", (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..last, 0.0..max_loss)?;
        loss.configure_mesh()
            .x_desc("iteration")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("mean cross-entropy")
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        loss.draw_series(LineSeries::new(points.iter().map(|p| (p.iteration as f64, p.loss)), RED.stroke_width(2)))?
            .label("training set")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        loss.configure_series_labels().label_font((FONT, 14)).border_style(BLACK).background_style(WHITE).draw()?;
        let mut acc = ChartBuilder::on(&bottom)
            .caption("Accuracy", (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..last, min_acc..1.0)?;
        acc.configure_mesh()
            .x_desc("iteration")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("accuracy")
            .y_label_formatter(&|v| format!("{:.0}%", 100.0 * v))
            .label_style((FONT, 14))
            .axis_desc_style((FONT, 16))
            .draw()?;
        let train = points.iter().map(|p| (p.iteration as f64, p.train_accuracy));
        acc.draw_series(LineSeries::new(train, BLUE.stroke_width(2)))?
            .label("training set")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        let held_out = [
            ("validation set", MAGENTA, points.iter().map(|p| p.validation_accuracy).collect::<Vec<_>>()),
            ("test set", GREEN, points.iter().map(|p| p.test_accuracy).collect()),
        ];
        for (name, colour, accuracy) in held_out {
            let line: Vec<(f64, f64)> =
                points.iter().zip(accuracy).filter_map(|(p, a)| a.map(|a| (p.iteration as f64, a))).collect();
            if !line.is_empty() {
                acc.draw_series(LineSeries::new(line, colour.stroke_width(2)))?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
            }
        }
        acc.configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 14))
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        Ok(())
    })
}

/// `confusion[true][predicted]` as a heat map with the counts written in the cells; each row is
/// shaded by its share of the true class, so mistakes stand out whatever the class sizes. Axes show
/// class numbers; class names other than the numbers themselves are listed under the matrix.
pub fn confusion_matrix(path: &Path, confusion: &[Vec<usize>], names: &[&str]) -> Result<(), PlotError> {
    let k = confusion.len();
    let cell = 56i32;
    let (left, top) = (90i32, 70i32);
    let named = names.iter().enumerate().any(|(c, n)| *n != c.to_string());
    let legend: Vec<String> = names.iter().enumerate().map(|(c, n)| format!("{c} {n}")).collect();
    let legend =
        if named { [legend[..k.min(5)].join(", "), legend[k.min(5)..].join(", ")] } else { Default::default() };
    let side = (left + cell * k as i32 + 30, top + cell * k as i32 + 70 + if named { 50 } else { 0 });
    png(path, (side.0 as u32, side.1 as u32), |root| {
        let text = |size| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new("Confusion matrix (rows: true class, columns: predicted)", (side.0 / 2, 25), text(20)))?;
        for (i, line) in legend.iter().enumerate() {
            root.draw(&Text::new(line.as_str(), (side.0 / 2, top + cell * k as i32 + 75 + 22 * i as i32), text(14)))?;
        }
        for (t, row) in confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (p, &count) in row.iter().enumerate() {
                let share = count as f64 / total;
                let shade = if t == p { share } else { (share * 8.0).min(1.0) };
                let colour = if t == p {
                    RGBColor((255.0 - 200.0 * shade) as u8, (255.0 - 120.0 * shade) as u8, 255)
                } else {
                    RGBColor(255, (255.0 - 170.0 * shade) as u8, (255.0 - 200.0 * shade) as u8)
                };
                let (x, y) = (left + cell * p as i32, top + cell * t as i32);
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], colour.filled()))?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK.mix(0.2)))?;
                root.draw(&Text::new(count.to_string(), (x + cell / 2, y + cell / 2), text(15)))?;
            }
            root.draw(&Text::new(t.to_string(), (left - 20, top + cell * t as i32 + cell / 2), text(16)))?;
            root.draw(&Text::new(
                t.to_string(),
                (left + cell * t as i32 + cell / 2, top + cell * k as i32 + 18),
                text(16),
            ))?;
        }
        root.draw(&Text::new("predicted", (left + cell * k as i32 / 2, top + cell * k as i32 + 45), text(18)))?;
        root.draw(&Text::new("true", (30, top + cell * k as i32 / 2), text(18)))?;
        Ok(())
    })
}

/// One misclassified image: its square of pixels, true and predicted class, and the probability the
/// model gave its prediction.
pub struct Mistake<'a> {
    pub pixels: &'a [u8],
    pub truth: usize,
    pub predicted: usize,
    pub probability: f32,
}

/// The images in a grid, each captioned "true -> predicted (p = ...)" with `names`, drawn dark on
/// white.
pub fn mistakes_grid(path: &Path, mistakes: &[Mistake], names: &[&str], columns: usize) -> Result<(), PlotError> {
    let (scale, gap, caption) = (4i32, 14i32, 26i32);
    let pixels_per_side = mistakes.first().map_or(28, |m| (m.pixels.len() as f64).sqrt() as usize).max(1);
    let side = (28 * scale).max(pixels_per_side as i32);
    let scale = (side / pixels_per_side as i32).max(1);
    let name = |c: usize| names.get(c).map_or(c.to_string(), |n| n.to_string());
    let label = |m: &Mistake| format!("{} -> {} (p = {:.2})", name(m.truth), name(m.predicted), m.probability);
    // Captions at 13 px are about 7 px per character.
    let cell = mistakes.iter().map(|m| 7 * label(m).len() as i32).fold(side, i32::max);
    let columns = columns.max(1);
    let rows = mistakes.len().div_ceil(columns).max(1);
    let width = columns as i32 * (cell + gap) + gap;
    let height = 50 + rows as i32 * (side + caption + gap);
    png(path, (width as u32, height as u32), |root| {
        let centred = |size| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(
            "Most confident mistakes on the test set: true -> predicted (p = probability)",
            (width / 2, 14),
            centred(18),
        ))?;
        for (i, m) in mistakes.iter().enumerate() {
            let x0 = gap + (i % columns) as i32 * (cell + gap) + (cell - side) / 2;
            let y0 = 50 + (i / columns) as i32 * (side + caption + gap);
            for (j, &v) in m.pixels.iter().enumerate() {
                let (col, row) = ((j % pixels_per_side) as i32, (j / pixels_per_side) as i32);
                let (x, y) = (x0 + col * scale, y0 + row * scale);
                let g = 255 - v;
                root.draw(&Rectangle::new([(x, y), (x + scale, y + scale)], RGBColor(g, g, g).filled()))?;
            }
            root.draw(&Rectangle::new([(x0, y0), (x0 + side, y0 + side)], BLACK.mix(0.3)))?;
            root.draw(&Text::new(label(m), (x0 + side / 2, y0 + side + 5), centred(13)))?;
        }
        Ok(())
    })
}

/// The diverging colour of `v` in [-1, 1]: blue below 0, white at 0, red above (ColorBrewer's
/// RdBu ends).
fn diverging(v: f32) -> RGBColor {
    let (end, t) = if v < 0.0 { ((33.0, 102.0, 172.0), -v) } else { ((178.0, 24.0, 43.0), v) };
    let t = t.clamp(0.0, 1.0);
    let mix = |e: f32| (255.0 + (e - 255.0) * t).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// The first layer's hidden units in the order `weight_tiles` draws them: by how much each
/// feeds the next layer (the L2 norm of its outgoing weights), largest first; ties by index.
pub fn units_by_contribution(params: &Params) -> Vec<usize> {
    let norm = contributions(params);
    let mut units: Vec<usize> = (0..norm.len()).collect();
    units.sort_by(|&a, &b| norm[b].total_cmp(&norm[a]).then(a.cmp(&b)));
    units
}

/// How much each first-layer hidden unit feeds the next layer: the L2 norm of its outgoing weights.
pub fn contributions(params: &Params) -> Vec<f32> {
    let h = params.shape.layer(0).1;
    let next = &params.layers[1];
    let out = params.shape.layer(1).1;
    (0..h).map(|j| next.w[j * out..(j + 1) * out].iter().map(|w| w * w).sum::<f32>().sqrt()).collect()
}

/// The most tiles `weight_tiles` draws (the units that contribute most).
pub const MOST_TILES: usize = 1024;

/// Every first-layer hidden unit's incoming weights as an image of the input's shape (28x28 for
/// MNIST) in a grid, sorted by `units_by_contribution`, in a diverging colour map whose scale
/// (the largest |weight|) the title states, with a colour bar.
pub fn weight_tiles(path: &Path, params: &Params) -> Result<(), PlotError> {
    let (d, h) = params.shape.layer(0);
    let w = &params.layers[0].w;
    let side = ((d as f64).sqrt().round() as usize).max(1);
    let rows_per_tile = d.div_ceil(side);
    let units: Vec<usize> = units_by_contribution(params).into_iter().take(MOST_TILES).collect();
    let scale_max = w.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    let px = if units.len() > 256 { 2 } else { 3 };
    let gap = 4i32;
    let columns = ((units.len() as f64).sqrt().ceil() as usize).max(1);
    let grid_rows = units.len().div_ceil(columns);
    let (tile_w, tile_h) = ((side * px) as i32, (rows_per_tile * px) as i32);
    let width = (gap + columns as i32 * (tile_w + gap)).max(640);
    let top = 64;
    let height = top + grid_rows as i32 * (tile_h + gap) + gap + 50;
    png(path, (width as u32, height as u32), |root| {
        let centred = |size| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        let shown =
            if units.len() < h { format!(" (the {} that contribute most)", units.len()) } else { String::new() };
        let title = format!("Incoming weights of the {h} first-layer hidden units{shown}, by contribution");
        root.draw(&Text::new(title, (width / 2, 10), centred(17)))?;
        let sub = format!("blue -{scale_max:.3}  white 0  red +{scale_max:.3}; contribution = |outgoing weights|");
        root.draw(&Text::new(sub, (width / 2, 36), centred(13)))?;
        for (n, &j) in units.iter().enumerate() {
            let x0 = gap + (n % columns) as i32 * (tile_w + gap);
            let y0 = top + (n / columns) as i32 * (tile_h + gap);
            for i in 0..d {
                let (x, y) = (x0 + ((i % side) * px) as i32, y0 + ((i / side) * px) as i32);
                let colour = diverging(w[i * h + j] / scale_max);
                root.draw(&Rectangle::new([(x, y), (x + px as i32, y + px as i32)], colour.filled()))?;
            }
        }
        // The colour bar, -scale to +scale, under the grid.
        let (bar_x, bar_y, bar_w) = (width / 4, height - 40, width / 2);
        for x in 0..bar_w {
            let v = 2.0 * x as f32 / (bar_w - 1).max(1) as f32 - 1.0;
            root.draw(&Rectangle::new([(bar_x + x, bar_y), (bar_x + x + 1, bar_y + 14)], diverging(v).filled()))?;
        }
        let label = |x, t: String| Text::new(t, (x, bar_y + 18), centred(12));
        root.draw(&label(bar_x, format!("-{scale_max:.3}")))?;
        root.draw(&label(bar_x + bar_w / 2, "0".into()))?;
        root.draw(&label(bar_x + bar_w, format!("+{scale_max:.3}")))?;
        Ok(())
    })
}
