//! Rates with their uncertainty: the Wilson score interval for one
//! proportion, and Newcombe's hybrid score interval for the difference of
//! two (method 10 in Newcombe 1998), which is built from the two Wilson
//! intervals and, unlike the Wald interval, behaves at rates near 0 and 1,
//! where most low-value services are.

/// z for a two-sided 95 % interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A proportion with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// flagged / eligible; 0 without eligible units.
    pub rate: f64,
    /// The 95 % Wilson interval; [0, 1] without eligible units (nothing is known).
    pub ci95: [f64; 2],
}

/// `flagged` of `eligible`, with its 95 % Wilson score interval.
pub fn wilson(flagged: u64, eligible: u64) -> Rate {
    if eligible == 0 {
        return Rate {
            rate: 0.0,
            ci95: [0.0, 1.0],
        };
    }
    let n = eligible as f64;
    let p = flagged.min(eligible) as f64 / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Rate {
        rate: p,
        ci95: [(centre - half).max(0.0), (centre + half).min(1.0)],
    }
}

/// The difference `after − before` of two rates, with Newcombe's 95 %
/// hybrid score interval.
pub fn difference(before: Rate, after: Rate) -> Rate {
    let (p1, [l1, u1]) = (after.rate, after.ci95);
    let (p2, [l2, u2]) = (before.rate, before.ci95);
    let d = p1 - p2;
    let lower = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let upper = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Rate {
        rate: d,
        ci95: [lower.max(-1.0), upper.min(1.0)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe 1998, table I: 81/263 → 0.2553 to 0.3662; 15/148 → 0.0624 to 0.1605.
        let r = wilson(81, 263);
        assert!(
            close(r.ci95[0], 0.2553) && close(r.ci95[1], 0.3662),
            "{r:?}"
        );
        let r = wilson(15, 148);
        assert!(
            close(r.ci95[0], 0.0624) && close(r.ci95[1], 0.1605),
            "{r:?}"
        );
        // 0/10: the interval still has width (0 to 0.2775), unlike Wald's.
        let r = wilson(0, 10);
        assert!(r.rate == 0.0 && r.ci95[0] == 0.0 && close(r.ci95[1], 0.2775));
        let r = wilson(10, 10);
        assert!(r.rate == 1.0 && close(r.ci95[0], 0.7225) && close(r.ci95[1], 1.0));
    }

    #[test]
    fn no_eligible_units_means_nothing_is_known() {
        assert_eq!(
            wilson(0, 0),
            Rate {
                rate: 0.0,
                ci95: [0.0, 1.0]
            }
        );
    }

    #[test]
    fn newcombe_difference_matches_the_paper() {
        // Newcombe 1998, table II, example (a): 56/70 − 48/80 = 0.2,
        // method 10 interval 0.0524 to 0.3339.
        let d = difference(wilson(48, 80), wilson(56, 70));
        assert!(close(d.rate, 0.2), "{d:?}");
        assert!(
            close(d.ci95[0], 0.0524) && close(d.ci95[1], 0.3339),
            "{d:?}"
        );
        // Example (f): 5/56 − 0/29 = 0.0893, interval −0.0381 to 0.1926.
        let d = difference(wilson(0, 29), wilson(5, 56));
        assert!(
            close(d.ci95[0], -0.0381) && close(d.ci95[1], 0.1926),
            "{d:?}"
        );
    }
}
