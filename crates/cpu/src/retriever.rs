//! The fast CPU backend behind the [`Backend`] seam: every operation is one or more
//! passes of [`crate::fast`] (f32 products, all cores), tested against the reference.

use std::sync::Arc;

use dam_core::backend::{first_non_finite, value_overflow};
use dam_core::dynamics::Evaluated;
use dam_core::{
    checked_energy, validate_queries, Backend, Config, Edit, Error, Patterns, Projection, Result,
    SearchResult, Similarity, Storage, TopEntry,
};
use ndarray::{Array2, ArrayView2};

use crate::fast::{self, Pass, Stored};
use crate::reference::retriever::{apply_edit, check_plain};

/// Stored patterns and a retrieval rule on the fast CPU backend.
#[derive(Debug, Clone)]
pub struct CpuRetriever {
    patterns: Arc<Patterns>,
    /// ‖ξ‖² of every pattern, for negative Euclidean similarity (empty otherwise).
    norms: Vec<f32>,
    config: Config,
    storage: Storage,
    threads: usize,
}

impl CpuRetriever {
    /// Validates `config` for these patterns, held as `storage` (already rounded, e.g. by
    /// [`Patterns::rounded_to_f16`]; patterns added by [`Backend::edit`] are rounded the
    /// same way), on every core.
    pub fn new(patterns: Arc<Patterns>, config: Config, storage: Storage) -> Result<Self> {
        config.validate(patterns.count())?;
        let mut out = Self {
            patterns,
            norms: Vec::new(),
            config,
            storage,
            threads: 0,
        };
        out.refresh();
        Ok(out)
    }

    /// Runs on `threads` threads (0 = every core).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    fn refresh(&mut self) {
        self.norms = match self.config.similarity {
            Similarity::NegEuclidean => fast::squared_norms(self.patterns.view()),
            _ => Vec::new(),
        };
    }

    fn stored(&self) -> Stored<'_> {
        Stored {
            patterns: self.patterns.view(),
            squared_norms: &self.norms,
        }
    }

    fn pass<'a>(&'a self, targets: ArrayView2<'a, f32>, projection: Projection) -> Pass<'a> {
        Pass {
            similarity: self.config.similarity,
            separation: self.config.separation,
            projection,
            stored: self.stored(),
            targets,
            report_top: None,
            threads: self.threads,
        }
    }

    fn checked(&self, queries: ArrayView2<'_, f32>) -> Result<()> {
        validate_queries(queries, self.patterns.dim())?;
        self.patterns.check_range(&self.config, queries)
    }
}

impl Backend for CpuRetriever {
    fn config(&self) -> &Config {
        &self.config
    }

    fn evaluate(&self, states: ArrayView2<'_, f32>, updates: usize) -> Result<Evaluated> {
        let out = self
            .pass(self.patterns.view(), self.config.projection)
            .run(states, updates);
        Ok(out.evaluated(self.config.separation))
    }

    fn evaluate_values(
        &self,
        states: ArrayView2<'_, f32>,
        updates: usize,
        values: ArrayView2<'_, f32>,
    ) -> Result<Evaluated> {
        let values = values.as_standard_layout();
        let out = self
            .pass(values.view(), Projection::None)
            .run(states, updates);
        Ok(out.evaluated(self.config.separation))
    }

    fn step(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.checked(queries)?;
        let out = self
            .pass(self.patterns.view(), self.config.projection)
            .run(queries, queries.nrows());
        match first_non_finite(out.next.view()) {
            Some(q) => Err(Error::state_overflow(q, 1)),
            None => Ok(out.next),
        }
    }

    fn energy(&self, states: ArrayView2<'_, f32>) -> Result<Vec<f64>> {
        self.checked(states)?;
        let out = self
            .pass(self.patterns.view(), self.config.projection)
            .run(states, 0);
        out.energy
            .iter()
            .enumerate()
            .map(|(q, &e)| checked_energy(self.config.separation, e, q, 0))
            .collect()
    }

    fn describe(&self) -> String {
        fast::describe(self.threads)
    }

    fn search(&self, queries: ArrayView2<'_, f32>, k: usize) -> Result<SearchResult> {
        check_plain(&self.patterns, &self.config, queries)?;
        let width = dam_core::search::search_width(k, self.patterns.count())?;
        let selections = fast::search(
            self.config.similarity,
            self.stored(),
            queries,
            width,
            self.threads,
        );
        Ok(SearchResult::from_selections(selections, width))
    }

    fn similarities(&self, queries: ArrayView2<'_, f32>) -> Result<Array2<f64>> {
        check_plain(&self.patterns, &self.config, queries)?;
        Ok(fast::similarities(
            self.config.similarity,
            self.stored(),
            queries,
            self.threads,
        ))
    }

    fn top(
        &self,
        states: ArrayView2<'_, f32>,
        beta: f32,
        k: usize,
    ) -> Result<(Vec<Vec<TopEntry>>, Vec<f64>)> {
        self.checked(states)?;
        let separation = dam_core::Separation::Softmax { beta };
        let pass = Pass {
            separation,
            report_top: Some(k.min(self.patterns.count())),
            ..self.pass(self.patterns.view(), Projection::None)
        };
        let out = pass.run(states, 0);
        let top = out
            .top
            .iter()
            .zip(&out.lse)
            .map(|(items, &lse)| {
                items
                    .iter()
                    .map(|&(s, row)| TopEntry {
                        id: row,
                        weight: dam_core::weights::confidence(beta as f64, s as f64, lse),
                        similarity: s as f64,
                    })
                    .collect()
            })
            .collect();
        Ok((top, out.participation))
    }

    fn weighted_values(
        &self,
        queries: ArrayView2<'_, f32>,
        values: ArrayView2<'_, f32>,
    ) -> Result<Array2<f32>> {
        self.checked(queries)?;
        let values = values.as_standard_layout();
        let out = self
            .pass(values.view(), Projection::None)
            .run(queries, queries.nrows());
        match first_non_finite(out.next.view()) {
            Some(q) => Err(value_overflow(q)),
            None => Ok(out.next),
        }
    }

    fn patterns(&self) -> &Patterns {
        &self.patterns
    }

    fn edit(&mut self, edit: Edit<'_>) -> Result<()> {
        apply_edit(&mut self.patterns, &self.config, self.storage, edit)?;
        self.refresh();
        Ok(())
    }
}
