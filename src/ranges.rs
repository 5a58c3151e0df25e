//! The values the numeric options of a run may take, checked alike where they are typed (the
//! command line) and where they are read back (model files).

use std::fmt::Display;

/// A range of values and how to say it: "a finite number above 0".
pub struct Range<T: 'static> {
    pub what: &'static str,
    pub ok: fn(&T) -> bool,
}

impl<T: Copy + Display> Range<T> {
    /// `v`, or why it is out of range.
    pub fn check(&self, v: T) -> Result<T, String> {
        if (self.ok)(&v) { Ok(v) } else { Err(format!("must be {}, got {v}", self.what)) }
    }
}

/// `--dropout`: the probability of dropping a hidden unit (0 turns dropout off).
pub const DROPOUT: Range<f32> = Range { what: "a probability at least 0 and below 1", ok: |v| (0.0..1.0).contains(v) };

/// `--lr`, `--eps`.
pub const ABOVE_ZERO: Range<f32> = Range { what: "a finite number above 0", ok: |v| v.is_finite() && *v > 0.0 };
/// `--momentum`, `--beta1`, `--beta2`: the decay of a running average.
pub const DECAY_RATE: Range<f32> = Range { what: "a number at least 0 and below 1", ok: |v| (0.0..1.0).contains(v) };
/// `--weight-decay`.
pub const WEIGHT_DECAY: Range<f32> = Range { what: "a finite number, 0 or above", ok: |v| v.is_finite() && *v >= 0.0 };
/// `--lr-gamma`: the factor of each decay.
pub const DECAY_FACTOR: Range<f32> = Range { what: "a number above 0 and at most 1", ok: |v| *v > 0.0 && *v <= 1.0 };
/// `--shift` (pixels), `--alpha`: the strength of a distortion.
pub const STRENGTH: Range<f32> = Range { what: "a finite number, 0 or above", ok: |v| v.is_finite() && *v >= 0.0 };
/// `--rotate`, `--shear`: degrees.
pub const ANGLE: Range<f32> = Range { what: "a number of degrees from 0 to 60", ok: |v| (0.0..=60.0).contains(v) };
/// `--scale`: the relative change of size.
pub const SCALE: Range<f32> = Range { what: "a number at least 0 and below 1", ok: |v| (0.0..1.0).contains(v) };
/// `--sigma`: pixels.
pub const SIGMA: Range<f32> = Range { what: "a number above 0 and at most 28", ok: |v| *v > 0.0 && *v <= 28.0 };
/// `--val-split`, `--target-accuracy`.
pub const FRACTION: Range<f64> = Range { what: "a number between 0 and 1 (exclusive)", ok: |v| *v > 0.0 && *v < 1.0 };
