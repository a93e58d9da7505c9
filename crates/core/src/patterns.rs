//! Stored patterns and query validation.

use std::ops::Range;

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};

use crate::{Config, Error, Result, Separation, Similarity};

/// How stored patterns are held on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Storage {
    /// 4 bytes per entry.
    #[default]
    F32,
    /// 2 bytes per entry (IEEE half, round to nearest): half the memory and memory traffic.
    /// Kernels unpack to f32 and accumulate and exponentiate in f32. Relative rounding of
    /// each entry ≤ 2⁻¹¹ ≈ 4.9·10⁻⁴.
    F16,
}

/// A validated set of P stored patterns of dimension N (rows of a P×N matrix, f32).
///
/// Construction checks that P ≥ 1, N ≥ 1 and every entry is finite, so the backends
/// never see bad input.
#[derive(Debug, Clone, PartialEq)]
pub struct Patterns {
    data: Array2<f32>,
    bounds: NormBounds,
}

impl Patterns {
    /// Wraps a P×N matrix of patterns (one pattern per row).
    pub fn new(data: Array2<f32>) -> Result<Self> {
        check_matrix("patterns", data.view())?;
        let bounds = NormBounds::of(data.view());
        Ok(Self {
            data: data.as_standard_layout().into_owned(),
            bounds,
        })
    }

    /// Builds patterns from a row-major buffer of `count × dim` values.
    pub fn from_vec(count: usize, dim: usize, values: Vec<f32>) -> Result<Self> {
        let expected = count.checked_mul(dim).ok_or_else(|| Error::TooLarge {
            argument: "patterns",
            size: u64::MAX,
            limit: usize::MAX as u64,
            detail: format!("{count} × {dim} overflows usize"),
        })?;
        if values.len() != expected {
            return Err(Error::DimensionMismatch {
                argument: "patterns (buffer length = count × dim)",
                expected,
                actual: values.len(),
            });
        }
        let data =
            Array2::from_shape_vec((count, dim), values).map_err(|e| Error::InvalidParameter {
                argument: "patterns",
                value: format!("{count}×{dim}"),
                reason: e.to_string(),
            })?;
        Self::new(data)
    }

    /// The same patterns rounded to the nearest f16 values (held in f32): what a device
    /// with [`Storage::F16`] stores, so the CPU reference can compute on identical inputs.
    /// Entries beyond ±65,504 (f16's largest finite value) are an error, not ±∞.
    pub fn rounded_to_f16(&self) -> Result<Self> {
        if let Some((index, v)) = self
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| v.abs() > half::f16::MAX.to_f32())
        {
            return Err(Error::TooLarge {
                argument: "patterns (f16 storage)",
                size: v.abs() as u64,
                limit: 65_504,
                detail: format!(
                    "pattern {} entry {} = {v} does not fit f16; use Storage::F32",
                    index / self.dim(),
                    index % self.dim()
                ),
            });
        }
        Self::new(self.data.mapv(|v| half::f16::from_f32(v).to_f32()))
    }

    /// Number of stored patterns P.
    pub fn count(&self) -> usize {
        self.data.nrows()
    }

    /// Dimension N of each pattern.
    pub fn dim(&self) -> usize {
        self.data.ncols()
    }

    /// The P×N matrix (standard row-major layout).
    pub fn view(&self) -> ArrayView2<'_, f32> {
        self.data.view()
    }

    /// The patterns as one row-major slice of P·N values.
    pub fn as_slice(&self) -> &[f32] {
        self.data
            .as_slice()
            .expect("Patterns are stored in standard layout")
    }
}

impl Patterns {
    /// The largest norms of the patterns, for [`NormBounds::check`].
    pub fn norm_bounds(&self) -> NormBounds {
        self.bounds
    }

    /// Shorthand for `self.norm_bounds().check(config, queries)`.
    pub fn check_range(&self, config: &Config, queries: ArrayView2<'_, f32>) -> Result<()> {
        self.bounds.check(config, queries)
    }
}

