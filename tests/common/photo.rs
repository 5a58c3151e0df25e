//! Synthetic photos of MNIST test digits under the conditions real photos of handwriting bring:
//! marker and fine-pen strokes, uneven light, shadows, ruled and squared paper, dirt, a digit cut
//! by the edge of the picture and a slightly turned page. `tests/predict.rs` reads them through
//! `predict`; `tests/images/` keeps one example of each.
//!
//! A photo is made as a camera sees paper: ink coverage `a` in [0, 1] (the MNIST digit scaled up,
//! then thickened, thinned or turned), a reflectance `1 - 0.88 a` multiplied by that of the rules
//! and specks, times an illumination (255, or falling across the page, or shadowed). Everything
//! is deterministic: the "random" choices come from a small hash of the digit's index.

use image::{GrayImage, Luma, imageops};

/// What a photo suffers from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Dark ink on white paper, nothing else.
    Clean,
    /// A felt marker: strokes about twice MNIST's width.
    Thick,
    /// A fine pen or a pencil: strokes 3 pixels wide on a digit 150 pixels tall, not always black.
    Thin,
    /// Light falling from 255 to about 110 across the page, in some direction.
    Gradient,
    /// A soft shadow (a half page or a blob) darkening part of the page and digit by 40-55%.
    Shadow,
    /// Ruled paper: grey horizontal lines every 25-35 pixels, across the digit.
    Ruled,
    /// Squared paper: a grey grid of 18-26 pixel squares.
    Squared,
    /// Dirt: 15-40 dark dots of radius 0.7-2.5 pixels anywhere on the page.
    Specks,
    /// The picture's edge touches the digit or cuts up to a tenth of it off.
    Border,
    /// The digit turned by 6-12 degrees either way.
    Rotated,
}

impl Condition {
    pub const ALL: [Condition; 10] = [
        Condition::Clean,
        Condition::Thick,
        Condition::Thin,
        Condition::Gradient,
        Condition::Shadow,
        Condition::Ruled,
        Condition::Squared,
        Condition::Specks,
        Condition::Border,
        Condition::Rotated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Condition::Clean => "clean",
            Condition::Thick => "thick",
            Condition::Thin => "thin",
            Condition::Gradient => "gradient",
            Condition::Shadow => "shadow",
            Condition::Ruled => "ruled",
            Condition::Squared => "squared",
            Condition::Specks => "specks",
            Condition::Border => "border",
            Condition::Rotated => "rotated",
        }
    }
}

/// A number in [0, 1) from `i` and `salt` (splitmix64).
pub fn hash(i: usize, salt: u64) -> f32 {
    let mut z = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 / (1u64 << 24) as f32
}

/// Ink coverage in [0, 1], row-major.
#[derive(Clone)]
struct Cover {
    w: usize,
    h: usize,
    a: Vec<f32>,
}

impl Cover {
    fn at(&self, x: i64, y: i64) -> f32 {
        if x < 0 || y < 0 || x >= self.w as i64 || y >= self.h as i64 {
            0.0
        } else {
            self.a[y as usize * self.w + x as usize]
        }
    }

