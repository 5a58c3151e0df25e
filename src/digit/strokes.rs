//! Stroke width, made like MNIST's.
//!
//! MNIST's writers used pens whose strokes, once the digit fits its 20 x 20 box, are about 2
//! pixels wide (1.1 to 3 for nine digits in ten), and the shipped model knows no others: a marker's strokes fill the box into a blot, a
//! fine pen's fade to a grey hairline when the digit is shrunk. So the digit is first fitted to
//! a [`SIDE`] x [`SIDE`] box (4 times MNIST's) and its stroke width measured there as
//! `2 * area / edges` of its ink above half strength (a stroke of width `w` and length `l` has
//! area `w l` and about `2 l` edge pixels along it). A width outside [`THIN`]..[`THICK`] times
//! MNIST's ([`TARGET`], measured the same way on MNIST's test digits) is brought back towards
//! MNIST's by a grey dilation or erosion of the needed radius; widths inside are left alone,
//! since MNIST's own vary that much.

use image::GrayImage;

use super::plane::Plane;

/// The side of the box the digit is fitted to for its strokes to be measured and changed.
pub(super) const SIDE: u32 = 80;
/// MNIST's median stroke width at `SIDE`, by [`width`] (test digits: 5% are below 4.6, 95%
/// below 11.9).
const TARGET: f32 = 7.5;
/// Strokes thinner than `THIN * TARGET` are thickened, thicker than `THICK * TARGET` thinned:
/// about MNIST's 5th and 95th percentiles.
const THIN: f32 = 0.6;
const THICK: f32 = 1.6;
/// The largest radius of the dilation or erosion, in pixels at `SIDE`.
const MOST: usize = 8;

/// The stroke width of the ink above half strength, in pixels; 0 without such ink.
pub(super) fn width(img: &GrayImage) -> f32 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let on = |x: usize, y: usize| img.as_raw()[y * w + x] >= 128;
    let (mut area, mut edges) = (0usize, 0usize);
    for y in 0..h {
        for x in 0..w {
            if !on(x, y) {
                continue;
            }
            area += 1;
            edges += (x == 0 || !on(x - 1, y)) as usize
                + (x + 1 == w || !on(x + 1, y)) as usize
                + (y == 0 || !on(x, y - 1)) as usize
                + (y + 1 == h || !on(x, y + 1)) as usize;
        }
    }
    if edges == 0 { 0.0 } else { 2.0 * area as f32 / edges as f32 }
}

/// `img` (fitted to `SIDE`) with its strokes brought towards MNIST's width.
pub(super) fn normalise(img: GrayImage) -> GrayImage {
    let stroke = width(&img);
    let (radius, thicken) = if stroke <= 0.0 {
        return img;
    } else if stroke < THIN * TARGET {
        (((TARGET - stroke) / 2.0).round() as usize, true)
    } else if stroke > THICK * TARGET {
        // Never thinner than MNIST's, and never down to nothing.
        let by = ((stroke - TARGET) / 2.0).min(stroke / 2.0 - 2.0);
        (by.max(0.0).round() as usize, false)
    } else {
        return img;
    };
    let radius = radius.min(MOST);
    if radius == 0 {
        return img;
    }
    let (w, h) = (img.width(), img.height());
    // Room around the digit for a dilation to grow into, and paper for an erosion to eat from.
    let pad = radius as u32;
    let (pw, ph) = ((w + 2 * pad) as usize, (h + 2 * pad) as usize);
    let mut plane = Plane::filled(pw, ph, 0.0);
    for (x, y, p) in img.enumerate_pixels() {
        plane.v[(y + pad) as usize * pw + (x + pad) as usize] = p[0] as f32;
    }
    let changed = plane.filtered(radius, thicken);
    let raw = changed.v.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8).collect();
    GrayImage::from_raw(pw as u32, ph as u32, raw).unwrap_or(img)
}