/// One edit of a set of stored patterns, in row positions. `dam::Retriever::insert`,
/// `remove` and `update` speak of stable ids and translate them into these.
#[derive(Debug, Clone, Copy)]
pub enum Edit<'a> {
    /// Append these rows (k×N) after the last pattern.
    Append(ArrayView2<'a, f32>),
    /// Remove the rows at these positions (strictly increasing); the others keep their
    /// order.
    Remove(&'a [usize]),
    /// Replace the row at `row` with `values` (length N).
    Replace {
        /// Position of the row.
        row: usize,
        /// Its new values.
        values: ArrayView1<'a, f32>,
    },
}

impl Edit<'_> {
    /// How many patterns a set of `count` holds after this edit.
    pub fn count_after(&self, count: usize) -> usize {
        match self {
            Edit::Append(rows) => count + rows.nrows(),
            Edit::Remove(rows) => count.saturating_sub(rows.len()),
            Edit::Replace { .. } => count,
        }
    }
}

impl Patterns {
    /// Applies `edit` in place, holding new values as `storage` holds them (rounded to
    /// f16 for [`Storage::F16`]). Everything is checked before anything changes: on error
    /// the patterns are as before. Returns the rows whose content changed, in the new
    /// layout; rows before it are untouched, so a device copy need only rewrite these
    /// (and drop rows past the new count).
    ///
    /// Appending grows the matrix geometrically (amortised O(k·N)); removing shifts the
    /// rows after the first removed one down, keeping their order (O((P − first)·N)), so
    /// that the result is always the same matrix as a fresh build of the remaining rows.
    pub fn apply(&mut self, edit: Edit<'_>, storage: Storage) -> Result<Range<usize>> {
        let count = self.count();
        match edit {
            Edit::Append(rows) => {
                if rows.ncols() != self.dim() {
                    return Err(Error::DimensionMismatch {
                        argument: "inserted patterns (columns must equal the dimension N)",
                        expected: self.dim(),
                        actual: rows.ncols(),
                    });
                }
                check_matrix("inserted patterns", rows)?;
                if count + rows.nrows() > u32::MAX as usize {
                    return Err(Error::TooLarge {
                        argument: "inserted patterns",
                        size: (count + rows.nrows()) as u64,
                        limit: u32::MAX as u64,
                        detail: "patterns are indexed with u32".into(),
                    });
                }
                let rows = stored(rows, storage)?;
                let added = NormBounds::of(rows.view());
                self.data
                    .append(Axis(0), rows.view())
                    .expect("rows checked to have N columns");
                self.bounds = self.bounds.max(added);
                Ok(count..self.count())
            }
            Edit::Remove(positions) => {
                if let Some(w) = positions.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(Error::InvalidParameter {
                        argument: "removed rows",
                        value: format!("{} then {}", w[0], w[1]),
                        reason: "positions must be strictly increasing".into(),
                    });
                }
                if let Some(&last) = positions.last().filter(|&&r| r >= count) {
                    return Err(Error::InvalidParameter {
                        argument: "removed rows",
                        value: last.to_string(),
                        reason: format!("only {count} patterns are stored"),
                    });
                }
                if positions.len() >= count {
                    return Err(Error::Empty {
                        argument: "patterns",
                        detail: format!(
                            "removing all {count} stored patterns would leave none; \
                             build a new memory instead"
                        ),
                    });
                }
                let Some(&first) = positions.first() else {
                    return Ok(count..count);
                };
                let n = self.dim();
                let slice = self
                    .data
                    .as_slice_mut()
                    .expect("Patterns are stored in standard layout");
                let mut write = first;
                let mut skip = positions.iter().peekable();
                for read in first..count {
                    if skip.peek() == Some(&&read) {
                        skip.next();
                        continue;
                    }
                    slice.copy_within(read * n..(read + 1) * n, write * n);
                    write += 1;
                }
                self.data.slice_axis_inplace(Axis(0), (0..write).into());
                self.bounds = NormBounds::of(self.data.view());
                Ok(first..write)
            }
            Edit::Replace { row, values } => {
                if row >= count {
                    return Err(Error::InvalidParameter {
                        argument: "updated row",
                        value: row.to_string(),
                        reason: format!("only {count} patterns are stored"),
                    });
                }
                if values.len() != self.dim() {
                    return Err(Error::DimensionMismatch {
                        argument: "updated pattern (length must equal the dimension N)",
                        expected: self.dim(),
                        actual: values.len(),
                    });
                }
                let values = values.insert_axis(Axis(0));
                check_matrix("updated pattern", values)?;
                let values = stored(values, storage)?;
                let old = NormBounds::of(self.data.slice(ndarray::s![row..row + 1, ..]));
                self.data.row_mut(row).assign(&values.row(0));
                let new = NormBounds::of(values.view());
                self.bounds = if old.l1 >= self.bounds.l1 || old.l2 >= self.bounds.l2 {
                    NormBounds::of(self.data.view())
                } else {
                    self.bounds.max(new)
                };
                Ok(row..row + 1)
            }
        }
    }
}

