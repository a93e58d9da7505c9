//! Exact binary spin dynamics on the device (`spin.wgsl`); the twin of `dam_cpu::binary`.

use dam_core::binary::{
    sweep_order, words_per_state, BinaryPatterns, Clamp, SpinEnergy, SpinResult, SpinUpdate,
};
use dam_core::{Error, Result};

use crate::context::WgpuContext;
use crate::exec::{self, Dispatch};
use crate::params::SParams;
use crate::source::Kernel;
use crate::WgpuError;

/// Largest N (states live in workgroup memory during a sweep).
pub const MAX_SPIN_DIM: usize = MAX_WORDS * 32;
/// Words of one state in workgroup memory (`MAX_WORDS` in the shader).
pub(crate) const MAX_WORDS: usize = 128;
/// Workgroup size of every `spin.wgsl` entry point.
pub(crate) const SPIN_WG: u32 = 64;

/// Runs the spin dynamics from each packed query (B × ⌈N/32⌉ words), with the neurons
/// outside `clamp.free` held at their query values (`Clamp::none` for none).
pub fn run_clamped(
    ctx: &WgpuContext,
    patterns: &BinaryPatterns,
    energy: SpinEnergy,
    update: SpinUpdate,
    queries: &[u32],
    clamp: &Clamp,
) -> Result<SpinResult> {
    let (b, table) = patterns.prepare_run(energy, queries)?;
    patterns.validate_clamp(clamp)?;
    if patterns.dim() > MAX_SPIN_DIM {
        return Err(Error::TooLarge {
            argument: "dim (N) for spin dynamics on wgpu",
            size: patterns.dim() as u64,
            limit: MAX_SPIN_DIM as u64,
            detail: "a state must fit in workgroup memory".into(),
        });
    }
    let max_groups = ctx.limits().max_compute_workgroups_per_dimension as usize;
    if b > max_groups || patterns.count() > (i32::MAX as usize) {
        return Err(Error::TooLarge {
            argument: "queries (B) for spin dynamics on wgpu",
            size: b as u64,
            limit: max_groups as u64,
            detail: "one workgroup per query".into(),
        });
    }
    let table: Vec<[u32; 2]> = table
        .values
        .iter()
        .map(|&v| [v as u32, ((v as u64) >> 32) as u32])
        .collect();
    let relative = energy_is_relative(energy);
    let out = exec::scoped(ctx, "spin dynamics", || {
        Spins::new(ctx, patterns, &table, relative, queries, b, clamp).run(update)
    })?;
    Ok(out?)
}

fn energy_is_relative(energy: SpinEnergy) -> bool {
    matches!(energy, SpinEnergy::Exponential { .. })
}

struct Spins<'a> {
    ctx: &'a WgpuContext,
    dim: usize,
    batch: usize,
    base: SParams,
    states: wgpu::Buffer,
    h: wgpu::Buffer,
    flips: wgpu::Buffer,
    order: wgpu::Buffer,
    decisions: wgpu::Buffer,
    patterns: wgpu::Buffer,
    table: wgpu::Buffer,
    free: wgpu::Buffer,
    clamp: &'a Clamp,
}

impl<'a> Spins<'a> {
    fn new(
        ctx: &'a WgpuContext,
        patterns: &BinaryPatterns,
        table: &[[u32; 2]],
        relative: bool,
        queries: &[u32],
        b: usize,
        clamp: &'a Clamp,
    ) -> Self {
        let init = |label: &str, contents: &[u8]| exec::storage_init(ctx, label, contents);
        let (n, p) = (patterns.dim(), patterns.count());
        let zeros = |label: &str, len: usize| exec::storage(ctx, label, 4 * len as u64);
        Self {
            ctx,
            dim: n,
            batch: b,
            base: SParams {
                dim: n as u32,
                words: words_per_state(n) as u32,
                count: p as u32,
                batch: b as u32,
                relative: relative as u32,
                first: 0,
                spins: 0,
                pad: 0,
            },
            states: init("dam spin states", bytemuck::cast_slice(queries)),
            h: zeros("dam spin overlaps", b * p),
            flips: zeros("dam spin flips", b),
            order: zeros("dam spin order", n),
            decisions: zeros("dam spin decisions", b * n),
            patterns: init(
                "dam binary patterns",
                bytemuck::cast_slice(patterns.words()),
            ),
            table: init("dam spin table", bytemuck::cast_slice(table)),
            free: init("dam spin free mask", bytemuck::cast_slice(&clamp.free)),
            clamp,
        }
    }

