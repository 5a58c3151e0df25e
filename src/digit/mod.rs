//! A photo or scan of a handwritten digit, prepared the way MNIST's digits were prepared, so that a
//! model trained on MNIST can read it, after undoing what real photos add to the ink. One stage
//! per file:
//!
//! 1. grey levels, and polarity (`background`): MNIST digits are light ink on a dark background;
//!    an image with a light background (the median of its border) is inverted;
//! 2. working resolution (`background`): big photos are averaged down to at most 256 pixels a
//!    side, which bounds the time of every later stage;
//! 3. the paper (`background`): its brightness under every pixel is estimated from the image's
//!    envelope and divided out, so that a gradient of light or a shadow is not ink;
//! 4. rules (`lines`): the lines of ruled and squared paper are removed where no stroke
//!    crosses them;
//! 5. the digit (`mask`): a threshold, the connected pieces of ink, and the digit's pieces kept
//!    (specks and dirt dropped);
//! 6. strokes (`strokes`): the digit is fitted to an 80 x 80 box and its stroke width brought
//!    towards MNIST's when it is far from it (a marker, a fine pen);
//! 7. MNIST's own steps (`fit`): crop to the ink, scale to fit a 20 x 20 box keeping the aspect
//!    ratio (anti-aliased), place into 28 x 28 with the centre of mass at the centre.
//!
//! There is no deskewing: MNIST's digits were not deslanted, and the shipped model learnt small
//! rotations from augmentation. Everything derived from the image is checked: an empty, blank,
//! 1 x 1 or 16384 x 1 image gives a [`DigitError`] or a prediction, never a panic.

mod background;
mod fit;
mod lines;
mod mask;
mod plane;
mod strokes;

use image::{DynamicImage, GrayImage};

/// The side of the network's input image.
pub const SIDE: u32 = 28;
/// Less contrast than this between paper and ink (grey levels out of 255): no digit.
const MIN_CONTRAST: f32 = 32.0;

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

/// Steps 1-7 above on a decoded image.
pub fn prepare(img: &DynamicImage) -> Result<Prepared, DigitError> {
    let grey = img.to_luma8();
    if grey.width() == 0 || grey.height() == 0 {
        return Err(DigitError::Empty);
    }
    let inverted = background::light_background(&grey);
    let raw = background::working(&grey, inverted);
    let (mut ink, contrast) = background::flatten(&raw, &background::paper(&raw));
    if contrast < MIN_CONTRAST {
        return Err(DigitError::NoInk(contrast));
    }
    lines::remove(&mut ink);
    let no_ink = || DigitError::NoInk(0.0);
    let digit = mask::digit(&ink).ok_or_else(no_ink)?;
    let boxed = fit::boxed(&digit, strokes::SIDE).ok_or_else(no_ink)?;
    let pixels = fit::mnist(&strokes::normalise(boxed)).ok_or_else(no_ink)?;
    Ok(Prepared { pixels, inverted })
}
