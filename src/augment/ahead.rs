//! The next epoch's images, drawn while this epoch trains.
//!
//! An augmented epoch needs every training image distorted before its first step; drawn then, the
//! draw adds its whole time to the epoch. While a GPU trains, the host's cores are idle, so once
//! epoch e's images are handed over, a thread starts on epoch e + 1's at Linux's idle priority
//! (`SCHED_IDLE`: it runs only on a core that would otherwise idle, and gives way to any other
//! thread). It draws pieces of `PIECE` images, claimed one at a time from a counter; `take(e + 1)`
//! claims whatever pieces are left with the rayon pool and waits for the one the thread has in hand.
//!
//! The CPU backend does not draw ahead: its step keeps both cores busy but for moments (about a
//! tenth of the time here) between parallel phases, and an idle-priority draw in those moments
//! made its steps as much slower as the draw it hid (784-800-10, batch-128 Adam, elastic: 1.3-1.5 s
//! per epoch either way). Nor does a GPU backend on a software adapter, which computes on the cores.
//!
//! Who draws an image cannot change it: image i of epoch e depends on (seed, e, i) alone (see
//! `draw_image`), so `take(e)` returns `epoch_images(.., e)` bit for bit. Where there is no idle
//! priority (other systems), a thread of normal priority would hold up the host's own work, so
//! `take` draws the whole epoch itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::{Augment, draw_image};

/// Images per claimed piece: a few milliseconds of one core's drawing, so that `take` seldom
/// waits long for the piece the idle thread holds.
const PIECE: usize = 256;

/// A training set's images and the distortion each epoch draws of them.
pub struct EpochImages {
    source: Arc<Source>,
    /// Whether to draw the next epoch while this one trains.
    ahead: bool,
    /// The draw of the epoch after the one `take` handed over last, under way.
    next: Option<(Arc<Draw>, JoinHandle<()>)>,
    /// Pieces of the last epoch taken that the idle thread drew.
    drawn_ahead: usize,
    /// The last epoch's images, whose memory each epoch reuses.
    pixels: Vec<u8>,
}

struct Source {
    pixels: Vec<u8>,
    rows: usize,
    cols: usize,
    aug: Augment,
    seed: u64,
}

/// One epoch's draw: piece p holds images `p * PIECE..`, set by whoever claimed it.
struct Draw {
    epoch: usize,
    next: AtomicUsize,
    pieces: Vec<OnceLock<Vec<u8>>>,
    /// Pieces drawn by the idle thread.
    by_idle: AtomicUsize,
}

impl Source {
    fn images(&self) -> usize {
        self.pixels.len().checked_div(self.rows * self.cols).unwrap_or(0)
    }

    fn piece(&self, epoch: usize, p: usize) -> Vec<u8> {
        let d = self.rows * self.cols;
        let mut out = vec![0u8; ((p + 1) * PIECE * d).min(self.pixels.len()) - p * PIECE * d];
        self.draw_piece(&mut out, epoch, p);
        out
    }

    /// Piece `p` of epoch `epoch` into `out` (as long as the piece).
    fn draw_piece(&self, out: &mut [u8], epoch: usize, p: usize) {
        let (d, first) = (self.rows * self.cols, p * PIECE);
        let src = &self.pixels[first * d..][..out.len()];
        for (i, (dst, src)) in out.chunks_exact_mut(d).zip(src.chunks_exact(d)).enumerate() {
            draw_image(dst, src, self.rows, self.cols, &self.aug, self.seed, epoch, first + i);
        }
    }
}

impl Draw {
    fn new(epoch: usize, images: usize) -> Draw {
        let pieces = (0..images.div_ceil(PIECE)).map(|_| OnceLock::new()).collect();
        Draw { epoch, next: AtomicUsize::new(0), pieces, by_idle: AtomicUsize::new(0) }
    }

