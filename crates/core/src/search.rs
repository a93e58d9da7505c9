//! Exact top-k search: the k stored patterns most similar to each query.

use ndarray::Array2;

use crate::{Error, Result};

/// The k best (score, row) pairs of one query, kept while scores stream by: ordered by
/// score (descending), ties by row (ascending), so the result does not depend on the
/// order the scores arrive in.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    items: Vec<(f32, u64)>,
}

impl TopK {
    /// An empty selection of at most `k` items.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
        }
    }

    /// The score a new item must beat (or tie with a lower row) to enter: −∞ until `k`
    /// items are held.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.items.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.items[self.k - 1].0
        }
    }

    /// Offers `row` with `score` (finite).
    #[inline]
    pub fn push(&mut self, row: u64, score: f32) {
        let better = |a: &(f32, u64)| a.0 > score || (a.0 == score && a.1 < row);
        if self.k == 0 || (self.items.len() == self.k && better(&self.items[self.k - 1])) {
            return;
        }
        let at = self.items.partition_point(better);
        self.items.insert(at, (score, row));
        self.items.truncate(self.k);
    }

    /// Offers every item of `other` (a selection over other rows).
    pub fn merge(&mut self, other: &TopK) {
        for &(score, row) in other.items() {
            self.push(row, score);
        }
    }

    /// The items, best first.
    pub fn items(&self) -> &[(f32, u64)] {
        &self.items
    }
}

/// What [`search`](crate::Backend::search) returns for B queries: the k' = min(k, P)
/// most similar stored patterns of each, best first (ties: lower id first).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchResult {
    /// B×k' ids (row positions when a backend is used directly; `dam::Retriever` reports
    /// stable ids).
    pub ids: Array2<u64>,
    /// B×k' similarities s(ξ, x) of those patterns (f32).
    pub scores: Array2<f32>,
}

impl SearchResult {
    /// Collects one [`TopK`] per query (each holding k' items).
    pub fn from_selections(selections: Vec<TopK>, k: usize) -> Self {
        let b = selections.len();
        let mut ids = Array2::zeros((b, k));
        let mut scores = Array2::zeros((b, k));
        for (q, sel) in selections.iter().enumerate() {
            for (j, &(s, row)) in sel.items().iter().take(k).enumerate() {
                ids[[q, j]] = row;
                scores[[q, j]] = s;
            }
        }
        Self { ids, scores }
    }
}

/// Checks `k` for a search of `count` patterns and returns k' = min(k, count).
pub fn search_width(k: usize, count: usize) -> Result<usize> {
    if k == 0 {
        return Err(Error::InvalidParameter {
            argument: "k",
            value: "0".into(),
            reason: "a search returns at least one pattern per query".into(),
        });
    }
    Ok(k.min(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_with_ties_to_the_lower_row_in_any_order() {
        let offers = [(5, 1.0), (2, 3.0), (9, 3.0), (1, 3.0), (4, -2.0), (7, 2.5)];
        let mut forward = TopK::new(3);
        let mut backward = TopK::new(3);
        for &(row, s) in &offers {
            forward.push(row, s);
        }
        for &(row, s) in offers.iter().rev() {
            backward.push(row, s);
        }
        let want = [(3.0, 1), (3.0, 2), (3.0, 9)];
        assert_eq!(forward.items(), want);
        assert_eq!(backward.items(), want);
        assert_eq!(forward.threshold(), 3.0);
        assert_eq!(TopK::new(2).threshold(), f32::NEG_INFINITY);
    }
}
