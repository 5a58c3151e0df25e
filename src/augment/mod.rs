//! Data augmentation: a fresh random distortion of every training image each epoch, so that the
//! network sees each digit in many positions, sizes, slants and strokes.
//!
//! * `affine`: rotation by up to `rotate` degrees, scale by 1 ± `scale`, shear by up to `shear`
//!   degrees, shift by up to `shift` pixels each way, about the image's centre;
//! * `elastic`: Simard et al. (2003) on top of that: a random displacement field, uniform in
//!   [-1, 1] per pixel and direction, smoothed by a Gaussian of `sigma` pixels and scaled by
//!   `alpha`, moves each pixel before the affine map.
//!
//! Each output pixel is sampled once, bilinearly, from the original image (0 outside it). The
//! random numbers of image `i` in epoch `e` are words `i * WORDS..` of ChaCha8 stream `e` keyed
//! by the run's seed: a counter-based draw, so the same seed gives the same distortions, bit for
//! bit, on any thread count and whichever backend trains.

mod ahead;
pub use ahead::EpochImages;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Which distortion a run draws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Augmentation {
    #[default]
    None,
    Affine,
    Elastic,
}

impl Augmentation {
    pub const ALL: [Augmentation; 3] = [Augmentation::None, Augmentation::Affine, Augmentation::Elastic];

    pub fn name(self) -> &'static str {
        match self {
            Augmentation::None => "none",
            Augmentation::Affine => "affine",
            Augmentation::Elastic => "elastic",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A distortion and its strengths.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    pub kind: Augmentation,
    /// Largest shift, in pixels, along each axis.
    pub shift: f32,
    /// Largest rotation, in degrees.
    pub rotate: f32,
    /// Largest relative change of size: the scale is drawn from 1 ± this.
    pub scale: f32,
    /// Largest shear, in degrees.
    pub shear: f32,
    /// Elastic displacement: scale (pixels) and the smoothing Gaussian's standard deviation.
    pub alpha: f32,
    pub sigma: f32,
}

impl Default for Augment {
    /// Strengths that keep a digit readable: those of the PyTorch reference for the
    /// affine part (12 degrees, 2.5 pixels), Simard et al.'s alpha 34 and sigma 4 for the elastic.
    fn default() -> Self {
        Augment { kind: Augmentation::None, shift: 2.5, rotate: 12.0, scale: 0.1, shear: 8.0, alpha: 34.0, sigma: 4.0 }
    }
}

/// Random words one image may use: 5 for the affine map, two per pixel for an elastic field.
fn words(d: usize) -> u128 {
    8 + 2 * d as u128
}

/// The key of the run's augmentation stream (apart from its other uses of the seed).
const SALT: u64 = 0x6175_676d_656e_7421;

/// A uniform draw in [-1, 1) from one word.
fn signed(rng: &mut ChaCha8Rng) -> f32 {
    from_word(rng.next_u32())
}

#[inline(always)]
fn from_word(w: u32) -> f32 {
    (w >> 8) as f32 * (2.0 / (1u32 << 24) as f32) - 1.0
}

/// Epoch `epoch`'s distortion of every image of `pixels` (`n` images of `rows` x `cols`, row-major).
pub fn epoch_images(pixels: &[u8], rows: usize, cols: usize, aug: &Augment, seed: u64, epoch: usize) -> Vec<u8> {
    let d = rows * cols;
    let mut out = vec![0u8; pixels.len()];
    if aug.kind == Augmentation::None || d == 0 {
        out.copy_from_slice(pixels);
        return out;
    }
    out.par_chunks_mut(d).zip(pixels.par_chunks(d)).enumerate().for_each(|(i, (dst, src))| {
        draw_image(dst, src, rows, cols, aug, seed, epoch, i);
    });
    out
}

/// Image `i`'s distortion in epoch `epoch` into `out`: a function of (seed, epoch, i) alone.
#[allow(clippy::too_many_arguments)]
fn draw_image(
    out: &mut [u8],
    image: &[u8],
    rows: usize,
    cols: usize,
    aug: &Augment,
    seed: u64,
    epoch: usize,
    i: usize,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SALT);
    rng.set_stream(epoch as u64);
    rng.set_word_pos(i as u128 * words(rows * cols));
    distort_simd(out, image, rows, cols, aug, &mut rng);
}

