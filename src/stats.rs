//! Statistics for every report, each with one definition: quantiles and percentiles (of
//! samples, or streamed through a histogram when a run cannot keep every sample), and
//! detection metrics over (score, is_defect) pairs.
//!
//! Higher scores mean "more anomalous". A part counts as rejected exactly when the line
//! would reject it (`judge::Threshold::judge`): a score that is not a finite number
//! rejects at every threshold, so it ranks as the most anomalous.

use crate::frame::Verdict;
use crate::judge::{self, Threshold};

// ---- quantiles and percentiles ----

/// The values in ascending order (`f64::total_cmp`), ready for `quantile`.
pub fn sorted(values: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The `q`-quantile of ascending values: linear interpolation between the order statistics
/// around rank q·(n−1) (numpy's default). The one definition behind every p50 and p99 that
/// linesight reports.
///
/// # Panics
/// On an empty slice: there is no quantile of nothing.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "a quantile needs at least one value");
    interpolate(q, sorted.len() as u64, |k| sorted[k as usize])
}

/// The median of values in any order (`quantile` at 0.5); None when there are none.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let v = sorted(values);
    (!v.is_empty()).then(|| quantile(&v, 0.5))
}

/// The value at rank q·(n−1) among `n` values, `at(k)` giving the k-th smallest (from 0).
fn interpolate(q: f64, n: u64, mut at: impl FnMut(u64) -> f64) -> f64 {
    let rank = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let k = rank.floor() as u64;
    let (below, frac) = (at(k), rank - k as f64);
    if frac == 0.0 {
        below
    } else {
        below + (at(k + 1) - below) * frac
    }
}

/// How latencies are reported: the median, the 99th percentile and the largest value.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Of samples in any order; None when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Percentiles> {
        let v = sorted(values);
        let max = *v.last()?;
        Some(Percentiles {
            p50: quantile(&v, 0.5),
            p99: quantile(&v, 0.99),
            max,
        })
    }

    /// `[p50, p99, max]`, the order summaries and metrics list them in.
    pub fn to_array(self) -> [f64; 3] {
        [self.p50, self.p99, self.max]
    }
}

/// Durations of a run that may never end, in bounded memory (hdrhistogram): microsecond
/// resolution, 3 significant digits, from 1 µs to 60 s (shorter counts as 1 µs, longer as
/// 60 s). Its quantiles follow `quantile`'s definition over the recorded values, each
/// taken at the middle of its bucket: exact to the microsecond up to 2.048 ms, within
/// 1/2048 of the value above (plus half a microsecond of rounding). The smallest and the
/// largest value are kept exactly.
pub struct Histogram {
    buckets: hdrhistogram::Histogram<u64>,
    min_us: u64,
    max_us: u64,
    /// Of the recorded (clamped, whole-µs) values: exact, for a Prometheus `_sum`.
    sum_us: u64,
}

/// Durations as a Prometheus histogram reports them: how many, their sum, and how many
/// fell in each bucket (not cumulative), the last bucket's bound being +Inf.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets {
    pub count: u64,
    pub sum_s: f64,
    /// (upper bound in seconds, values above the previous bound and at most this one).
    pub per_bucket: Vec<(f64, u64)>,
}

