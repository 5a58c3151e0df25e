//! What `eval` reports: accuracy, mean cross-entropy, per-class precision and recall, and the
//! confusion matrix, from class probabilities and labels.

use serde::Serialize;

/// The class of a row of probabilities: the first of the largest.
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (j, &p)| if p > row[best] { j } else { best })
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub class: usize,
    /// Of the images predicted as this class, the fraction that are (NaN when none is).
    pub precision: f64,
    /// Of the images of this class, the fraction predicted as it (NaN when there is none).
    pub recall: f64,
    /// Images of this class.
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Mean cross-entropy, -ln p(label), with p floored at the smallest positive f32.
    pub loss: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// `probs` is n x k row-major; `labels` has n entries below k.
    pub fn new(probs: &[f32], labels: &[u8], k: usize) -> Self {
        let n = labels.len();
        let mut confusion = vec![vec![0usize; k]; k];
        let mut loss = 0.0f64;
        for (row, &y) in probs.chunks_exact(k).zip(labels) {
            let predicted = argmax(row);
            confusion[y as usize][predicted] += 1;
            loss -= (row[y as usize].max(f32::MIN_POSITIVE) as f64).ln();
        }
        let correct: usize = (0..k).map(|c| confusion[c][c]).sum();
        let per_class = (0..k)
            .map(|c| {
                let predicted: usize = confusion.iter().map(|r| r[c]).sum();
                let support: usize = confusion[c].iter().sum();
                let tp = confusion[c][c] as f64;
                ClassMetrics { class: c, precision: tp / predicted as f64, recall: tp / support as f64, support }
            })
            .collect();
        let nf = n.max(1) as f64;
        Evaluation { n, correct, accuracy: correct as f64 / nf, loss: loss / nf, per_class, confusion }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_hand() {
        // 3 classes; rows: true 0 -> 0, true 0 -> 1, true 1 -> 1, true 2 -> 1.
        let probs = [0.8, 0.1, 0.1, 0.3, 0.6, 0.1, 0.2, 0.7, 0.1, 0.1, 0.5, 0.4];
        let e = Evaluation::new(&probs, &[0, 0, 1, 2], 3);
        assert_eq!(e.confusion, vec![vec![1, 1, 0], vec![0, 1, 0], vec![0, 1, 0]]);
        assert_eq!((e.correct, e.n), (2, 4));
        assert_eq!(e.per_class[0].precision, 1.0);
        assert_eq!(e.per_class[0].recall, 0.5);
        assert!((e.per_class[1].precision - 1.0 / 3.0).abs() < 1e-12);
        assert!(e.per_class[2].precision.is_nan() && e.per_class[2].recall == 0.0);
        let want = -((0.8f32 as f64).ln() + (0.3f32 as f64).ln() + (0.7f32 as f64).ln() + (0.4f32 as f64).ln()) / 4.0;
        assert!((e.loss - want).abs() < 1e-12);
    }
}