/// `distort` compiled for AVX-512 or AVX2 where the CPU has them: there floor and round are
/// single instructions rather than calls into libm (the baseline x86-64 target lacks SSE4.1's
/// roundps), AVX-512 samples the 16 lanes in one register, and both load the bilinear taps with
/// the CPU's gather instruction. Every arithmetic operation is the same IEEE one at any level,
/// with no fused multiply-adds, and a gather loads the same values as lane-by-lane reads, so the
/// images are the same bit for bit.
fn distort_simd(out: &mut [u8], image: &[u8], rows: usize, cols: usize, aug: &Augment, rng: &mut ChaCha8Rng) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { gather::distort_avx512(out, image, rows, cols, aug, rng) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            return unsafe { gather::distort_avx2(out, image, rows, cols, aug, rng) };
        }
    }
    distort(out, image, rows, cols, aug, rng)
}

/// How `Padded::bilinear` reads its taps: `p[at[l] + off]` for each lane, where every place is
/// inside `p` (the caller's invariant, checked in debug builds).
trait Taps {
    fn load(p: &[f32], at: &[u32; LANES], off: usize) -> [f32; LANES];
}

/// One lane at a time: the definition, and the baseline's way.
struct LaneByLane;

impl Taps for LaneByLane {
    #[inline(always)]
    fn load(p: &[f32], at: &[u32; LANES], off: usize) -> [f32; LANES] {
        std::array::from_fn(|l| p[at[l] as usize + off])
    }
}

/// The AVX-512 and AVX2 builds of `distort`, and the gathers they read taps with (used by these
/// `target_feature` functions only, so the CPU has the instructions).
#[cfg(target_arch = "x86_64")]
mod gather {
    use super::{Augment, ChaCha8Rng, LANES, Taps, distort_with};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub fn distort_avx512(out: &mut [u8], image: &[u8], rows: usize, cols: usize, aug: &Augment, rng: &mut ChaCha8Rng) {
        distort_with::<Avx512>(out, image, rows, cols, aug, rng)
    }

    #[target_feature(enable = "avx2")]
    pub fn distort_avx2(out: &mut [u8], image: &[u8], rows: usize, cols: usize, aug: &Augment, rng: &mut ChaCha8Rng) {
        distort_with::<Avx2>(out, image, rows, cols, aug, rng)
    }

    struct Avx512;
    struct Avx2;

    impl Taps for Avx512 {
        #[inline(always)]
        fn load(p: &[f32], at: &[u32; LANES], off: usize) -> [f32; LANES] {
            debug_assert!(at.iter().all(|&a| (a as usize + off) < p.len()));
            // SAFETY: AVX-512F is enabled in the one caller (above); every place is inside `p`
            // (the trait's invariant) and below 2^31 (`Padded::new`), as the signed offsets need.
            unsafe {
                let idx = _mm512_loadu_si512(at.as_ptr().cast());
                std::mem::transmute(_mm512_i32gather_ps::<4>(idx, p.as_ptr().add(off)))
            }
        }
    }

    impl Taps for Avx2 {
        #[inline(always)]
        fn load(p: &[f32], at: &[u32; LANES], off: usize) -> [f32; LANES] {
            debug_assert!(at.iter().all(|&a| (a as usize + off) < p.len()));
            // SAFETY: as for `Avx512`, with AVX2 enabled in the one caller; two gathers of 8.
            unsafe {
                let base = p.as_ptr().add(off);
                let lo = _mm256_loadu_si256(at.as_ptr().cast());
                let hi = _mm256_loadu_si256(at.as_ptr().add(8).cast());
                std::mem::transmute([_mm256_i32gather_ps::<4>(base, lo), _mm256_i32gather_ps::<4>(base, hi)])
            }
        }
    }
}