const HISTOGRAM_MAX_US: u64 = 60_000_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: hdrhistogram::Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("static bounds are valid"),
            min_us: u64::MAX,
            max_us: 0,
            sum_us: 0,
        }
    }

    pub fn record_ms(&mut self, ms: f64) {
        let us = ((ms * 1000.0).round() as u64).clamp(1, HISTOGRAM_MAX_US);
        self.buckets.record(us).expect("clamped into the bounds");
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
        self.sum_us += us;
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.buckets.len()
    }

    /// The `q`-quantile in ms, as `quantile` defines it; None before the first value.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.is_empty() {
            return None;
        }
        let us = interpolate(q, self.len(), |k| self.order_statistic_us(k));
        Some(us / 1000.0)
    }

    /// p50, p99 and max in ms; None before the first value.
    pub fn percentiles_ms(&self) -> Option<Percentiles> {
        Some(Percentiles {
            p50: self.quantile_ms(0.5)?,
            p99: self.quantile_ms(0.99)?,
            max: self.max_us as f64 / 1000.0,
        })
    }

    /// The values in bucket form at `bounds_s` (ascending, in seconds; +Inf is added),
    /// each value taken as `order_statistic_us` takes it: exact below 2.048 ms, within the
    /// histogram's resolution (1/2048) above.
    pub fn buckets_s(&self, bounds_s: &[f64]) -> Buckets {
        let mut per_bucket: Vec<(f64, u64)> = bounds_s.iter().chain([&f64::INFINITY]).map(|&b| (b, 0)).collect();
        for (us, n) in self.recorded_us() {
            let s = us as f64 / 1e6;
            let i = per_bucket
                .iter()
                .position(|(bound, _)| s <= *bound)
                .expect("+Inf holds every value");
            per_bucket[i].1 += n;
        }
        Buckets {
            count: self.len(),
            sum_s: self.sum_us as f64 / 1e6,
            per_bucket,
        }
    }

    /// The recorded values, ascending, with their counts, µs: each the middle of its
    /// bucket, kept within the exact smallest and largest values.
    fn recorded_us(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets.iter_recorded().map(|v| {
            let middle = self.buckets.median_equivalent(v.value_iterated_to());
            (middle.clamp(self.min_us, self.max_us), v.count_at_value())
        })
    }

    /// The k-th smallest recorded value (from 0), µs.
    fn order_statistic_us(&self, k: u64) -> f64 {
        let mut seen = 0;
        for (us, n) in self.recorded_us() {
            seen += n;
            if seen > k {
                return us as f64;
            }
        }
        self.max_us as f64
    }
}

// ---- detection metrics ----

/// Whether the line rejects a part with `score` at `threshold` (its one rule).
pub fn rejects(threshold: f32, score: f32) -> bool {
    Threshold(threshold).judge(score).verdict() == Verdict::Reject
}