    /// Bilinear sample at (x, y) in pixel-centre coordinates.
    fn sample(&self, x: f32, y: f32) -> f32 {
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let top = self.at(x0, y0) * (1.0 - fx) + self.at(x0 + 1, y0) * fx;
        let bottom = self.at(x0, y0 + 1) * (1.0 - fx) + self.at(x0 + 1, y0 + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    }

    /// The largest coverage within a disc of `r` pixels: a wider pen.
    fn dilate(&self, r: f32) -> Cover {
        let ri = r.ceil() as i64;
        let offsets: Vec<(i64, i64)> = (-ri..=ri)
            .flat_map(|dy| (-ri..=ri).map(move |dx| (dx, dy)))
            .filter(|(dx, dy)| ((dx * dx + dy * dy) as f32) <= r * r + 0.25)
            .collect();
        let mut a = vec![0.0; self.w * self.h];
        for y in 0..self.h as i64 {
            for x in 0..self.w as i64 {
                a[y as usize * self.w + x as usize] =
                    offsets.iter().map(|(dx, dy)| self.at(x + dx, y + dy)).fold(0.0, f32::max);
            }
        }
        Cover { a, ..*self }
    }

    /// The one-pixel skeleton of `a >= 0.5` (Zhang and Suen's thinning).
    fn skeleton(&self) -> Cover {
        let (w, h) = (self.w, self.h);
        let mut on: Vec<bool> = self.a.iter().map(|&v| v >= 0.5).collect();
        let get = |on: &[bool], x: i64, y: i64| {
            x >= 0 && y >= 0 && x < w as i64 && y < h as i64 && on[y as usize * w + x as usize]
        };
        loop {
            let mut changed = false;
            for pass in 0..2 {
                let mut off = Vec::new();
                for y in 0..h as i64 {
                    for x in 0..w as i64 {
                        if !get(&on, x, y) {
                            continue;
                        }
                        // P2..P9 clockwise from north.
                        let p = [(0, -1), (1, -1), (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1)]
                            .map(|(dx, dy)| get(&on, x + dx, y + dy));
                        let b = p.iter().filter(|&&v| v).count();
                        let a = (0..8).filter(|&k| !p[k] && p[(k + 1) % 8]).count();
                        let (c, d) = if pass == 0 {
                            (p[0] && p[2] && p[4], p[2] && p[4] && p[6])
                        } else {
                            (p[0] && p[2] && p[6], p[0] && p[4] && p[6])
                        };
                        if (2..=6).contains(&b) && a == 1 && !c && !d {
                            off.push(y as usize * w + x as usize);
                        }
                    }
                }
                changed |= !off.is_empty();
                off.into_iter().for_each(|k| on[k] = false);
            }
            if !changed {
                break;
            }
        }
        Cover { a: on.into_iter().map(|v| v as u8 as f32).collect(), ..*self }
    }

    /// Turned by `degrees` about its centre, on a canvas `pad` pixels larger each side.
    fn rotate(&self, degrees: f32, pad: usize) -> Cover {
        let (w, h) = (self.w + 2 * pad, self.h + 2 * pad);
        let (s, c) = degrees.to_radians().sin_cos();
        let (cx, cy) = (w as f32 / 2.0 - 0.5, h as f32 / 2.0 - 0.5);
        let (sx, sy) = (self.w as f32 / 2.0 - 0.5, self.h as f32 / 2.0 - 0.5);
        let mut a = vec![0.0; w * h];
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                a[y * w + x] = self.sample(sx + c * dx + s * dy, sy - s * dx + c * dy);
            }
        }
        Cover { w, h, a }
    }

    /// The bounding box (x0, y0, x1, y1) of coverage above 0.1, inclusive.
    fn bbox(&self) -> (usize, usize, usize, usize) {
        let (mut x0, mut y0, mut x1, mut y1) = (self.w, self.h, 0, 0);
        for y in 0..self.h {
            for x in 0..self.w {
                if self.a[y * self.w + x] > 0.1 {
                    (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
                }
            }
        }
        (x0, y0, x1, y1)
    }
}

/// MNIST digit `pixels` (28x28, light on dark) scaled up `scale` times as coverage.
fn scaled(pixels: &[u8], scale: u32) -> Cover {
    let small = GrayImage::from_raw(28, 28, pixels.to_vec()).expect("28x28");
    let big = imageops::resize(&small, 28 * scale, 28 * scale, imageops::FilterType::Triangle);
    let side = (28 * scale) as usize;
    Cover { w: side, h: side, a: big.pixels().map(|p| p[0] as f32 / 255.0).collect() }
}