    /// One dispatch of `kernel` with `params` over (x, y) workgroups.
    fn dispatch(
        &self,
        kernel: Kernel,
        params: SParams,
        groups: (u32, u32),
    ) -> Result<Dispatch, WgpuError> {
        let uniform = exec::uniform(self.ctx, &params);
        let all = [
            (0, &uniform),
            (1, &self.patterns),
            (2, &self.states),
            (3, &self.h),
            (4, &self.table),
            (5, &self.order),
            (6, &self.flips),
            (7, &self.decisions),
            (8, &self.free),
        ];
        let used: &[u32] = match kernel {
            Kernel::SpinInit => &[0, 1, 2, 3],
            Kernel::SpinSweep => &[0, 1, 2, 3, 4, 5, 6],
            Kernel::SpinDecide => &[0, 1, 2, 3, 4, 7],
            _ => &[0, 2, 6, 7, 8],
        };
        let buffers: Vec<(u32, &wgpu::Buffer)> =
            all.into_iter().filter(|(i, _)| used.contains(i)).collect();
        let pipeline = self.ctx.pipeline(kernel, &[])?;
        Ok(Dispatch::new(
            self.ctx,
            &pipeline,
            &buffers,
            Vec::new(),
            [groups.0, groups.1, 1],
        ))
    }

    fn run(&self, update: SpinUpdate) -> Result<SpinResult, WgpuError> {
        let ctx = self.ctx;
        let (n, b) = (self.dim, self.batch);
        let per_spin = 2 * (self.base.count as u64).div_ceil(SPIN_WG as u64) + 40;
        let spins_per_dispatch = exec::items_per_slice_of_loops(per_spin);
        let mut history: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        let init = [self.dispatch(Kernel::SpinInit, self.base, (b as u32, 1))?];
        // Asynchronous sweeps visit the free spins only (clamped ones are left out of the
        // order); synchronous steps mask the flips in `apply`.
        let free = (0..n).filter(|&i| self.clamp.is_free(i)).count();
        ctx.queue.submit([exec::commands(ctx, &init)]);
        let rounds = match update {
            SpinUpdate::Async { max_sweeps, .. } => max_sweeps,
            SpinUpdate::Sync { max_steps } => max_steps,
        };
        // The dispatch list of one round, built once.
        let list = match update {
            SpinUpdate::Async { .. } => exec::slices(free, spins_per_dispatch)
                .map(|range| {
                    let params = SParams {
                        first: range.start as u32,
                        spins: range.len() as u32,
                        ..self.base
                    };
                    self.dispatch(Kernel::SpinSweep, params, (b as u32, 1))
                })
                .collect::<Result<Vec<_>, _>>()?,
            SpinUpdate::Sync { .. } => vec![
                self.dispatch(Kernel::SpinDecide, self.base, (n as u32, b as u32))?,
                self.dispatch(Kernel::SpinApply, self.base, (b as u32, 1))?,
                self.dispatch(Kernel::SpinInit, self.base, (b as u32, 1))?,
            ],
        };
        for round in 0..rounds {
            if let SpinUpdate::Async { seed, .. } = update {
                ctx.queue.write_buffer(
                    &self.order,
                    0,
                    bytemuck::cast_slice(&self.clamp.order(sweep_order(n, seed, round))),
                );
                ctx.queue
                    .write_buffer(&self.flips, 0, bytemuck::cast_slice(&vec![0u32; b]));
            }
            let work = exec::commands(ctx, &list);
            let flips: Vec<u32> = exec::read(ctx, vec![work], &self.flips, "spin flips")?;
            for q in 0..b {
                if !done[q] {
                    history[q].push(flips[q]);
                    done[q] = flips[q] == 0;
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(SpinResult {
            states: exec::read(ctx, Vec::new(), &self.states, "spin states")?,
            flips: history,
            converged: done,
        })
    }
}
