//! A plane of `f32` values, row-major, and the few neighbourhood operations the stages share:
//! block means (to shrink a photo to the working resolution, or to a coarse grid for the paper
//! estimate), square minimum and maximum filters (erosion and dilation), and bilinear enlarging.
//!
//! Every operation accepts any size, 0 x 0 included, and clips its windows at the edges, so no
//! image a user sends can index outside a plane.

/// `w * h` values, row-major.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Plane {
    pub w: usize,
    pub h: usize,
    pub v: Vec<f32>,
}

impl Plane {
    pub fn filled(w: usize, h: usize, value: f32) -> Plane {
        Plane { w, h, v: vec![value; w * h] }
    }

    pub fn max(&self) -> f32 {
        self.v.iter().copied().fold(0.0, f32::max)
    }

    /// The means of `f x f` blocks; the last row and column of blocks may be partial. `f` of 0
    /// is taken as 1.
    pub fn pooled(&self, f: usize) -> Plane {
        let f = f.max(1);
        let (w, h) = (self.w.div_ceil(f), self.h.div_ceil(f));
        let mut out = Plane::filled(w, h, 0.0);
        for by in 0..h {
            for bx in 0..w {
                let (x0, y0) = (bx * f, by * f);
                let (x1, y1) = ((x0 + f).min(self.w), (y0 + f).min(self.h));
                let sum: f32 = (y0..y1).map(|y| self.v[y * self.w + x0..y * self.w + x1].iter().sum::<f32>()).sum();
                out.v[by * w + bx] = sum / ((x1 - x0) * (y1 - y0)).max(1) as f32;
            }
        }
        out
    }

    /// The minimum (`max` false) or maximum over the `(2r+1) x (2r+1)` square around each value,
    /// clipped at the edges: a grey erosion or dilation.
    pub fn filtered(&self, r: usize, max: bool) -> Plane {
        let pick = |a: f32, b: f32| if max { a.max(b) } else { a.min(b) };
        let start = if max { f32::NEG_INFINITY } else { f32::INFINITY };
        let (w, h) = (self.w, self.h);
        let mut rows = Plane::filled(w, h, 0.0);
        for y in 0..h {
            let line = &self.v[y * w..(y + 1) * w];
            for x in 0..w {
                let (a, b) = (x.saturating_sub(r), (x + r + 1).min(w));
                rows.v[y * w + x] = line[a..b].iter().copied().fold(start, pick);
            }
        }
        let mut out = Plane::filled(w, h, 0.0);
        for y in 0..h {
            let (a, b) = (y.saturating_sub(r), (y + r + 1).min(h));
            for x in 0..w {
                out.v[y * w + x] = (a..b).map(|yy| rows.v[yy * w + x]).fold(start, pick);
            }
        }
        out
    }

    /// Enlarged to `w x h` by bilinear interpolation between value centres.
    pub fn enlarged(&self, w: usize, h: usize) -> Plane {
        let mut out = Plane::filled(w, h, 0.0);
        if self.w == 0 || self.h == 0 {
            return out;
        }
        let (sx, sy) = (self.w as f32 / w.max(1) as f32, self.h as f32 / h.max(1) as f32);
        let clamp = |v: f32, n: usize| v.clamp(0.0, (n - 1) as f32);
        for y in 0..h {
            let fy = clamp((y as f32 + 0.5) * sy - 0.5, self.h);
            let (y0, ty) = (fy.floor() as usize, fy - fy.floor());
            let y1 = (y0 + 1).min(self.h - 1);
            for x in 0..w {
                let fx = clamp((x as f32 + 0.5) * sx - 0.5, self.w);
                let (x0, tx) = (fx.floor() as usize, fx - fx.floor());
                let x1 = (x0 + 1).min(self.w - 1);
                let g = |xx: usize, yy: usize| self.v[yy * self.w + xx];
                let top = g(x0, y0) * (1.0 - tx) + g(x1, y0) * tx;
                let bottom = g(x0, y1) * (1.0 - tx) + g(x1, y1) * tx;
                out.v[y * w + x] = top * (1.0 - ty) + bottom * ty;
            }
        }
        out
    }
}