/// Area under the ROC curve: the chance that a random defective part scores above a
/// random good one (ties count half), scores ranked as the rule ranks them. None unless
/// both classes are present.
pub fn auroc(scored: &[(f32, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|s| s.1).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let sorted = ranked(scored);
    // Mann-Whitney U from average ranks over tie groups.
    let mut rank_sum = 0.0;
    let mut i = 0;
    for group in sorted.chunk_by(|a, b| a.0 == b.0) {
        let j = i + group.len();
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += avg_rank * group.iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// The pairs with their scores as the rule ranks them, from the least anomalous up.
fn ranked(scored: &[(f32, bool)]) -> Vec<(f32, bool)> {
    let mut v: Vec<(f32, bool)> = scored.iter().map(|&(s, d)| (judge::rank_score(s), d)).collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// One operating point: the line's verdicts at `threshold`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Point {
    pub threshold: f32,
    pub recall: f64,
    pub false_reject_rate: f64,
    pub precision: f64,
    pub f1: f64,
}

/// Every distinct operating point, from the strictest threshold to the loosest. The
/// strictest, +inf, still rejects the scores that are not finite numbers.
pub fn curve(scored: &[(f32, bool)]) -> Vec<Point> {
    let (pos, neg) = tally(scored);
    let mut sorted = ranked(scored);
    sorted.reverse();
    // Non-finite scores rank as +inf, first: rejected at every threshold.
    let finite = sorted.partition_point(|s| s.0 == f32::INFINITY);
    let (mut tp, mut fp) = tally(&sorted[..finite]);
    let mut out = vec![point(f32::INFINITY, tp, fp, pos, neg)];
    let groups: Vec<&[(f32, bool)]> = sorted[finite..].chunk_by(|a, b| a.0 == b.0).collect();
    for (k, group) in groups.iter().enumerate() {
        let (defects, goods) = tally(group);
        (tp, fp) = (tp + defects, fp + goods);
        // Everything scored >= s is rejected: the threshold sits just below s.
        let s = group[0].0;
        let t = match groups.get(k + 1) {
            Some(next) => next[0].0 + (s - next[0].0) * 0.5,
            None => s - s.abs().max(1e-6) * 1e-3,
        };
        out.push(point(t, tp, fp, pos, neg));
    }
    out
}

/// (defective, good) parts among `scored`.
fn tally(scored: &[(f32, bool)]) -> (f64, f64) {
    let defects = scored.iter().filter(|s| s.1).count();
    (defects as f64, (scored.len() - defects) as f64)
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
    let (pos, neg) = tally(scored);
    let rejected: Vec<(f32, bool)> = scored.iter().copied().filter(|s| rejects(threshold, s.0)).collect();
    let (tp, fp) = tally(&rejected);
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
    fn quantiles_interpolate_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.0), 1.0);
        assert_eq!(quantile(&s, 0.5), 2.5);
        assert_eq!(quantile(&s, 1.0), 4.0);
        assert!((quantile(&s, 0.9) - 3.7).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(median([3.0, 1.0, 2.0, 10.0]), Some(2.5));
        assert_eq!(median([]), None);
    }

    #[test]
    fn percentiles_of_samples_in_any_order() {
        let v: Vec<f64> = (0..=100).rev().map(f64::from).collect();
        let p = Percentiles::of(v).unwrap();
        assert_eq!(
            p,
            Percentiles {
                p50: 50.0,
                p99: 99.0,
                max: 100.0
            }
        );
        assert_eq!(Percentiles::of([]), None);
    }

    /// Latencies from 0.2 ms to about 80 ms, unevenly spread (a fixed pseudo-random walk).
    fn latencies(n: usize) -> Vec<f64> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                0.2 * (400f64).powf(u * u)
            })
            .collect()
    }

    #[test]
    fn the_histogram_agrees_with_the_sample_quantile_within_its_resolution() {
        for n in [1, 2, 7, 1000, 5001] {
            let v = latencies(n);
            let mut h = Histogram::new();
            v.iter().for_each(|ms| h.record_ms(*ms));
            assert_eq!(h.len(), n as u64);
            let s = sorted(v);
            for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let (exact, streamed) = (quantile(&s, q), h.quantile_ms(q).unwrap());
                // Half a microsecond of rounding, and 3 significant digits (1/2048) above 2 ms.
                let resolution = 0.0005 + exact / 2048.0;
                assert!(
                    (exact - streamed).abs() <= resolution,
                    "n {n}, q {q}: samples {exact}, histogram {streamed}"
                );
            }
            let p = h.percentiles_ms().unwrap();
            assert!((p.max - s[n - 1]).abs() <= 0.0005, "the largest value is kept exactly");
        }
        assert_eq!(Histogram::new().quantile_ms(0.5), None);
        assert_eq!(Histogram::new().percentiles_ms(), None);
    }

    #[test]
    fn the_histogram_is_exact_for_whole_microseconds_below_2_ms() {
        let mut h = Histogram::new();
        for ms in [0.5, 1.0, 1.5, 2.0] {
            h.record_ms(ms);
        }
        // The median interpolates between 1.0 and 1.5, as with the samples.
        assert_eq!(h.quantile_ms(0.5), Some(1.25));
        assert_eq!(h.quantile_ms(0.0), Some(0.5));
        assert_eq!(h.percentiles_ms().unwrap().max, 2.0);
        // Out of bounds: at least 1 µs, at most 60 s.
        h.record_ms(0.0);
        h.record_ms(1e9);
        assert_eq!(h.quantile_ms(0.0), Some(0.001));
        assert_eq!(h.quantile_ms(1.0), Some(60_000.0));
    }

    #[test]
    fn buckets_count_each_value_once_at_its_bound_or_the_next_above() {
        let mut h = Histogram::new();
        for ms in [0.2, 0.5, 0.5001, 1.0, 30.0, 1e9] {
            h.record_ms(ms);
        }
        let b = h.buckets_s(&[0.0005, 0.001, 0.01]);
        assert_eq!(
            b.per_bucket,
            [(0.0005, 3), (0.001, 1), (0.01, 0), (f64::INFINITY, 2)],
            "0.5001 ms is 500 µs (whole µs), at the bound; 30 ms and 1e9 ms (counted as 60 s) above the last"
        );
        assert_eq!(b.count, 6);
        // 200 + 500 + 500 + 1000 + 30000 + 60000000 µs
        assert!((b.sum_s - 60.032200).abs() < 1e-9, "{b:?}");
        let empty = Histogram::new().buckets_s(&[0.001]);
        assert_eq!(
            (empty.count, empty.sum_s, empty.per_bucket),
            (0, 0.0, vec![(0.001, 0), (f64::INFINITY, 0)])
        );
    }

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

    /// Every point of the curve is what `at_threshold` finds at its threshold.
    fn assert_curve_agrees_with_its_thresholds(scored: &[(f32, bool)]) {
        for p in curve(scored) {
            let q = at_threshold(scored, p.threshold);
            assert_eq!(
                (p.recall, p.false_reject_rate),
                (q.recall, q.false_reject_rate),
                "at {}",
                p.threshold
            );
        }
    }

    #[test]
    fn curve_points_agree_with_their_thresholds() {
        assert_curve_agrees_with_its_thresholds(&MIXED);
    }

    /// A score that is not a number rejects at every threshold, as on the line.
    const WITH_NON_NUMBERS: [(f32, bool); 7] = [
        (0.1, false),
        (f32::NAN, false),
        (0.35, true),
        (0.4, false),
        (f32::NAN, true),
        (f32::NEG_INFINITY, true),
        (f32::INFINITY, false),
    ];

    #[test]
    fn a_score_that_is_not_a_number_is_a_reject_at_any_threshold() {
        let p = at_threshold(&WITH_NON_NUMBERS, 0.5);
        // NaN and -inf defects caught, NaN and +inf goods rejected.
        assert_eq!((p.recall, p.false_reject_rate), (2.0 / 3.0, 2.0 / 4.0));
        let p = at_threshold(&WITH_NON_NUMBERS, f32::INFINITY);
        assert_eq!((p.recall, p.false_reject_rate), (2.0 / 3.0, 2.0 / 4.0));
        assert!(rejects(0.5, f32::NAN) && rejects(0.5, 0.6) && !rejects(0.5, 0.5));
    }

    #[test]
    fn curves_and_auroc_rank_a_non_number_as_the_most_anomalous() {
        assert_eq!(auroc(&[(0.9, false), (f32::NAN, true)]), Some(1.0));
        assert_eq!(auroc(&[(f32::NAN, false), (0.1, true)]), Some(0.0));
        assert_eq!(auroc(&[(f32::NEG_INFINITY, false), (f32::NAN, true)]), Some(0.5));
        let c = curve(&WITH_NON_NUMBERS);
        // The strictest point already rejects the non-numbers; then 0.4, 0.35, 0.1.
        assert_eq!(
            (c[0].threshold, c[0].recall, c[0].false_reject_rate),
            (f32::INFINITY, 2.0 / 3.0, 0.5)
        );
        assert_eq!(c.len(), 4);
        assert_curve_agrees_with_its_thresholds(&WITH_NON_NUMBERS);
        assert_eq!(
            false_rejects_at_recall(&WITH_NON_NUMBERS, 1.0)
                .unwrap()
                .false_reject_rate,
            0.75
        );
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