fn smoothstep(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// MNIST digit `pixels` photographed under `condition`; `i` picks the sizes, places and angles.
pub fn photo(pixels: &[u8], i: usize, condition: Condition) -> GrayImage {
    let r = |salt: u64| hash(i, salt);
    let scale = match condition {
        Condition::Thin => 5 + (r(1) * 2.0) as u32,
        _ => 3 + (r(1) * 4.0) as u32,
    };
    let mut cover = scaled(pixels, scale);
    // Ink darkness: 1 is black ink on white paper.
    let mut darkness = 1.0;
    match condition {
        Condition::Thick => cover = cover.dilate(0.5 + 0.8 * scale as f32),
        Condition::Thin => {
            cover = cover.skeleton().dilate(1.0);
            darkness = 0.55 + 0.45 * r(2);
        }
        Condition::Rotated => {
            let degrees = (6.0 + 6.0 * r(2)) * if r(3) < 0.5 { -1.0 } else { 1.0 };
            cover = cover.rotate(degrees, 4 * scale as usize);
        }
        _ => {}
    }
    let margin = |salt: u64| 12 + (r(salt) * 40.0) as usize;
    let (left, top, right, bottom) = (margin(4), margin(5), margin(6), margin(7));
    let (w, h) = (cover.w + left + right, cover.h + top + bottom);
    let (ox, oy) = (left as i64, top as i64);
    // Reflectance of the page: ink, then rules and specks.
    let mut refl = vec![1.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let a = cover.at(x as i64 - ox, y as i64 - oy);
            refl[y * w + x] = 1.0 - 0.88 * darkness * a;
        }
    }
    match condition {
        Condition::Ruled | Condition::Squared => {
            let (spacing, thick, grey) = if condition == Condition::Ruled {
                (25.0 + 10.0 * r(20), 1 + (r(21) * 2.0) as usize, 0.25 + 0.2 * r(22))
            } else {
                (18.0 + 8.0 * r(20), 1, 0.25 + 0.15 * r(22))
            };
            let phase = r(23) * spacing;
            let on = |p: usize| {
                let t = (p as f32 - phase).rem_euclid(spacing);
                t < thick as f32
            };
            for y in 0..h {
                for x in 0..w {
                    if on(y) || (condition == Condition::Squared && on(x + 7)) {
                        refl[y * w + x] *= 1.0 - grey;
                    }
                }
            }
        }
        Condition::Specks => {
            let n = 15 + (r(20) * 26.0) as usize;
            for k in 0..n {
                let rk = |salt: u64| hash(i * 64 + k, 100 + salt);
                let (cx, cy, rad) = (rk(1) * w as f32, rk(2) * h as f32, 0.7 + 1.8 * rk(3));
                let dark = 0.6 + 0.3 * rk(4);
                let ri = rad.ceil() as i64 + 1;
                for dy in -ri..=ri {
                    for dx in -ri..=ri {
                        let (x, y) = (cx as i64 + dx, cy as i64 + dy);
                        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
                            continue;
                        }
                        let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
                        let cov = (rad + 0.5 - d).clamp(0.0, 1.0);
                        refl[y as usize * w + x as usize] *= 1.0 - dark * cov;
                    }
                }
            }
        }
        _ => {}
    }
    // Illumination.
    let angle = r(30) * std::f32::consts::TAU;
    let (dx, dy) = (angle.cos(), angle.sin());
    let light = |x: usize, y: usize| -> f32 {
        let (u, v) = (x as f32 / w as f32 - 0.5, y as f32 / h as f32 - 0.5);
        match condition {
            Condition::Gradient => {
                // From 255 at one side to 110 at the other, along (dx, dy).
                let t = (u * dx + v * dy) / (dx.abs() * 0.5 + dy.abs() * 0.5) * 0.5 + 0.5;
                255.0 - 145.0 * t
            }
            Condition::Shadow => {
                let depth = 0.4 + 0.15 * r(31);
                let s = if i.is_multiple_of(2) {
                    // A half-page shadow with a soft edge through a point near the centre.
                    let d = (u - 0.15 * (r(32) - 0.5)) * dx + (v - 0.15 * (r(33) - 0.5)) * dy;
                    smoothstep(d / 0.2 + 0.5)
                } else {
                    // A soft blob over part of the page.
                    let (bx, by, rad) = (0.4 * (r(32) - 0.5), 0.4 * (r(33) - 0.5), 0.3 + 0.15 * r(34));
                    let d = ((u - bx).powi(2) + (v - by).powi(2)).sqrt();
                    1.0 - smoothstep((d - rad) / 0.2 + 0.5)
                };
                250.0 * (1.0 - depth * s)
            }
            _ => 255.0,
        }
    };
    let page = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        Luma([(light(x, y) * refl[y * w + x]).round().clamp(0.0, 255.0) as u8])
    });
    if condition != Condition::Border {
        return page;
    }
    // The picture's edge on one or two sides moved to the ink's bounding box, and past it by up
    // to a tenth of the digit (in 60% of the cases).
    let (x0, y0, x1, y1) = cover.bbox();
    let (x0, y0, x1, y1) = (x0 + left, y0 + top, x1 + left, y1 + top);
    let (ew, eh) = (x1 - x0 + 1, y1 - y0 + 1);
    let cut = |salt: u64, extent: usize| {
        let f = r(salt);
        if f < 0.4 { 0 } else { ((f - 0.4) / 0.6 * 0.1 * extent as f32) as usize }
    };
    let (mut c0, mut r0, mut c1, mut r1) = (0, 0, w, h);
    let first = (r(8) * 4.0) as usize;
    let sides = if r(9) < 0.3 { vec![first, (first + 1) % 4] } else { vec![first] };
    for s in sides {
        match s {
            0 => c0 = x0 + cut(10, ew),
            1 => r0 = y0 + cut(11, eh),
            2 => c1 = x1 + 1 - cut(12, ew),
            _ => r1 = y1 + 1 - cut(13, eh),
        }
    }
    imageops::crop_imm(&page, c0 as u32, r0 as u32, (c1 - c0) as u32, (r1 - r0) as u32).to_image()
}