/// One image's distortion into `out`, drawing from `rng`.
#[inline(always)]
pub fn distort(out: &mut [u8], image: &[u8], rows: usize, cols: usize, aug: &Augment, rng: &mut ChaCha8Rng) {
    distort_with::<LaneByLane>(out, image, rows, cols, aug, rng)
}

/// `distort`, reading the bilinear taps with `T`.
#[inline(always)]
fn distort_with<T: Taps>(out: &mut [u8], image: &[u8], rows: usize, cols: usize, aug: &Augment, rng: &mut ChaCha8Rng) {
    let rad = |deg: f32| deg.to_radians();
    let (theta, s) = (rad(aug.rotate) * signed(rng), 1.0 + aug.scale * signed(rng));
    let shear = rad(aug.shear * signed(rng)).tan();
    let (tx, ty) = (aug.shift * signed(rng), aug.shift * signed(rng));
    // The forward map: p' = A (p - c) + c + t with A = s · R(theta) · [[1, shear], [0, 1]]; each
    // output pixel samples the original at A^-1 (p' - c - t) + c.
    let (cos, sin) = (theta.cos(), theta.sin());
    let a = [s * cos, s * (cos * shear - sin), s * sin, s * (sin * shear + cos)];
    let det = a[0] * a[3] - a[1] * a[2];
    let inv = [a[3] / det, -a[1] / det, -a[2] / det, a[0] / det];
    let (cx, cy) = ((cols as f32 - 1.0) / 2.0, (rows as f32 - 1.0) / 2.0);
    // Not `bool::then`: its closure would not be inlined, and the field would be drawn at the
    // baseline SIMD width inside the AVX-512 build.
    let field = if aug.kind == Augmentation::Elastic { Some(elastic_field(rows, cols, aug, rng)) } else { None };
    let padded = Padded::new(image, rows, cols);
    // `LANES` output pixels at a time, in row-major order across rows, each stage a loop over the
    // lanes that the compiler vectorises. The per-pixel arrays are padded to whole groups of lanes;
    // the padding lanes sample somewhere in the image and are not stored.
    // Lane l of group g is pixel g * LANES + l, at (gx[l], gy[l]): whole numbers, exact in f32.
    let (mut gx, mut gy) = ([0.0f32; LANES], [0.0f32; LANES]);
    for l in 0..LANES {
        (gx[l], gy[l]) = ((l % cols) as f32, (l / cols) as f32);
    }
    let (step_x, step_y, width) = ((LANES % cols) as f32, (LANES / cols) as f32, cols as f32);
    for (g, out) in out.chunks_mut(LANES).enumerate() {
        let at = g * LANES;
        let (mut qx, mut qy) = (gx, gy);
        for l in 0..LANES {
            let x = gx[l] + step_x;
            let wrap = x >= width;
            (gx[l], gy[l]) = (if wrap { x - width } else { x }, gy[l] + step_y + if wrap { 1.0 } else { 0.0 });
        }
        if let Some((dx, dy)) = &field {
            let (dx, dy) = (&dx[at..at + LANES], &dy[at..at + LANES]);
            for l in 0..LANES {
                (qx[l], qy[l]) = (qx[l] + dx[l], qy[l] + dy[l]);
            }
        }
        let (mut sx, mut sy) = ([0.0f32; LANES], [0.0f32; LANES]);
        for l in 0..LANES {
            let (ux, uy) = (qx[l] - cx - tx, qy[l] - cy - ty);
            sx[l] = inv[0] * ux + inv[1] * uy + cx;
            sy[l] = inv[2] * ux + inv[3] * uy + cy;
        }
        padded.bilinear::<T>(out, &sx, &sy);
    }
}

/// Output pixels sampled together (one AVX-512 register of f32).
const LANES: usize = 16;

/// An image with a border of zeros (one pixel before, two after each axis), so that bilinear
/// taps need no bounds checks: coordinates are clamped into the border, where they read 0.
struct Padded {
    pixels: Vec<f32>,
    stride: usize,
    rows: f32,
    cols: f32,
}

