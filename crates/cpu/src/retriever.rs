//! The CPU twin of `dam_wgpu::WgpuRetriever`: stored patterns and a rule, behind the
//! [`Backend`] seam. `retrieve` and `energy` run the plain reference; `step` chooses the
//! fused multi-threaded path of [`crate::fast`] for dot similarity with softmax and the
//! reference update otherwise.

use std::sync::Arc;

use dam_core::{
    validate_queries, Backend, Config, Edit, Patterns, Result, RetrievalResult, SearchResult,
    Separation, Similarity, Storage,
};
use ndarray::{Array2, ArrayView2};

/// Stored patterns and a retrieval rule on the CPU.
#[derive(Debug, Clone)]
pub struct CpuRetriever {
    patterns: Arc<Patterns>,
    config: Config,
    storage: Storage,
}

impl CpuRetriever {
    /// Validates `config` for these patterns.
    pub fn new(patterns: Arc<Patterns>, config: Config) -> Result<Self> {
        Self::with_storage(patterns, config, Storage::F32)
    }

    /// Same, for patterns held as `storage` (already rounded, e.g. by
    /// [`Patterns::rounded_to_f16`]): patterns added by [`Backend::edit`] are rounded
    /// the same way.
    pub fn with_storage(patterns: Arc<Patterns>, config: Config, storage: Storage) -> Result<Self> {
        config.validate(patterns.count())?;
        Ok(Self {
            patterns,
            config,
            storage,
        })
    }

    /// The stored patterns.
    pub fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    /// The retrieval rule.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl CpuRetriever {
    /// Checks queries for a computation of similarities alone (no separation applied, so
    /// only the similarities must stay finite).
    fn check_plain(&self, queries: ArrayView2<'_, f32>) -> Result<()> {
        validate_queries(queries, self.patterns.dim())?;
        let plain = Config {
            separation: Separation::Max,
            ..self.config
        };
        self.patterns.check_range(&plain, queries)
    }
}

impl Backend for CpuRetriever {
    fn retrieve(&self, queries: ArrayView2<'_, f32>) -> Result<RetrievalResult> {
        crate::retrieve(&self.config, &self.patterns, queries)
    }

    /// The fused path for dot + softmax (f32 GEMM sums, tested against the reference
    /// within `STATE_TOL`); the reference update for every other rule.
    fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        validate_queries(queries, self.patterns.dim())?;
        self.patterns.check_range(&self.config, queries)?;
        if let (Similarity::Dot, Separation::Softmax { beta }) =
            (self.config.similarity, self.config.separation)
        {
            let out = crate::fast::softmax_dot_step(
                &self.patterns,
                queries,
                beta,
                self.config.projection,
                0,
            );
            return Ok(out.states);
        }
        crate::step(&self.config, &self.patterns, queries)
    }

    fn step_timed(&self, queries: ArrayView2<'_, f32>) -> Result<(Array2<f32>, Option<f64>)> {
        Ok((self.step(queries)?, None))
    }

    fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        crate::energy(&self.config, &self.patterns, states)
    }

    fn describe(&self) -> String {
        "cpu (reference)".into()
    }

    /// Dot similarity: the blocked multi-threaded path ([`crate::search::search_dot`]);
    /// the others: the reference.
    fn search(&self, queries: ArrayView2<'_, f32>, k: usize) -> Result<SearchResult> {
        self.check_plain(queries)?;
        dam_core::search::search_width(k, self.patterns.count())?;
        Ok(match self.config.similarity {
            Similarity::Dot => crate::search::search_dot(&self.patterns, queries, k, 0),
            other => crate::search::search_reference(other, &self.patterns, queries, k),
        })
    }

    /// The reference similarities (f64 sums).
    fn similarities(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f64>> {
        self.check_plain(queries)?;
        let mut out = Array2::zeros((queries.nrows(), self.patterns.count()));
        for (x, mut row) in queries.rows().into_iter().zip(out.rows_mut()) {
            let x = x.to_vec();
            let s = crate::scores(self.config.similarity, &self.patterns, &x);
            row.assign(&ndarray::ArrayView1::from(&s));
        }
        Ok(out)
    }

    fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    fn edit(&mut self, edit: Edit<'_>) -> Result<()> {
        self.config
            .validate(edit.count_after(self.patterns.count()))?;
        Arc::make_mut(&mut self.patterns).apply(edit, self.storage)?;
        Ok(())
    }
}
