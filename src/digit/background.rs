//! The paper: which way round the image is, and how bright the paper is under every pixel, so
//! that uneven light and shadows do not look like ink.
//!
//! - Polarity. The median of the image's border is the paper (the digit rarely covers half of
//!   it). Dark ink on light paper is by far the common case, so the image counts as light paper
//!   unless that median lies in the darkest 35% of the image's range: a page half in shadow still
//!   has a light background, a blackboard or an MNIST-like image does not.
//! - Working resolution. The photo is averaged down in square blocks until its longer side is at
//!   most [`WORK`] pixels, which bounds the time every later stage takes (a 1000 x 1000 photo is
//!   read in 4 x 4 blocks) while keeping a fine pen's strokes.
//! - Paper estimate. With ink counted upwards (0 = white paper), the paper is the lower envelope
//!   of the image: a grey opening (minimum, then maximum filter) on a coarse grid of block means,
//!   with a window about a quarter of the image. Strokes, rules and specks are far narrower than
//!   that window and vanish from the estimate; a gradient of light is kept exactly (an opening
//!   keeps linear ramps) and a shadow's plateau and soft edges nearly so.
//! - Flattening. `ink = (raw - paper) / (255 - paper)`: for dark ink that is `(P - v) / P`, the
//!   fraction of the light the ink absorbs, the same in a shadow as in full light.

use image::GrayImage;

use super::plane::Plane;

/// The longest side of the working image.
pub(super) const WORK: usize = 256;
/// The longest side of the grid the paper is estimated on.
const GRID: usize = 48;
/// Where the border's median must lie, as a fraction of the image's range from its darkest
/// pixel, for the background to count as light.
const LIGHT_PAPER: f32 = 0.35;

/// Whether the image is dark ink on a light background (and so is inverted).
pub(super) fn light_background(grey: &GrayImage) -> bool {
    let (w, h) = grey.dimensions();
    let mut border: Vec<u8> = Vec::with_capacity(2 * (w + h) as usize);
    for x in 0..w {
        border.push(grey.get_pixel(x, 0)[0]);
        border.push(grey.get_pixel(x, h - 1)[0]);
    }
    for y in 0..h {
        border.push(grey.get_pixel(0, y)[0]);
        border.push(grey.get_pixel(w - 1, y)[0]);
    }
    border.sort_unstable();
    let median = border.get(border.len() / 2).copied().unwrap_or(255) as f32;
    let (lo, hi) = grey.pixels().fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[0]), hi.max(p[0])));
    if hi <= lo {
        return median > 127.0;
    }
    median >= lo as f32 + LIGHT_PAPER * (hi - lo) as f32
}

/// The image at the working resolution with ink counted upwards: 0 is the lightest paper
/// (`inverted`) or the darkest background.
pub(super) fn working(grey: &GrayImage, inverted: bool) -> Plane {
    let (w, h) = (grey.width() as usize, grey.height() as usize);
    let f = w.max(h).div_ceil(WORK).max(1);
    let (ww, wh) = (w.div_ceil(f), h.div_ceil(f));
    // Block sums straight from the bytes: a huge photo never exists as floats.
    let mut sums = vec![0u32; ww * wh];
    for (y, row) in grey.as_raw().chunks_exact(w.max(1)).enumerate() {
        let out = &mut sums[(y / f) * ww..(y / f + 1) * ww];
        for (sum, block) in out.iter_mut().zip(row.chunks(f)) {
            *sum += block.iter().map(|&p| p as u32).sum::<u32>();
        }
    }
    let v = (0..ww * wh)
        .map(|k| {
            let (bx, by) = (k % ww, k / ww);
            let n = (((bx + 1) * f).min(w) - bx * f) * (((by + 1) * f).min(h) - by * f);
            let mean = sums[k] as f32 / n.max(1) as f32;
            if inverted { 255.0 - mean } else { mean }
        })
        .collect();
    Plane { w: ww, h: wh, v }
}

/// The paper under every pixel of `raw`, in `raw`'s units.
pub(super) fn paper(raw: &Plane) -> Plane {
    let g = raw.w.max(raw.h).div_ceil(GRID).max(1);
    let coarse = raw.pooled(g);
    let r = (coarse.w.max(coarse.h) / 8).max(1);
    let opened = coarse.filtered(r, false).filtered(r, true);
    opened.enlarged(raw.w, raw.h)
}

/// `raw` flattened against `paper`: ink in [0, 1], 0 on paper. Also the strongest ink above the
/// paper, in grey levels.
pub(super) fn flatten(raw: &Plane, paper: &Plane) -> (Plane, f32) {
    let mut contrast = 0.0f32;
    let v = raw
        .v
        .iter()
        .zip(&paper.v)
        .map(|(&v, &p)| {
            contrast = contrast.max(v - p);
            ((v - p) / (255.0 - p).max(1.0)).clamp(0.0, 1.0)
        })
        .collect();
    (Plane { w: raw.w, h: raw.h, v }, contrast)
}
