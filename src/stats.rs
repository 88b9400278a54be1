//! Detection metrics over (score, is_defect) pairs. Higher scores mean "more anomalous".

/// Area under the ROC curve: the chance that a random defective part scores above a
/// random good one (ties count half). None unless both classes are present.
pub fn auroc(scored: &[(f32, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|s| s.1).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Mann-Whitney U from average ranks over tie groups.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..]
            .iter()
            .position(|s| s.0 != sorted[i].0)
            .map_or(sorted.len(), |k| i + k);
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg_rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// One operating point: reject when score > threshold.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Point {
    pub threshold: f32,
    pub recall: f64,
    pub false_reject_rate: f64,
    pub precision: f64,
    pub f1: f64,
}

/// Every distinct operating point, from the strictest threshold to the loosest.
/// A threshold t rejects scores strictly above t (as linesight's verdict does).
pub fn curve(scored: &[(f32, bool)]) -> Vec<Point> {
    let pos = scored.iter().filter(|s| s.1).count() as f64;
    let neg = scored.len() as f64 - pos;
    let mut sorted = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = vec![point(f32::INFINITY, 0.0, 0.0, pos, neg)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < sorted.len() {
        let s = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == s {
            if sorted[i].1 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            i += 1;
        }
        // Everything scored >= s is rejected: the threshold sits just below s.
        let below = sorted.get(i).map_or(f32::NEG_INFINITY, |n| n.0);
        let t = if below.is_finite() {
            below + (s - below) * 0.5
        } else {
            s - s.abs().max(1e-6) * 1e-3
        };
        out.push(point(t, tp, fp, pos, neg));
    }
    out
}

fn point(threshold: f32, tp: f64, fp: f64, pos: f64, neg: f64) -> Point {
    let recall = if pos > 0.0 { tp / pos } else { 0.0 };
    let precision = if tp + fp > 0.0 { tp / (tp + fp) } else { 1.0 };
    Point {
        threshold,
        recall,
        false_reject_rate: if neg > 0.0 { fp / neg } else { 0.0 },
        precision,
        f1: if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        },
    }
}

/// The operating point at a given threshold.
pub fn at_threshold(scored: &[(f32, bool)], threshold: f32) -> Point {
    let pos = scored.iter().filter(|s| s.1).count() as f64;
    let neg = scored.len() as f64 - pos;
    let tp = scored.iter().filter(|s| s.1 && s.0 > threshold).count() as f64;
    let fp = scored.iter().filter(|s| !s.1 && s.0 > threshold).count() as f64;
    point(threshold, tp, fp, pos, neg)
}

/// The threshold with the best F1 (ties: the higher threshold, fewer false rejects).
pub fn best_f1(scored: &[(f32, bool)]) -> Point {
    curve(scored)
        .into_iter()
        .fold(None::<Point>, |best, p| match best {
            Some(b) if b.f1 >= p.f1 => Some(b),
            _ => Some(p),
        })
        .expect("the curve has at least one point")
}

/// The lowest false-reject rate that still catches `recall` of the defects.
pub fn false_rejects_at_recall(scored: &[(f32, bool)], recall: f64) -> Option<Point> {
    curve(scored).into_iter().find(|p| p.recall >= recall - 1e-12)
}

/// Average precision: the area under the precision-recall curve (step-wise).
pub fn average_precision(scored: &[(f32, bool)]) -> Option<f64> {
    if !scored.iter().any(|s| s.1) {
        return None;
    }
    let mut ap = 0.0;
    let mut last_recall = 0.0;
    for p in curve(scored) {
        ap += (p.recall - last_recall) * p.precision;
        last_recall = p.recall;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: [(f32, bool); 6] = [
        (0.1, false),
        (0.2, false),
        (0.35, true),
        (0.4, false),
        (0.8, true),
        (0.9, true),
    ];

    #[test]
    fn auroc_ranks_defects_above_good_parts() {
        assert_eq!(
            auroc(&[(0.1, false), (0.2, false), (0.8, true), (0.9, true)]),
            Some(1.0)
        );
        assert_eq!(auroc(&[(0.9, false), (0.1, true)]), Some(0.0));
        assert_eq!(auroc(&[(0.5, false), (0.5, true)]), Some(0.5));
        // 8 of 9 (defect, good) pairs in order.
        assert!((auroc(&MIXED).unwrap() - 8.0 / 9.0).abs() < 1e-12);
        assert_eq!(auroc(&[(0.1, false)]), None);
    }

    #[test]
    fn thresholds_reject_strictly_above() {
        let p = at_threshold(&MIXED, 0.4);
        assert_eq!((p.recall, p.false_reject_rate), (2.0 / 3.0, 0.0));
        let p = at_threshold(&MIXED, 0.3);
        assert_eq!((p.recall, p.false_reject_rate), (1.0, 1.0 / 3.0));
    }

    #[test]
    fn curve_points_agree_with_their_thresholds() {
        for p in curve(&MIXED) {
            let q = at_threshold(&MIXED, p.threshold);
            assert_eq!(
                (p.recall, p.false_reject_rate),
                (q.recall, q.false_reject_rate),
                "at {}",
                p.threshold
            );
        }
    }

    #[test]
    fn operating_points() {
        let full = false_rejects_at_recall(&MIXED, 1.0).unwrap();
        assert_eq!(full.false_reject_rate, 1.0 / 3.0);
        let best = best_f1(&MIXED);
        assert!((best.f1 - 6.0 / 7.0).abs() < 1e-12, "{best:?}");
        // Precision 1 at recall 2/3, then 3/4 at recall 1: AP = 2/3 + 1/3 * 3/4.
        assert!((average_precision(&MIXED).unwrap() - (2.0 / 3.0 + 0.25)).abs() < 1e-12);
    }
}
