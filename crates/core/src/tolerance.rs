//! Named numerical tolerances for comparing a backend against the reference.

/// An absolute + relative tolerance: `|actual − expected| ≤ atol + rtol·|expected|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute part.
    pub atol: f64,
    /// Relative part (times |expected|).
    pub rtol: f64,
}

/// The worst element of a comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mismatch {
    /// Flat index of the element.
    pub index: usize,
    /// Value found.
    pub actual: f64,
    /// Reference value.
    pub expected: f64,
    /// |actual − expected|.
    pub abs_diff: f64,
    /// The bound it had to meet.
    pub allowed: f64,
}

impl Tolerance {
    /// A tolerance from its two parts.
    pub const fn new(atol: f64, rtol: f64) -> Self {
        Self { atol, rtol }
    }

    /// Same relative part, absolute part multiplied by `scale` (for values whose natural
    /// magnitude is `scale`, e.g. sums with cancellation).
    pub fn scaled(self, scale: f64) -> Self {
        Self {
            atol: self.atol * scale.max(1.0),
            rtol: self.rtol,
        }
    }

    /// Whether one value is within tolerance (NaN never is; equal infinities are).
    pub fn accepts(&self, actual: f64, expected: f64) -> bool {
        if actual == expected {
            return true;
        }
        (actual - expected).abs() <= self.atol + self.rtol * expected.abs()
    }

    /// Compares two sequences of equal length. Returns the largest absolute difference
    /// seen, or the first element out of tolerance. Unequal lengths are a mismatch at
    /// index `min(len)`.
    pub fn compare<A, E>(&self, actual: A, expected: E) -> Result<f64, Mismatch>
    where
        A: IntoIterator,
        A::Item: Into<f64>,
        E: IntoIterator,
        E::Item: Into<f64>,
    {
        let actual: Vec<f64> = actual.into_iter().map(Into::into).collect();
        let expected: Vec<f64> = expected.into_iter().map(Into::into).collect();
        if actual.len() != expected.len() {
            let index = actual.len().min(expected.len());
            return Err(Mismatch {
                index,
                actual: actual.len() as f64,
                expected: expected.len() as f64,
                abs_diff: f64::INFINITY,
                allowed: 0.0,
            });
        }
        let mut worst = 0.0f64;
        for (index, (&a, &e)) in actual.iter().zip(&expected).enumerate() {
            if !self.accepts(a, e) {
                return Err(Mismatch {
                    index,
                    actual: a,
                    expected: e,
                    abs_diff: (a - e).abs(),
                    allowed: self.atol + self.rtol * e.abs(),
                });
            }
            if a != e {
                worst = worst.max((a - e).abs());
            }
        }
        Ok(worst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        let t = Tolerance::new(1e-3, 1e-2);
        assert!(t.accepts(1.0, 1.005));
        assert!(!t.accepts(1.0, 1.5));
        assert!(!t.accepts(f64::NAN, 1.0));
        assert!(t.accepts(f64::INFINITY, f64::INFINITY));
        assert_eq!(t.compare([1.0f32, 2.0], [1.0f32]).unwrap_err().index, 1);
        assert!(t.compare([1.0f32, 2.0], [1.0f32, 2.0]).is_ok());
    }
}