    /// Draws unclaimed pieces until none is left.
    fn work(&self, source: &Source, idle: bool) {
        loop {
            let p = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = self.pieces.get(p) else { return };
            let _ = slot.set(source.piece(self.epoch, p));
            if idle {
                self.by_idle.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Leaves the pieces not yet claimed undrawn.
    fn abandon(&self) {
        self.next.store(self.pieces.len(), Ordering::Relaxed);
    }
}

impl EpochImages {
    /// `pixels`: the training images, `rows` x `cols` each, row-major; `ahead`: whether to draw
    /// each next epoch while this one trains (where the system has an idle priority).
    pub fn new(pixels: Vec<u8>, rows: usize, cols: usize, aug: Augment, seed: u64, ahead: bool) -> EpochImages {
        let source = Arc::new(Source { pixels, rows, cols, aug, seed });
        EpochImages { source, ahead, next: None, drawn_ahead: 0, pixels: Vec::new() }
    }

    /// Epoch `epoch`'s images, as `epoch_images` draws them (valid until the next call, whose
    /// images take the same memory); then starts on the next epoch's.
    pub fn take(&mut self, epoch: usize) -> &[u8] {
        let source = &self.source;
        let d = source.rows * source.cols;
        self.pixels.resize(source.pixels.len(), 0);
        let ahead = match self.next.take() {
            Some((draw, thread)) if draw.epoch == epoch => Some((draw, thread)),
            Some((other, thread)) => {
                other.abandon();
                let _ = thread.join();
                None
            }
            None => None,
        };
        self.drawn_ahead = 0;
        match ahead {
            // Nothing drawn yet: the pool draws every piece in place.
            None => self.pixels.par_chunks_mut(PIECE * d.max(1)).enumerate().for_each(|(p, out)| {
                source.draw_piece(out, epoch, p);
            }),
            Some((draw, thread)) => {
                (0..rayon::current_num_threads()).into_par_iter().for_each(|_| draw.work(source, false));
                // The idle thread ends once it has drawn the piece in its hand.
                let _ = thread.join();
                self.drawn_ahead = draw.by_idle.load(Ordering::Relaxed);
                for (p, out) in self.pixels.chunks_mut(PIECE * d.max(1)).enumerate() {
                    // A piece is missing only if the idle thread died drawing it.
                    match draw.pieces[p].get() {
                        Some(piece) => out.copy_from_slice(piece),
                        None => source.draw_piece(out, epoch, p),
                    }
                }
            }
        }
        self.next = if self.ahead { draw_ahead(source, epoch + 1) } else { None };
        &self.pixels
    }

    /// Pixels per image (rows x cols).
    pub fn d(&self) -> usize {
        self.source.rows * self.source.cols
    }

    /// How many of the last epoch's images the idle thread drew, counted in whole pieces (the
    /// last piece may be short, so this is exact when it drew none or all of them).
    pub fn drawn_ahead(&self) -> usize {
        (self.drawn_ahead * PIECE).min(self.source.images())
    }
}

impl Drop for EpochImages {
    fn drop(&mut self) {
        if let Some((draw, thread)) = self.next.take() {
            draw.abandon();
            let _ = thread.join();
        }
    }
}

/// Starts drawing `epoch` in a thread of idle priority; `None` where the system has none.
fn draw_ahead(source: &Arc<Source>, epoch: usize) -> Option<(Arc<Draw>, JoinHandle<()>)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let draw = Arc::new(Draw::new(epoch, source.images()));
    let (d, s) = (draw.clone(), source.clone());
    let thread = std::thread::Builder::new()
        .name("augment-ahead".into())
        .spawn(move || {
            if idle_priority() {
                d.work(&s, true);
            }
        })
        .ok()?;
    Some((draw, thread))
}

/// Puts the calling thread at idle priority; false if the system refuses (then it draws nothing,
/// and `take` draws every piece).
fn idle_priority() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param; pid 0 is the calling thread.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    false
}

#[cfg(test)]
mod tests {
    use super::super::{Augmentation, epoch_images};
    use super::*;

    #[test]
    fn each_epoch_is_the_plain_draw_whoever_draws_it() {
        let mut rng = 7u32;
        // 3 pieces and a part of one.
        let pixels: Vec<u8> = (0..(3 * PIECE + 17) * 64)
            .map(|_| {
                rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if rng >> 30 == 0 { (rng >> 8) as u8 } else { 0 }
            })
            .collect();
        for kind in [Augmentation::Affine, Augmentation::Elastic] {
            let aug = Augment { kind, ..Default::default() };
            for ahead in [false, true] {
                let mut images = EpochImages::new(pixels.clone(), 8, 8, aug, 5, ahead);
                // In order, then a jump (the draw ahead is of the wrong epoch), then back.
                for epoch in [0, 1, 2, 5, 6, 3] {
                    if epoch == 2 && ahead {
                        // Time for the idle thread to draw all of epoch 2 (other tests may keep
                        // the cores busy a while).
                        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
                        while images.next.as_ref().is_some_and(|(_, thread)| !thread.is_finished()) {
                            assert!(std::time::Instant::now() < deadline, "the idle thread never finished");
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                    }
                    let want = epoch_images(&pixels, 8, 8, &aug, 5, epoch);
                    assert!(images.take(epoch) == want, "{kind:?} ahead {ahead}: epoch {epoch}");
                    let by_idle = images.drawn_ahead();
                    match (ahead && cfg!(target_os = "linux"), epoch) {
                        (true, 2) => assert_eq!(by_idle, 3 * PIECE + 17, "{kind:?}: the idle thread drew epoch 2"),
                        (true, 0 | 5) | (false, _) => assert_eq!(by_idle, 0, "{kind:?} ahead {ahead}: epoch {epoch}"),
                        _ => {}
                    }
                }
            }
        }
    }
}
