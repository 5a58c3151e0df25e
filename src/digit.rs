//! A photo or scan of a handwritten digit, prepared the way MNIST's digits were prepared, so that a
//! model trained on MNIST can read it:
//!
//! 1. grey levels;
//! 2. polarity: MNIST digits are light ink on a dark background. The median of the image's border
//!    is taken as the background; an image with a light background is inverted;
//! 3. contrast: the background becomes 0 and the strongest ink 255; faint noise below
//!    `NOISE_FLOOR` of that range is dropped;
//! 4. crop to the bounding box of the ink;
//! 5. scale to fit a 20 x 20 box, keeping the aspect ratio (anti-aliased, as MNIST was);
//! 6. place into 28 x 28 so that the centre of mass of the grey levels is at the centre.

use image::{DynamicImage, GrayImage, Luma, imageops};

/// The side of the network's input image.
pub const SIDE: u32 = 28;
/// MNIST's digits fit a 20 x 20 box inside the 28 x 28 image.
const BOX: u32 = 20;
/// Less contrast than this between background and ink (grey levels out of 255): no digit.
const MIN_CONTRAST: f32 = 32.0;
/// Normalised grey levels below this fraction are background noise (paper texture, shadows).
/// Floors from 0.02 to 0.10 read rendered test digits best; higher ones erase thin strokes.
const NOISE_FLOOR: f32 = 0.05;

#[derive(Debug, thiserror::Error)]
pub enum DigitError {
    #[error("not a decodable image: {0}")]
    Decode(String),
    #[error("the image is empty")]
    Empty,
    #[error("no ink found: background and darkest/lightest stroke differ by {0:.0} grey levels of 255")]
    NoInk(f32),
}

/// The network's view of a digit: 28 x 28 grey levels, 0 = background.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub pixels: Vec<u8>,
    /// Whether the image was dark ink on a light background (and so was inverted).
    pub inverted: bool,
}

impl Prepared {
    pub fn to_image(&self) -> GrayImage {
        GrayImage::from_raw(SIDE, SIDE, self.pixels.clone()).unwrap_or_else(|| GrayImage::new(SIDE, SIDE))
    }
}

/// Decodes an image file's bytes under the limits the data loader uses for untrusted files
/// (`data::folder::decode`): a small file may claim a huge image.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, DigitError> {
    crate::data::folder::decode(bytes).map_err(DigitError::Decode)
}

/// Steps 1-6 above on a decoded image.
pub fn prepare(img: &DynamicImage) -> Result<Prepared, DigitError> {
    let grey = img.to_luma8();
    let (w, h) = grey.dimensions();
    if w == 0 || h == 0 {
        return Err(DigitError::Empty);
    }
    let mut border: Vec<u8> = grey
        .enumerate_pixels()
        .filter(|(x, y, _)| *x == 0 || *y == 0 || *x == w - 1 || *y == h - 1)
        .map(|(_, _, p)| p[0])
        .collect();
    border.sort_unstable();
    let background = border[border.len() / 2];
    let inverted = background > 127;
    let ink = |v: u8| if inverted { 255 - v } else { v } as f32;
    let bg = ink(background);
    let strongest = grey.pixels().map(|p| ink(p[0])).fold(bg, f32::max);
    if strongest - bg < MIN_CONTRAST {
        return Err(DigitError::NoInk(strongest - bg));
    }
    let level = |v: u8| {
        let t = ((ink(v) - bg) / (strongest - bg)).clamp(0.0, 1.0);
        if t < NOISE_FLOOR { 0.0 } else { t }
    };
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in grey.enumerate_pixels() {
        if level(p[0]) > 0.0 {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop =
        GrayImage::from_fn(cw, ch, |x, y| Luma([(255.0 * level(grey.get_pixel(x0 + x, y0 + y)[0])).round() as u8]));
    let scale = BOX as f32 / cw.max(ch) as f32;
    let (nw, nh) =
        (((cw as f32 * scale).round() as u32).clamp(1, BOX), ((ch as f32 * scale).round() as u32).clamp(1, BOX));
    let fitted = imageops::resize(&crop, nw, nh, imageops::FilterType::Triangle);
    let (mut mass, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, p) in fitted.enumerate_pixels() {
        let v = p[0] as f64;
        (mass, mx, my) = (mass + v, mx + v * (x as f64 + 0.5), my + v * (y as f64 + 0.5));
    }
    let (cx, cy) = if mass > 0.0 { (mx / mass, my / mass) } else { (nw as f64 / 2.0, nh as f64 / 2.0) };
    let centre = SIDE as f64 / 2.0;
    let ox = ((centre - cx).round() as i64).clamp(0, (SIDE - nw) as i64);
    let oy = ((centre - cy).round() as i64).clamp(0, (SIDE - nh) as i64);
    let mut out = GrayImage::new(SIDE, SIDE);
    imageops::overlay(&mut out, &fitted, ox, oy);
    Ok(Prepared { pixels: out.into_raw(), inverted })
}
