//! Learning-rate schedules: the rate each iteration uses, from `--lr`, `--lr-schedule`,
//! `--warmup`, `--lr-step-every` and `--lr-gamma`.
//!
//! Iterations are counted over the model's whole training, so that a run resumed with
//! `--init-from` (which knows how many iterations the model has had) continues the schedule where
//! the interrupted run left it, rather than starting it again.

/// The shape of the schedule after the warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LrSchedule {
    /// `--lr` throughout.
    #[default]
    Constant,
    /// `--lr` times `--lr-gamma` after every `--lr-step-every` iterations.
    Step,
    /// From `--lr` down to 0 along half a cosine, over the iterations after the warm-up.
    Cosine,
}

impl LrSchedule {
    pub const ALL: [LrSchedule; 3] = [LrSchedule::Constant, LrSchedule::Step, LrSchedule::Cosine];

    /// The name model files and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Step => "step",
            LrSchedule::Cosine => "cosine",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A schedule over iterations `1..=total` of a model's training.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub kind: LrSchedule,
    /// The rate after the warm-up (`--lr`).
    pub base: f32,
    /// Iterations of linear warm-up, from `base / warmup` up to `base`.
    pub warmup: usize,
    /// Step: iterations between decays (at least 1).
    pub step_every: usize,
    /// Step: the factor of each decay.
    pub gamma: f32,
    /// The last iteration the schedule plans for (cosine reaches 0 just after it).
    pub total: usize,
}

impl Schedule {
    /// `base` at every iteration.
    pub fn constant(base: f32) -> Self {
        Schedule { kind: LrSchedule::Constant, base, warmup: 0, step_every: 1, gamma: 1.0, total: 1 }
    }

    /// The rate of iteration `t` (1-based, counted over the model's whole training).
    pub fn lr(&self, t: usize) -> f32 {
        let t = t.max(1);
        if t <= self.warmup {
            return self.base * t as f32 / self.warmup as f32;
        }
        // Iterations since the warm-up ended, from 0.
        let since = t - self.warmup - 1;
        match self.kind {
            LrSchedule::Constant => self.base,
            LrSchedule::Step => self.base * self.gamma.powi((since / self.step_every.max(1)) as i32),
            LrSchedule::Cosine => {
                let span = self.total.saturating_sub(self.warmup).max(1);
                let progress = (since as f64 / span as f64).min(1.0);
                (self.base as f64 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
            }
        }
    }

    /// "" for a constant rate without warm-up; otherwise how the rate moves, for the run's header.
    pub fn describe(&self) -> String {
        let warmup = if self.warmup > 0 { format!(", {} warm-up iterations", self.warmup) } else { String::new() };
        match self.kind {
            LrSchedule::Constant if self.warmup == 0 => String::new(),
            LrSchedule::Constant => format!(" (constant{warmup})"),
            LrSchedule::Step => format!(" (x{} every {} iterations{warmup})", self.gamma, self.step_every),
            LrSchedule::Cosine => format!(" (cosine to 0 by iteration {}{warmup})", self.total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: LrSchedule, warmup: usize) -> Schedule {
        Schedule { kind, base: 0.8, warmup, step_every: 10, gamma: 0.5, total: 100 }
    }

    #[test]
    fn warm_up_rises_linearly_to_the_base_rate() {
        let s = schedule(LrSchedule::Constant, 4);
        let rates: Vec<f32> = (1..=6).map(|t| s.lr(t)).collect();
        assert_eq!(rates, vec![0.2, 0.4, 0.6, 0.8, 0.8, 0.8]);
        assert_eq!(Schedule::constant(0.3).lr(1), 0.3);
        assert_eq!(Schedule::constant(0.3).lr(10_000), 0.3);
    }

    #[test]
    fn step_decays_by_gamma_every_step_after_the_warm_up() {
        let s = schedule(LrSchedule::Step, 0);
        assert_eq!([1, 10, 11, 20, 21, 31].map(|t| s.lr(t)), [0.8, 0.8, 0.4, 0.4, 0.2, 0.1]);
        let w = schedule(LrSchedule::Step, 5);
        assert_eq!([5, 6, 15, 16].map(|t| w.lr(t)), [0.8, 0.8, 0.8, 0.4]);
    }

    #[test]
    fn cosine_falls_from_the_base_rate_to_zero_over_the_rest_of_the_run() {
        let s = schedule(LrSchedule::Cosine, 20);
        assert_eq!(s.lr(21), 0.8);
        // Halfway through the 80 iterations after the warm-up: half the base rate.
        assert!((s.lr(61) - 0.4).abs() < 1e-6, "{}", s.lr(61));
        assert!(s.lr(100) > 0.0 && s.lr(100) < 0.001, "{}", s.lr(100));
        assert!((21..100).all(|t| s.lr(t + 1) <= s.lr(t)), "non-increasing");
    }
}