impl Padded {
    fn new(image: &[u8], rows: usize, cols: usize) -> Padded {
        let stride = cols + 3;
        // Loaded images are at most 16384 pixels a side (`data::folder`), far within this.
        assert!((rows + 3) * stride <= i32::MAX as usize, "a {rows} x {cols} image is too large to distort");
        let mut pixels = vec![0.0; (rows + 3) * stride];
        for (y, row) in image.chunks_exact(cols).enumerate() {
            let at = (y + 1) * stride + 1;
            for (p, &v) in pixels[at..at + cols].iter_mut().zip(row) {
                *p = v as f32;
            }
        }
        Padded { pixels, stride, rows: rows as f32, cols: cols as f32 }
    }

    /// As `bilinear`, lane by lane: `out[l]` = the image at (x[l], y[l]) (0 outside), rounded
    /// and clamped to a grey level, for the lanes `out` has; `T` reads the taps.
    #[inline(always)]
    fn bilinear<T: Taps>(&self, out: &mut [u8], x: &[f32; LANES], y: &[f32; LANES]) {
        let (mut at, mut fx, mut fy) = ([0u32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        for l in 0..LANES {
            // `max` then `min` clamps as `clamp` does, and takes a NaN to -1 (0 is read there).
            let (x, y) = (x[l].max(-1.0).min(self.cols), y[l].max(-1.0).min(self.rows));
            let (x0, y0) = (x.floor(), y.floor());
            (fx[l], fy[l]) = (x - x0, y - y0);
            // SAFETY: x0 + 1 and y0 + 1 are whole numbers in 0..=cols + 1 and 0..=rows + 1.
            let (x1, y1) = unsafe { ((x0 + 1.0).to_int_unchecked::<u32>(), (y0 + 1.0).to_int_unchecked::<u32>()) };
            // At most (rows + 1) * stride + cols + 1, so the taps below, up to stride + 1 further,
            // stay inside the (rows + 3) * stride pixels (below 2^31, checked by `new`).
            at[l] = y1 * self.stride as u32 + x1;
        }
        let (p, s) = (&self.pixels, self.stride);
        let (t00, t01) = (T::load(p, &at, 0), T::load(p, &at, 1));
        let (t10, t11) = (T::load(p, &at, s), T::load(p, &at, s + 1));
        let mut v = [0u8; LANES];
        for l in 0..LANES {
            let top = t00[l] * (1.0 - fx[l]) + t01[l] * fx[l];
            let bottom = t10[l] * (1.0 - fx[l]) + t11[l] * fx[l];
            v[l] = grey(top * (1.0 - fy[l]) + bottom * fy[l]);
        }
        out.copy_from_slice(&v[..out.len()]);
    }
}

/// `v.round().clamp(0.0, 255.0) as u8` in operations that need no rounding instruction: after
/// the clamp, truncation is floor, and `v - floor(v)` is exact, so comparing it with 0.5 rounds
/// halves away from zero as `round` does. (Clamping first changes nothing: a rounded value
/// outside 0..=255 clamps to the bound its unrounded value clamps to.)
#[inline(always)]
fn grey(v: f32) -> u8 {
    let v = v.clamp(0.0, 255.0);
    // SAFETY: v is in 0..=255 (a NaN cannot arise: taps and weights are finite).
    let t = unsafe { v.to_int_unchecked::<u8>() };
    t + (v - t as f32 >= 0.5) as u8
}

/// Simard's displacement field: uniform noise, Gaussian-smoothed, times alpha. The noise is
/// drawn column by column, dx's column x then dy's, into a buffer whose row x holds both (2 x rows
/// wide), so that the blur along x runs over rows twice as long; transposed, the blur along y
/// does the same. Returns (dx, dy), each row-major rows x cols.
#[inline(always)]
fn elastic_field(rows: usize, cols: usize, aug: &Augment, rng: &mut ChaCha8Rng) -> (Vec<f32>, Vec<f32>) {
    let kernel = gaussian(aug.sigma);
    // by_x[x][y] = dx(x, y), by_x[x][rows + y] = dy(x, y): the words `signed` would draw one by
    // one, drawn in one go (the same words, in order).
    let mut words = vec![0u8; 4 * 2 * rows * cols];
    rng.fill_bytes(&mut words);
    let mut by_x = vec![0.0f32; 2 * rows * cols];
    for (v, w) in by_x.iter_mut().zip(words.chunks_exact(4)) {
        *v = from_word(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let by_x = blur_columns(&by_x, cols, 2 * rows, &kernel);
    // by_y[y][x] = dx(x, y), by_y[y][cols + x] = dy(x, y).
    let mut by_y = vec![0.0; 2 * rows * cols];
    for x in 0..cols {
        for y in 0..rows {
            by_y[y * 2 * cols + x] = by_x[x * 2 * rows + y];
            by_y[y * 2 * cols + cols + x] = by_x[x * 2 * rows + rows + y];
        }
    }
    let by_y = blur_columns(&by_y, rows, 2 * cols, &kernel);
    // Padded with zeros to whole groups of lanes, as `distort` reads it.
    let len = (rows * cols).next_multiple_of(LANES);
    let (mut dx, mut dy) = (vec![0.0; len], vec![0.0; len]);
    for ((row, dx), dy) in by_y.chunks_exact(2 * cols).zip(dx.chunks_exact_mut(cols)).zip(dy.chunks_exact_mut(cols)) {
        for x in 0..cols {
            (dx[x], dy[x]) = (row[x] * aug.alpha, row[cols + x] * aug.alpha);
        }
    }
    (dx, dy)
}

/// A normalised Gaussian kernel of radius ceil(3 sigma).
fn gaussian(sigma: f32) -> Vec<f32> {
    let sigma = sigma.max(1e-3);
    let r = (3.0 * sigma).ceil() as i32;
    let k: Vec<f32> = (-r..=r).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = k.iter().sum();
    k.into_iter().map(|v| v / total).collect()
}

/// The blur down the columns of `f` (`rows` rows of `width`), 0 beyond the first and last row:
/// `out[y][..] = Σ_k kernel[k] f[y + k - r][..]`, the taps added in increasing k. The elastic
/// field is the costliest part of a draw, so the sum runs in register blocks: `BLOCK_ROWS` output
/// rows by up to `LANES` columns, whose independent sums hide the adds' latency and share each
/// input row's load. Rows of zeros pad `f` above and below, and zeros pad the kernel at both
/// ends, so that every output row of a block takes the same input rows; the extra terms are
/// zeros, which leave a sum's bits as they are (a sum from +0 never becomes -0).
#[inline(always)]
fn blur_columns(f: &[f32], rows: usize, width: usize, kernel: &[f32]) -> Vec<f32> {
    let r = kernel.len() / 2;
    let pad = BLOCK_ROWS - 1;
    let mut padded = vec![0.0; (rows + 2 * r + pad) * width];
    padded[r * width..(r + rows) * width].copy_from_slice(f);
    let mut weights = vec![0.0; kernel.len() + 2 * pad];
    weights[pad..pad + kernel.len()].copy_from_slice(kernel);
    let mut out = vec![0.0; f.len() + pad * width];
    for y in (0..rows).step_by(BLOCK_ROWS) {
        let mut c = 0;
        while c < width {
            let at = y * width + c;
            c += match width - c {
                LANES.. => blur_block::<LANES>(&mut out[at..], &padded[at..], width, &weights),
                8.. => blur_block::<8>(&mut out[at..], &padded[at..], width, &weights),
                4.. => blur_block::<4>(&mut out[at..], &padded[at..], width, &weights),
                2.. => blur_block::<2>(&mut out[at..], &padded[at..], width, &weights),
                _ => blur_block::<1>(&mut out[at..], &padded[at..], width, &weights),
            };
        }
    }
    // A last block past the end of `f` sums rows of padding, into rows that are dropped here.
    out.truncate(f.len());
    out
}

/// Output rows per register block of `blur_columns`.
const BLOCK_ROWS: usize = 4;

/// `N` columns of `BLOCK_ROWS` output rows of `blur_columns`: output row i (of `out`, rows of
/// `width`) takes input row j (of `padded`, from the block's first) with weight
/// `weights[j - i + BLOCK_ROWS - 1]`, which is tap j - i of the kernel or a padding zero. Returns N.
#[inline(always)]
fn blur_block<const N: usize>(out: &mut [f32], padded: &[f32], width: usize, weights: &[f32]) -> usize {
    let mut acc = [[0.0f32; N]; BLOCK_ROWS];
    for j in 0..weights.len() - BLOCK_ROWS + 1 {
        let src = &padded[j * width..][..N];
        let w = &weights[j..j + BLOCK_ROWS];
        for (i, acc) in acc.iter_mut().enumerate() {
            let w = w[BLOCK_ROWS - 1 - i];
            for l in 0..N {
                acc[l] += w * src[l];
            }
        }
    }
    for (i, acc) in acc.iter().enumerate() {
        out[i * width..][..N].copy_from_slice(acc);
    }
    N
}

/// The image at (x, y), interpolated between its four nearest pixels; 0 outside (the
/// definition `Padded::bilinear` is tested against).
#[cfg(test)]
fn bilinear(image: &[u8], rows: usize, cols: usize, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= cols as f32 || yi >= rows as f32 {
            0.0
        } else {
            image[yi as usize * cols + xi as usize] as f32
        }
    };
    let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1.0, y0) * fx;
    let bottom = at(x0, y0 + 1.0) * (1.0 - fx) + at(x0 + 1.0, y0 + 1.0) * fx;
    top * (1.0 - fy) + bottom * fy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digit() -> Vec<u8> {
        // A vertical bar and a blob: asymmetric, so every distortion moves something.
        let mut img = vec![0u8; 28 * 28];
        for y in 6..22 {
            img[y * 28 + 12] = 255;
            img[y * 28 + 13] = 200;
        }
        (8..12).for_each(|x| img[8 * 28 + x] = 180);
        img
    }

    #[test]
    fn none_and_zero_strengths_leave_images_alone() {
        let img: Vec<u8> = [digit(), digit()].concat();
        assert_eq!(epoch_images(&img, 28, 28, &Augment::default(), 1, 0), img);
        let still = Augment {
            kind: Augmentation::Affine,
            shift: 0.0,
            rotate: 0.0,
            scale: 0.0,
            shear: 0.0,
            ..Default::default()
        };
        assert_eq!(epoch_images(&img, 28, 28, &still, 1, 3), img, "the identity map samples every pixel exactly");
    }

    #[test]
    fn distortions_are_seeded_per_image_and_epoch() {
        let img: Vec<u8> = [digit(), digit(), digit()].concat();
        for kind in [Augmentation::Affine, Augmentation::Elastic] {
            let aug = Augment { kind, ..Default::default() };
            let a = epoch_images(&img, 28, 28, &aug, 7, 2);
            assert_eq!(a, epoch_images(&img, 28, 28, &aug, 7, 2), "{kind:?}: same seed and epoch, same images");
            assert_ne!(a, epoch_images(&img, 28, 28, &aug, 7, 3), "{kind:?}: each epoch its own");
            assert_ne!(a, epoch_images(&img, 28, 28, &aug, 8, 2), "{kind:?}: each seed its own");
            assert_ne!(a[..784], a[784..1568], "{kind:?}: each image its own");
            // The draw of one image does not depend on the others (thread counts cannot matter).
            assert_eq!(epoch_images(&img[..784], 28, 28, &aug, 7, 2), a[..784]);
            let ink = |v: &[u8]| v.iter().map(|&p| p as u64).sum::<u64>();
            let (before, after) = (ink(&img[..784]), ink(&a[..784]));
            assert!(after > before / 2 && after < before * 2, "{kind:?}: the ink stays ({before} -> {after})");
        }
    }

    #[test]
    fn the_field_is_the_zero_padded_gaussian_blur_of_its_noise() {
        let (rows, cols) = (7, 9);
        let aug = Augment { kind: Augmentation::Elastic, alpha: 3.0, sigma: 1.3, ..Default::default() };
        let (dx, dy) = elastic_field(rows, cols, &aug, &mut ChaCha8Rng::seed_from_u64(4));
        // The same noise, in the order the field draws it: column x of dx, then of dy.
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (mut nx, mut ny) = (vec![0.0f32; rows * cols], vec![0.0f32; rows * cols]);
        for x in 0..cols {
            (0..rows).for_each(|y| nx[y * cols + x] = signed(&mut rng));
            (0..rows).for_each(|y| ny[y * cols + x] = signed(&mut rng));
        }
        let kernel = gaussian(aug.sigma);
        let r = (kernel.len() / 2) as isize;
        let at = |f: &[f32], x: isize, y: isize| {
            let inside = (0..cols as isize).contains(&x) && (0..rows as isize).contains(&y);
            if inside { f[y as usize * cols + x as usize] } else { 0.0 }
        };
        for (got, noise) in [(&dx, &nx), (&dy, &ny)] {
            for y in 0..rows as isize {
                for x in 0..cols as isize {
                    let mut want = 0.0f32;
                    for (i, wi) in kernel.iter().enumerate() {
                        for (j, wj) in kernel.iter().enumerate() {
                            want += wi * wj * at(noise, x + j as isize - r, y + i as isize - r);
                        }
                    }
                    let g = got[y as usize * cols + x as usize];
                    assert!((g - aug.alpha * want).abs() <= 1e-5, "({x}, {y}): {g} vs {}", aug.alpha * want);
                }
            }
        }
    }

    #[test]
    fn the_padded_image_samples_as_the_plain_one() {
        let img = digit();
        let padded = Padded::new(&img, 28, 28);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for _ in 0..20_000 / LANES {
            let (mut x, mut y) = ([0.0f32; LANES], [0.0f32; LANES]);
            for l in 0..LANES {
                (x[l], y[l]) = (20.0 * signed(&mut rng) + 13.5, 20.0 * signed(&mut rng) + 13.5);
            }
            let mut got = [0u8; LANES];
            padded.bilinear::<LaneByLane>(&mut got, &x, &y);
            for (l, a) in got.into_iter().enumerate() {
                let b = bilinear(&img, 28, 28, x[l], y[l]);
                assert!((a as f32 - b).abs() <= 0.5 + 1e-3, "({}, {}): {a} vs {b}", x[l], y[l]);
            }
        }
    }

    /// The draw one pixel at a time, with `f32::round`: what the lanes of `distort` compute.
    fn distort_pixelwise(out: &mut [u8], image: &[u8], (rows, cols): (usize, usize), aug: &Augment, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let rad = |deg: f32| deg.to_radians();
        let (theta, s) = (rad(aug.rotate) * signed(&mut rng), 1.0 + aug.scale * signed(&mut rng));
        let shear = rad(aug.shear * signed(&mut rng)).tan();
        let (tx, ty) = (aug.shift * signed(&mut rng), aug.shift * signed(&mut rng));
        let (cos, sin) = (theta.cos(), theta.sin());
        let a = [s * cos, s * (cos * shear - sin), s * sin, s * (sin * shear + cos)];
        let det = a[0] * a[3] - a[1] * a[2];
        let inv = [a[3] / det, -a[1] / det, -a[2] / det, a[0] / det];
        let (cx, cy) = ((cols as f32 - 1.0) / 2.0, (rows as f32 - 1.0) / 2.0);
        let field = (aug.kind == Augmentation::Elastic).then(|| elastic_field(rows, cols, aug, &mut rng));
        let p = Padded::new(image, rows, cols);
        for y in 0..rows {
            for x in 0..cols {
                let (mut qx, mut qy) = (x as f32, y as f32);
                if let Some((dx, dy)) = &field {
                    (qx, qy) = (qx + dx[y * cols + x], qy + dy[y * cols + x]);
                }
                let (ux, uy) = (qx - cx - tx, qy - cy - ty);
                let (sx, sy) = (inv[0] * ux + inv[1] * uy + cx, inv[2] * ux + inv[3] * uy + cy);
                let (sx, sy) = (sx.clamp(-1.0, cols as f32), sy.clamp(-1.0, rows as f32));
                let (x0, y0) = (sx.floor(), sy.floor());
                let (fx, fy) = (sx - x0, sy - y0);
                let at = (y0 + 1.0) as usize * p.stride + (x0 + 1.0) as usize;
                let top = p.pixels[at] * (1.0 - fx) + p.pixels[at + 1] * fx;
                let bottom = p.pixels[at + p.stride] * (1.0 - fx) + p.pixels[at + p.stride + 1] * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                out[y * cols + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }

    type Draw = fn(&mut [u8], &[u8], usize, usize, &Augment, &mut ChaCha8Rng);

    /// Every build of the draw: the baseline, the one `distort_simd` picks, and each of the
    /// AVX-512 and AVX2 builds the CPU can run.
    fn levels() -> Vec<(&'static str, Draw)> {
        let mut levels: Vec<(&'static str, Draw)> = vec![("baseline", distort), ("dispatched", distort_simd)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F.
                levels.push(("AVX-512", |o, i, r, c, a, g| unsafe { gather::distort_avx512(o, i, r, c, a, g) }));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                levels.push(("AVX2", |o, i, r, c, a, g| unsafe { gather::distort_avx2(o, i, r, c, a, g) }));
            }
        }
        levels
    }

    #[test]
    fn every_build_draws_what_one_pixel_at_a_time_draws() {
        // Awkward widths leave partial groups of lanes; strong maps sample outside the image.
        let levels = levels();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for (rows, cols) in [(28, 28), (5, 3), (9, 17), (32, 8)] {
            let img: Vec<u8> = (0..rows * cols).map(|_| rng.next_u32() as u8).collect();
            for kind in [Augmentation::Affine, Augmentation::Elastic] {
                for aug in [
                    Augment { kind, ..Default::default() },
                    Augment { kind, shift: 9.0, rotate: 40.0, ..Default::default() },
                ] {
                    for seed in 0..40 {
                        let mut plain = vec![0u8; rows * cols];
                        distort_pixelwise(&mut plain, &img, (rows, cols), &aug, seed);
                        for (level, draw) in &levels {
                            let mut lanes = vec![0u8; rows * cols];
                            draw(&mut lanes, &img, rows, cols, &aug, &mut ChaCha8Rng::seed_from_u64(seed));
                            assert_eq!(lanes, plain, "{level}: {rows}x{cols} {kind:?} seed {seed}");
                        }
                    }
                }
            }
        }
        eprintln!("builds checked: {:?}", levels.iter().map(|l| l.0).collect::<Vec<_>>());
    }

    #[test]
    fn grey_levels_round_half_away_from_zero() {
        let mut v = vec![0.0f32, 0.5, 1.5, 2.5, 254.5, 255.49998, f32::from_bits(0.5f32.to_bits() - 1)];
        v.extend((0..2_000_000u32).map(|i| i as f32 * 1.373e-4));
        v.extend((0..100_000u32).map(|i| f32::from_bits(0.5f32.to_bits() + i) + (i % 300) as f32));
        v.extend([-0.0, -0.5, -0.7, -1.5, -3e9, 255.5, 256.0, 3e9, f32::INFINITY, f32::NEG_INFINITY]);
        for x in v {
            assert_eq!(grey(x), x.round().clamp(0.0, 255.0) as u8, "{x}");
        }
    }

    #[test]
    fn a_pure_shift_samples_the_original_at_the_shifted_place() {
        let img = digit();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let aug = Augment {
            kind: Augmentation::Affine,
            shift: 2.0,
            rotate: 0.0,
            scale: 0.0,
            shear: 0.0,
            ..Default::default()
        };
        let mut out = vec![0u8; 784];
        distort(&mut out, &img, 28, 28, &aug, &mut rng);
        let mut again = ChaCha8Rng::seed_from_u64(3);
        let (_, _) = (signed(&mut again), signed(&mut again));
        let _ = signed(&mut again);
        let (tx, ty) = (2.0 * signed(&mut again), 2.0 * signed(&mut again));
        // Sampling at p - t: each output pixel is the bilinear mix of the shifted original.
        for y in 0..28 {
            for x in 0..28 {
                let want = bilinear(&img, 28, 28, x as f32 - tx, y as f32 - ty).round() as u8;
                assert_eq!(out[y * 28 + x], want, "({x}, {y}) shifted by ({tx}, {ty})");
            }
        }
    }
}
