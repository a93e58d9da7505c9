//! The reference behind the [`Backend`] seam: every operation one query and one pattern
//! at a time in f64. Clamped retrieval, reported top patterns and values use the seam's
//! defaults, built on the reference's own similarities.

use std::sync::Arc;

use dam_core::{
    validate_queries, Backend, Config, Edit, Patterns, Result, RetrievalResult, SearchResult,
    Separation, Storage,
};
use ndarray::{Array2, ArrayView2};

/// Stored patterns and a retrieval rule, computed by the plain f64 reference.
#[derive(Debug, Clone)]
pub struct ReferenceRetriever {
    patterns: Arc<Patterns>,
    config: Config,
    storage: Storage,
}

impl ReferenceRetriever {
    /// Validates `config` for these patterns, held as `storage` (already rounded, e.g. by
    /// [`Patterns::rounded_to_f16`]; patterns added by [`Backend::edit`] are rounded the
    /// same way).
    pub fn new(patterns: Arc<Patterns>, config: Config, storage: Storage) -> Result<Self> {
        config.validate(patterns.count())?;
        Ok(Self {
            patterns,
            config,
            storage,
        })
    }
}

/// Checks queries for a computation of similarities alone (no separation applied, so only
/// the similarities must stay finite).
pub(crate) fn check_plain(
    patterns: &Patterns,
    config: &Config,
    queries: ArrayView2<'_, f32>,
) -> Result<()> {
    validate_queries(queries, patterns.dim())?;
    let plain = Config {
        separation: Separation::Max,
        ..*config
    };
    patterns.check_range(&plain, queries)
}

/// Applies `edit` to patterns shared with the facade (copied first if shared), after
/// checking that the rule fits the new count.
pub(crate) fn apply_edit(
    patterns: &mut Arc<Patterns>,
    config: &Config,
    storage: Storage,
    edit: Edit<'_>,
) -> Result<()> {
    config.validate(edit.count_after(patterns.count()))?;
    Arc::make_mut(patterns).apply(edit, storage)?;
    Ok(())
}

impl Backend for ReferenceRetriever {
    fn config(&self) -> &Config {
        &self.config
    }

    fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult> {
        super::retrieve(&self.config, &self.patterns, queries)
    }

    fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        validate_queries(queries, self.patterns.dim())?;
        self.patterns.check_range(&self.config, queries)?;
        super::step(&self.config, &self.patterns, queries)
    }

    fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        super::energy(&self.config, &self.patterns, states)
    }

    fn describe(&self) -> String {
        "cpu reference (f64)".into()
    }

    fn search(&self, queries: ArrayView2<'_, f32>, k: usize) -> Result<SearchResult> {
        check_plain(&self.patterns, &self.config, queries)?;
        dam_core::search::search_width(k, self.patterns.count())?;
        Ok(super::search(
            self.config.similarity,
            &self.patterns,
            queries,
            k,
        ))
    }

    fn similarities(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f64>> {
        check_plain(&self.patterns, &self.config, queries)?;
        let mut out = Array2::zeros((queries.nrows(), self.patterns.count()));
        for (x, mut row) in queries.rows().into_iter().zip(out.rows_mut()) {
            let s = super::scores(self.config.similarity, &self.patterns, &x.to_vec());
            row.assign(&ndarray::ArrayView1::from(&s));
        }
        Ok(out)
    }

    fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    fn edit(&mut self, edit: Edit<'_>) -> Result<()> {
        apply_edit(&mut self.patterns, &self.config, self.storage, edit)
    }
}
