//! Which ink is the digit: a threshold, the connected pieces of ink, and the pieces kept.
//!
//! The threshold is half of Otsu's on the flattened ink (so that a stroke's soft edge stays
//! with it), never below [`FLOOR`] of the strongest ink. Pieces are 8-connected. The digit is
//! the piece holding the most ink, plus the pieces that are big and near (a digit drawn in two
//! strokes, a broken stroke) or of a fair size and touching distance; specks, dirt and the
//! remains of rules are smaller than that or far away. Ink outside the kept pieces becomes 0,
//! except the one-pixel rim around them, which holds their anti-aliasing.

use super::plane::Plane;

/// The lowest threshold, as a fraction of the strongest ink: below it is paper texture.
const FLOOR: f32 = 0.12;
/// A piece holding at least this share of the main piece's ink is kept within
/// `BIG_REACH` of the digit's extent, one holding at least `NEAR_SHARE` within `NEAR_REACH`.
const BIG_SHARE: f32 = 0.2;
const BIG_REACH: f32 = 0.6;
const NEAR_SHARE: f32 = 0.05;
const NEAR_REACH: f32 = 0.15;

/// One connected piece of ink.
#[derive(Clone, Copy, Debug)]
struct Piece {
    ink: f32,
    /// Inclusive bounding box.
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
}

/// Otsu's threshold on `values` in [0, 1], over 256 bins.
fn otsu(values: &[f32]) -> f32 {
    let mut hist = [0u32; 256];
    for &v in values {
        hist[(v.clamp(0.0, 1.0) * 255.0) as usize] += 1;
    }
    let total = values.len() as f64;
    let sum: f64 = hist.iter().enumerate().map(|(i, &n)| i as f64 * n as f64).sum();
    let (mut below, mut below_sum, mut best, mut best_t) = (0.0f64, 0.0f64, -1.0f64, 0usize);
    for (t, &n) in hist.iter().enumerate() {
        below += n as f64;
        below_sum += t as f64 * n as f64;
        let above = total - below;
        if below == 0.0 || above == 0.0 {
            continue;
        }
        let (m0, m1) = (below_sum / below, (sum - below_sum) / above);
        let between = below * above * (m0 - m1) * (m0 - m1);
        if between > best {
            (best, best_t) = (between, t);
        }
    }
    (best_t as f32 + 0.5) / 255.0
}

/// The digit's ink: `ink` with everything but the digit's pieces set to 0, or `None` when no
/// ink reaches the threshold.
pub(super) fn digit(ink: &Plane) -> Option<Plane> {
    let strongest = ink.max();
    if strongest <= 0.0 {
        return None;
    }
    let threshold = (0.5 * otsu(&ink.v)).max(FLOOR * strongest);
    let (w, h) = (ink.w, ink.h);
    // Label the pieces by flood fill.
    let mut label = vec![u32::MAX; w * h];
    let mut pieces: Vec<Piece> = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if label[start] != u32::MAX || ink.v[start] < threshold {
            continue;
        }
        let id = pieces.len() as u32;
        let (sx, sy) = (start % w, start / w);
        let mut piece = Piece { ink: 0.0, x0: sx, y0: sy, x1: sx, y1: sy };
        label[start] = id;
        stack.push(start);
        while let Some(k) = stack.pop() {
            let (x, y) = (k % w, k / w);
            piece.ink += ink.v[k];
            (piece.x0, piece.y0, piece.x1, piece.y1) =
                (piece.x0.min(x), piece.y0.min(y), piece.x1.max(x), piece.y1.max(y));
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let n = ny * w + nx;
                    if label[n] == u32::MAX && ink.v[n] >= threshold {
                        label[n] = id;
                        stack.push(n);
                    }
                }
            }
        }
        pieces.push(piece);
    }
    let main = (0..pieces.len()).max_by(|&a, &b| pieces[a].ink.total_cmp(&pieces[b].ink))?;
    let mut kept = vec![false; pieces.len()];
    kept[main] = true;
    let mut bbox = pieces[main];
    loop {
        let extent = (bbox.x1 - bbox.x0).max(bbox.y1 - bbox.y0) as f32 + 1.0;
        let mut grew = false;
        for (i, p) in pieces.iter().enumerate() {
            if kept[i] {
                continue;
            }
            let gap_x = p.x0.saturating_sub(bbox.x1).max(bbox.x0.saturating_sub(p.x1));
            let gap_y = p.y0.saturating_sub(bbox.y1).max(bbox.y0.saturating_sub(p.y1));
            let gap = gap_x.max(gap_y) as f32;
            let share = p.ink / pieces[main].ink;
            let big = share >= BIG_SHARE && gap <= BIG_REACH * extent;
            if big || (share >= NEAR_SHARE && gap <= NEAR_REACH * extent) {
                kept[i] = true;
                grew = true;
                (bbox.x0, bbox.y0, bbox.x1, bbox.y1) =
                    (bbox.x0.min(p.x0), bbox.y0.min(p.y0), bbox.x1.max(p.x1), bbox.y1.max(p.y1));
            }
        }
        if !grew {
            break;
        }
    }
    let inside = |k: usize| label[k] != u32::MAX && kept[label[k] as usize];
    let mut out = Plane::filled(w, h, 0.0);
    for y in 0..h {
        for x in 0..w {
            let near = (y.saturating_sub(1)..=(y + 1).min(h - 1))
                .any(|ny| (x.saturating_sub(1)..=(x + 1).min(w - 1)).any(|nx| inside(ny * w + nx)));
            if near {
                out.v[y * w + x] = ink.v[y * w + x];
            }
        }
    }
    Some(out)
}
