//! MNIST's own last steps: crop to the ink, scale to fit a 20 x 20 box keeping the aspect ratio
//! (anti-aliased, as MNIST was), and place into 28 x 28 with the centre of mass of the grey
//! levels at the centre. Also the fitting of the digit to the larger box its strokes are
//! normalised in, with its levels stretched so that the body of its strokes is full ink.

use image::{GrayImage, Luma, imageops};

use super::SIDE;
use super::plane::Plane;

/// MNIST's digits fit a 20 x 20 box inside the 28 x 28 image.
const BOX: u32 = 20;
/// The share of the digit's ink pixels below the level taken as full ink.
const FULL: f32 = 0.9;

/// The inclusive bounding box of values above `above`, if any.
fn bounds(w: usize, h: usize, value: impl Fn(usize, usize) -> f32, above: f32) -> Option<(usize, usize, usize, usize)> {
    let mut b: Option<(usize, usize, usize, usize)> = None;
    for y in 0..h {
        for x in 0..w {
            if value(x, y) > above {
                b = Some(b.map_or((x, y, x, y), |(x0, y0, x1, y1)| (x0.min(x), y0.min(y), x1.max(x), y1.max(y))));
            }
        }
    }
    b
}

/// (width, height) of a `w x h` image scaled so its longer side is `side`, each at least 1.
fn fitted(w: u32, h: u32, side: u32) -> (u32, u32) {
    let scale = side as f32 / w.max(h).max(1) as f32;
    (((w as f32 * scale).round() as u32).clamp(1, side), ((h as f32 * scale).round() as u32).clamp(1, side))
}

/// The digit's ink cropped, stretched so the [`FULL`] level is 255, and scaled to fit a
/// `side x side` box; `None` when the plane holds no ink.
pub(super) fn boxed(ink: &Plane, side: u32) -> Option<GrayImage> {
    let (x0, y0, x1, y1) = bounds(ink.w, ink.h, |x, y| ink.v[y * ink.w + x], 0.0)?;
    let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
    let mut levels: Vec<f32> = ink.v.iter().copied().filter(|&v| v > 0.0).collect();
    levels.sort_unstable_by(f32::total_cmp);
    let full = levels.get(((levels.len() as f32 * FULL) as usize).min(levels.len().saturating_sub(1))).copied()?;
    let gain = 255.0 / full.max(1e-3);
    let crop = GrayImage::from_fn(cw as u32, ch as u32, |x, y| {
        let v = ink.v[(y0 + y as usize) * ink.w + x0 + x as usize];
        Luma([(v * gain).round().clamp(0.0, 255.0) as u8])
    });
    let (nw, nh) = fitted(cw as u32, ch as u32, side);
    Some(imageops::resize(&crop, nw, nh, imageops::FilterType::Triangle))
}

/// MNIST's 28 x 28 input from the digit `img` (0 = background): crop, fit 20 x 20, centre of
/// mass at the centre. `None` when `img` holds no ink.
pub(super) fn mnist(img: &GrayImage) -> Option<Vec<u8>> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (x0, y0, x1, y1) = bounds(w, h, |x, y| img.as_raw()[y * w + x] as f32, 0.0)?;
    let crop = imageops::crop_imm(img, x0 as u32, y0 as u32, (x1 - x0 + 1) as u32, (y1 - y0 + 1) as u32).to_image();
    let (nw, nh) = fitted(crop.width(), crop.height(), BOX);
    let small = imageops::resize(&crop, nw, nh, imageops::FilterType::Triangle);
    let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in small.enumerate_pixels() {
        let v = p[0] as f64;
        (mass, mx, my) = (mass + v, mx + v * (x as f64 + 0.5), my + v * (y as f64 + 0.5));
    }
    let (cx, cy) = if mass > 0.0 { (mx / mass, my / mass) } else { (nw as f64 / 2.0, nh as f64 / 2.0) };
    let centre = SIDE as f64 / 2.0;
    let ox = ((centre - cx).round() as i64).clamp(0, (SIDE - nw) as i64);
    let oy = ((centre - cy).round() as i64).clamp(0, (SIDE - nh) as i64);
    let mut out = GrayImage::new(SIDE, SIDE);
    imageops::overlay(&mut out, &small, ox, oy);
    Some(out.into_raw())
}
