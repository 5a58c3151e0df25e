//! Buffers of floats that start on a cache line.
//!
//! The quad kernels load and store slices of 8 or 16 floats at row offsets that are multiples of
//! 16 floats when H is; from a `Vec<f32>` (16-byte aligned) one load in two straddles two cache
//! lines, which costs a Zen 3 core a second access. `Lines` starts every buffer on a 64-byte
//! boundary instead.

use std::ops::{Deref, DerefMut};

/// Floats per cache line.
const LINE: usize = 16;

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; LINE]);

/// `len` floats, the first on a 64-byte boundary.
#[derive(Clone, Default)]
pub(super) struct Lines {
    lines: Vec<Line>,
    len: usize,
}

impl Lines {
    /// `len` zeros.
    pub(super) fn zeros(len: usize) -> Self {
        Lines { lines: vec![Line([0.0; LINE]); len.div_ceil(LINE)], len }
    }
}

impl Deref for Lines {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl DerefMut for Lines {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    #[test]
    fn every_buffer_starts_on_a_cache_line_and_holds_its_length() {
        for len in [0, 1, 15, 16, 17, 1000, 256 * 128] {
            let mut b = Lines::zeros(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&v| v == 0.0));
            b.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            assert_eq!(b.last().copied(), len.checked_sub(1).map(|i| i as f32));
            assert_eq!(b.as_ptr() as usize % 64, 0, "{len} floats");
        }
    }
}
