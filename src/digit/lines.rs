//! Ruled and squared paper: printed lines that cross the whole picture.
//!
//! A row (or column) is a rule when ink covers at least [`COVER`] of it; neighbouring such rows
//! form one line, which must be thin (at most [`thickest`] rows). Handwriting rarely fills a row
//! edge to edge, but a digit's bar can, so a single line is taken as a rule only when it runs
//! edge to edge ([`COVER_ALONE`]); rules come several to a page.
//!
//! A rule is removed only where it is thin: at a column where there is no ink just beyond the
//! line on either side, the line's rows (and one row either side, its blur) are cleared; where a
//! stroke crosses or touches the line, the stroke is kept whole. Removal runs on rows, then on
//! columns, so a grid's crossings go too.

use super::plane::Plane;

/// The share of a row that ink must cover for the row to be part of a rule.
const COVER: f32 = 0.75;
/// The share a line must cover to be taken as a rule when it is the only one.
const COVER_ALONE: f32 = 0.97;
/// Ink weaker than this fraction of the strongest is not looked at for rules.
const FAINT: f32 = 0.15;
/// Lines are looked for only across pictures at least this many pixels wide (or tall).
const MIN_SPAN: usize = 32;

/// The thickest a rule may be, in rows of a picture `span` rows tall.
fn thickest(span: usize) -> usize {
    (span / 40).max(2)
}

/// Removes ruled lines (rows), then squared paper's columns, from `ink`.
pub(super) fn remove(ink: &mut Plane) {
    let faint = FAINT * ink.max();
    if faint <= 0.0 {
        return;
    }
    remove_along(ink, faint, false);
    remove_along(ink, faint, true);
}

/// Rules along rows (`columns` false) or along columns.
fn remove_along(ink: &mut Plane, faint: f32, columns: bool) {
    // (length along a line, number of lines across): a row is `w` long and there are `h` rows.
    let (len, across) = if columns { (ink.h, ink.w) } else { (ink.w, ink.h) };
    if len < MIN_SPAN || across < MIN_SPAN {
        return;
    }
    let w = ink.w;
    let index = move |along: usize, line: usize| if columns { along * w + line } else { line * w + along };
    let cover: Vec<f32> = (0..across)
        .map(|line| (0..len).filter(|&a| ink.v[index(a, line)] >= faint).count() as f32 / len as f32)
        .collect();
    // Runs of covered lines: (first, last, best cover).
    let mut bands: Vec<(usize, usize, f32)> = Vec::new();
    for (line, &c) in cover.iter().enumerate() {
        if c < COVER {
            continue;
        }
        match bands.last_mut() {
            Some((_, last, best)) if *last + 1 == line => {
                *last = line;
                *best = best.max(c);
            }
            _ => bands.push((line, line, c)),
        }
    }
    bands.retain(|&(first, last, _)| last - first < thickest(across));
    if bands.len() < 2 {
        bands.retain(|&(_, _, best)| best >= COVER_ALONE);
    }
    for (first, last, _) in bands {
        let (lo, hi) = (first.saturating_sub(1), (last + 1).min(across - 1));
        // Ink just beyond the line on either side, within a pixel along it: a stroke.
        let beyond = |along: usize, line: Option<usize>| {
            line.is_some_and(|l| {
                (along.saturating_sub(1)..=(along + 1).min(len - 1)).any(|a| ink.v[index(a, l)] >= faint)
            })
        };
        let before = lo.checked_sub(1);
        let after = (hi + 1 < across).then_some(hi + 1);
        let clear: Vec<usize> = (0..len).filter(|&a| !beyond(a, before) && !beyond(a, after)).collect();
        for a in clear {
            for line in lo..=hi {
                ink.v[index(a, line)] = 0.0;
            }
        }
    }
}