/// Rows as `storage` holds them: as given, or rounded to f16 (refusing entries beyond its
/// range).
fn stored(rows: ArrayView2<'_, f32>, storage: Storage) -> Result<Array2<f32>> {
    let owned = Patterns {
        data: rows.as_standard_layout().into_owned(),
        bounds: NormBounds { l1: 0.0, l2: 0.0 },
    };
    Ok(match storage {
        Storage::F32 => owned.data,
        Storage::F16 => owned.rounded_to_f16()?.data,
    })
}

/// The largest L1 and L2 row norms of a matrix of patterns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormBounds {
    l1: f64,
    l2: f64,
}

impl NormBounds {
    fn max(self, other: Self) -> Self {
        Self {
            l1: self.l1.max(other.l1),
            l2: self.l2.max(other.l2),
        }
    }

    fn of(m: ArrayView2<'_, f32>) -> Self {
        m.rows()
            .into_iter()
            .fold(Self { l1: 0.0, l2: 0.0 }, |acc, row| {
                let l1: f64 = row.iter().map(|&v| (v as f64).abs()).sum();
                let l2 = row
                    .iter()
                    .map(|&v| (v as f64) * (v as f64))
                    .sum::<f64>()
                    .sqrt();
                Self {
                    l1: acc.l1.max(l1),
                    l2: acc.l2.max(l2),
                }
            })
    }

    /// Checks that every similarity s(ξ, x) of the patterns with these (already
    /// validated) queries, and β·s for the exponential and entmax separations, stays inside the f32
    /// range, so that both backends compute finite numbers. Uses the norm bounds
    /// |ξ·x| ≤ ‖ξ‖₂‖x‖₂, ‖ξ − x‖₂ ≤ ‖ξ‖₂ + ‖x‖₂, ‖ξ − x‖₁ ≤ ‖ξ‖₁ + ‖x‖₁.
    pub fn check(&self, config: &Config, queries: ArrayView2<'_, f32>) -> Result<()> {
        let q = Self::of(queries);
        let bound = match config.similarity {
            Similarity::Dot => self.l2 * q.l2,
            Similarity::NegEuclidean => self.l2 + q.l2,
            Similarity::NegManhattan => self.l1 + q.l1,
        };
        let limit = f32::MAX as f64 / 4.0;
        if bound > limit {
            return Err(Error::InvalidParameter {
                argument: "queries",
                value: format!("|s| up to {bound:.3e}"),
                reason: format!("similarities must stay below {limit:.3e} (f32); rescale the data"),
            });
        }
        if let Separation::Softmax { beta }
        | Separation::Exponential { beta }
        | Separation::Entmax { beta, .. } = config.separation
        {
            let scaled = beta as f64 * bound;
            if scaled > limit {
                return Err(Error::InvalidParameter {
                    argument: "beta",
                    value: beta.to_string(),
                    reason: format!(
                        "β·|s| can reach {scaled:.3e}, beyond f32; lower β or rescale the data"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Checks a B×N batch of query states against the pattern dimension `dim`.
pub fn validate_queries(queries: ArrayView2<'_, f32>, dim: usize) -> Result<()> {
    if queries.ncols() != dim {
        return Err(Error::DimensionMismatch {
            argument: "queries (columns must equal the pattern dimension N)",
            expected: dim,
            actual: queries.ncols(),
        });
    }
    check_matrix("queries", queries)
}

fn check_matrix(argument: &'static str, m: ArrayView2<'_, f32>) -> Result<()> {
    if m.nrows() == 0 || m.ncols() == 0 {
        return Err(Error::Empty {
            argument,
            detail: format!("shape is {}×{}", m.nrows(), m.ncols()),
        });
    }
    if m.nrows() > u32::MAX as usize || m.ncols() > u32::MAX as usize {
        return Err(Error::TooLarge {
            argument,
            size: m.nrows().max(m.ncols()) as u64,
            limit: u32::MAX as u64,
            detail: "rows and columns are indexed with u32".into(),
        });
    }
    if let Some(((row, col), &value)) = m.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::NonFinite {
            argument,
            row,
            col,
            value,
        });
    }
    Ok(())
}
