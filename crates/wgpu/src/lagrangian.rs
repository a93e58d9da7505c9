//! A network from Lagrangians ([`dam_core::lagrangian`]) on the device: the whole run is
//! recorded once and submitted without reading anything back until the end.
//!
//! Per evaluation of the dynamics (one per Euler step, four per RK4 step):
//!
//! 1. `lagrangian.visible`: G = g(V_s) row by row (and the visible energy term);
//! 2. XG = G Ξᵀ on the generic tiled matrix product ([`crate::matmul`]);
//! 3. `lagrangian.hidden`: F = f(H_s) row by row, H_s = XG with fast memory neurons (and
//!    the hidden energy term);
//! 4. U = F Ξ, the second matrix product;
//! 5. `lagrangian.integrate_v` / `integrate_h`: the derivatives and the integrator's stage.
//!
//! The energy of every step is computed on the device in f32 by the first evaluation of
//! the step and copied into a (steps + 1) × B buffer; states, energies and (on request) the
//! memory neurons are read back once. Kernels are in `shaders/lagrangian.wgsl`; tested
//! against the f64 reference in `tests/lagrangian.rs`.

use dam_core::lagrangian::{HiddenLagrangian, Integrator, LagrangianSpec, VisibleLagrangian};
use dam_core::{Error, Result};
use ndarray::{Array2, ArrayView2};

use crate::context::WgpuContext;
use crate::exec::{self, groups_2d, power_loops, Dispatch, LOOP_BUDGET};
use crate::matmul::MatMul;
use crate::params::LagParams;
use crate::source::{Kernel, Loader};

/// Workgroup size of every `lagrangian.wgsl` entry point.
pub const LAGRANGIAN_WG: u32 = 64;

/// Steps recorded per command buffer (the run is still submitted without read-backs).
const STEPS_PER_SUBMIT: usize = 256;

/// What a run on the device returns: the final feature states (B×N), the energy of every
/// step, t = 0 included (B×(steps + 1)), and the memory neurons' final states (B×K) when
/// asked for.
pub type DeviceRun = (Array2<f32>, Array2<f64>, Option<Array2<f32>>);

fn too_large(argument: &'static str, size: u64, limit: u64, detail: &str) -> Error {
    Error::TooLarge {
        argument,
        size,
        limit,
        detail: detail.into(),
    }
}

/// The device-side constants of a spec: (VIS, HID, degree, rectified, β).
fn codes(spec: &LagrangianSpec) -> (u32, u32, u32, u32, f32) {
    let vis = match spec.visible {
        VisibleLagrangian::Quadratic => 0,
        VisibleLagrangian::Abs => 1,
        VisibleLagrangian::Spherical => 2,
    };
    match spec.hidden {
        HiddenLagrangian::Additive(f) => (vis, 0, f.degree, f.rectified as u32, 0.0),
        HiddenLagrangian::Exponential { beta } => (vis, 1, 1, 0, beta as f32),
        HiddenLagrangian::LogSumExp { beta } => (vis, 2, 1, 0, beta as f32),
    }
}

/// Checks what one run needs of the device: 32-bit indices, the loop budget of the row
/// kernels, the workgroup counts, the energy buffer.
fn plan(
    ctx: &WgpuContext,
    spec: &LagrangianSpec,
    b: usize,
    n: usize,
    k: usize,
    steps: usize,
) -> Result<()> {
    for (what, v) in [("B × N", b * n), ("B × K", b * k), ("K × N", k * n)] {
        if v as u64 > u32::MAX as u64 {
            return Err(too_large(
                "network size",
                v as u64,
                u32::MAX as u64,
                &format!("{what} is indexed in 32 bits on the device"),
            ));
        }
    }
    let wg = LAGRANGIAN_WG as u64;
    let visible_loops = 2 * (n as u64).div_ceil(wg) + 16;
    if visible_loops > LOOP_BUDGET {
        return Err(too_large(
            "dim (N)",
            n as u64,
            (LOOP_BUDGET - 16) / 2 * wg,
            "the feature-layer kernel loops over a row in one workgroup",
        ));
    }
    let per_entry = match spec.hidden {
        HiddenLagrangian::Additive(f) => 2 * power_loops(f.degree) + 1,
        _ => 3,
    };
    let hidden_loops = (k as u64).div_ceil(wg) * per_entry + 16;
    if hidden_loops > LOOP_BUDGET {
        return Err(too_large(
            "memories (K)",
            k as u64,
            (LOOP_BUDGET - 16) / per_entry * wg,
            "the memory-layer kernel loops over a row in one workgroup",
        ));
    }
    groups_2d(ctx, b as u64, "states (B)")?;
    let energy_bytes = (steps as u64 + 1) * b as u64 * 4;
    if energy_bytes > ctx.limits().max_buffer_size {
        return Err(too_large(
            "steps",
            steps as u64,
            ctx.limits().max_buffer_size / (4 * b as u64) - 1,
            "the energies of every step are kept in one device buffer",
        ));
    }
    Ok(())
}

/// The buffers of one run.
struct Buffers {
    memories: wgpu::Buffer,
    current: wgpu::Buffer,
    v_state: wgpu::Buffer,
    v_stage: wgpu::Buffer,
    v_acc: wgpu::Buffer,
    g: wgpu::Buffer,
    xg: wgpu::Buffer,
    h_state: wgpu::Buffer,
    h_stage: wgpu::Buffer,
    h_acc: wgpu::Buffer,
    f: wgpu::Buffer,
    u: wgpu::Buffer,
    energy: wgpu::Buffer,
    energies: wgpu::Buffer,
}

/// The parameters of one integrator stage: (first, last, c_acc, c_stage, write_energy).
fn stages(integrator: Integrator, dt: f32) -> Vec<(bool, bool, f32, f32, bool)> {
    match integrator {
        Integrator::Euler => vec![(true, true, dt, 0.0, true)],
        Integrator::Rk4 => vec![
            (true, false, dt / 6.0, dt / 2.0, true),
            (false, false, dt / 3.0, dt / 2.0, false),
            (false, false, dt / 3.0, dt, false),
            (false, true, dt / 6.0, 0.0, false),
        ],
    }
}

/// Runs `steps` steps of the network `spec` on the memories (K×N) from `states` (B×N),
/// with the input current (length N) or none and the memory neurons starting at `hidden0`
/// (B×K) or at Ξ g(v). Inputs are validated by the caller (shapes, finiteness, the spec).
#[allow(clippy::too_many_arguments)]
pub fn run(
    ctx: &WgpuContext,
    spec: &LagrangianSpec,
    memories: ArrayView2<'_, f32>,
    current: Option<&[f32]>,
    states: ArrayView2<'_, f32>,
    hidden0: Option<ArrayView2<'_, f32>>,
    steps: usize,
    keep_hidden: bool,
) -> Result<DeviceRun> {
    let (b, n) = states.dim();
    let k = memories.nrows();
    if memories.ncols() != n || b == 0 || k == 0 || n == 0 {
        return Err(Error::DimensionMismatch {
            argument: "memories (K × N) against states (B × N)",
            expected: n,
            actual: memories.ncols(),
        });
    }
    plan(ctx, spec, b, n, k, steps)?;
    let fast = spec.fast_memory();
    let (vis, hid, degree, rectified, beta) = codes(spec);
    let f4 = |count: usize| count as u64 * 4;
    let mem = memories.as_standard_layout();
    let v0 = states.as_standard_layout();
    let v0 = bytemuck::cast_slice(v0.as_slice().expect("standard layout"));
    let zeros = vec![0.0f32; n];
    let h_init: Option<Array2<f32>> = match hidden0 {
        Some(h) if !fast => Some(h.as_standard_layout().into_owned()),
        _ => None,
    };
    let buf = exec::scoped(ctx, "network buffers", || {
        let h_buf = |label: &str| match &h_init {
            Some(h) => exec::storage_init(
                ctx,
                label,
                bytemuck::cast_slice(h.as_slice().expect("standard layout")),
            ),
            None => exec::storage(ctx, label, f4(b * k)),
        };
        Buffers {
            memories: exec::storage_init(
                ctx,
                "dam network memories",
                bytemuck::cast_slice(mem.as_slice().expect("standard layout")),
            ),
            current: exec::storage_init(
                ctx,
                "dam network current",
                bytemuck::cast_slice(current.unwrap_or(&zeros)),
            ),
            v_state: exec::storage_init(ctx, "dam network v", v0),
            v_stage: exec::storage_init(ctx, "dam network v stage", v0),
            v_acc: exec::storage(ctx, "dam network v acc", f4(b * n)),
            g: exec::storage(ctx, "dam network g", f4(b * n)),
            xg: exec::storage(ctx, "dam network xg", f4(b * k)),
            h_state: h_buf("dam network h"),
            h_stage: h_buf("dam network h stage"),
            h_acc: exec::storage(ctx, "dam network h acc", f4(b * k)),
            f: exec::storage(ctx, "dam network f", f4(b * k)),
            u: exec::storage(ctx, "dam network u", f4(b * n)),
            energy: exec::storage(ctx, "dam network energy", f4(b)),
            energies: exec::storage(ctx, "dam network energies", f4(b * (steps + 1))),
        }
    })?;

    let constants = [("VIS", vis), ("HID", hid), ("FAST", fast as u32)];
    let pipeline = |kernel: Kernel| ctx.pipeline(kernel, &constants);
    let (visible_p, hidden_p, int_v_p, int_h_p) = (
        pipeline(Kernel::LagVisible)?,
        pipeline(Kernel::LagHidden)?,
        pipeline(Kernel::LagIntegrateV)?,
        pipeline(Kernel::LagIntegrateH)?,
    );
    let base = LagParams {
        b: b as u32,
        n: n as u32,
        k: k as u32,
        degree,
        rectified,
        beta,
        inv_tau_v: (1.0 / spec.tau_visible) as f32,
        inv_tau_h: if fast {
            0.0
        } else {
            (1.0 / spec.tau_hidden) as f32
        },
        ..LagParams::default()
    };
    let rows = groups_2d(ctx, b as u64, "states (B)")?;
    let v_groups = groups_2d(
        ctx,
        ((b * n) as u64).div_ceil(LAGRANGIAN_WG as u64),
        "B × N",
    )?;
    let h_groups = groups_2d(
        ctx,
        ((b * k) as u64).div_ceil(LAGRANGIAN_WG as u64),
        "B × K",
    )?;
    let bf = &buf;
    let xg_mm = MatMul::plain(b as u32, k as u32, n as u32, false, true);
    let u_mm = MatMul::plain(b as u32, n as u32, k as u32, false, false);
    // The dispatches of one evaluation with the parameters `uniform`, and of its stage
    // when `integrate`.
    let evaluation = |uniform: &wgpu::Buffer, integrate: bool| -> Result<Vec<Dispatch>> {
        let mut list = vec![Dispatch::new(
            ctx,
            &visible_p,
            &[
                (0, uniform),
                (1, &bf.v_stage),
                (2, &bf.g),
                (3, &bf.current),
                (8, &bf.energy),
            ],
            vec![],
            rows,
        )];
        list.extend(xg_mm.dispatches(
            ctx,
            Loader::F32,
            bf.g.as_entire_binding(),
            bf.memories.as_entire_binding(),
            &bf.xg,
            None,
        )?);
        list.push(Dispatch::new(
            ctx,
            &hidden_p,
            &[
                (0, uniform),
                (4, &bf.xg),
                (5, &bf.h_stage),
                (6, &bf.f),
                (8, &bf.energy),
            ],
            vec![],
            rows,
        ));
        if !integrate {
            return Ok(list);
        }
        list.extend(u_mm.dispatches(
            ctx,
            Loader::F32,
            bf.f.as_entire_binding(),
            bf.memories.as_entire_binding(),
            &bf.u,
            None,
        )?);
        list.push(Dispatch::new(
            ctx,
            &int_v_p,
            &[
                (0, uniform),
                (1, &bf.v_stage),
                (3, &bf.current),
                (7, &bf.u),
                (9, &bf.v_state),
                (10, &bf.v_acc),
            ],
            vec![],
            v_groups,
        ));
        if !fast {
            list.push(Dispatch::new(
                ctx,
                &int_h_p,
                &[
                    (0, uniform),
                    (4, &bf.xg),
                    (5, &bf.h_stage),
                    (9, &bf.h_state),
                    (10, &bf.h_acc),
                ],
                vec![],
                h_groups,
            ));
        }
        Ok(list)
    };

    let out = exec::scoped(ctx, "network run", || -> Result<_> {
        let uniform = |write_energy: bool, stage: Option<(bool, bool, f32, f32)>| {
            let (first, last, c_acc, c_stage) = stage.unwrap_or((false, false, 0.0, 0.0));
            exec::uniform(
                ctx,
                &LagParams {
                    write_energy: write_energy as u32,
                    first: first as u32,
                    last: last as u32,
                    c_acc,
                    c_stage,
                    ..base
                },
            )
        };
        let stage_uniforms: Vec<wgpu::Buffer> = stages(spec.integrator, spec.dt as f32)
            .into_iter()
            .map(|(first, last, c_acc, c_stage, write)| {
                uniform(write, Some((first, last, c_acc, c_stage)))
            })
            .collect();
        let final_uniform = uniform(true, None);
        let quiet_uniform = uniform(false, None);
        let mut step_list = Vec::new();
        for u in &stage_uniforms {
            step_list.extend(evaluation(u, true)?);
        }
        let final_list = evaluation(&final_uniform, false)?;
        let energy_bytes = f4(b);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        if !fast && h_init.is_none() {
            // The memory neurons start at H = Ξ g(v).
            exec::encode(&mut encoder, &evaluation(&quiet_uniform, false)?, None);
            encoder.copy_buffer_to_buffer(&bf.xg, 0, &bf.h_state, 0, f4(b * k));
            encoder.copy_buffer_to_buffer(&bf.xg, 0, &bf.h_stage, 0, f4(b * k));
        }
        for t in 0..steps {
            exec::encode(&mut encoder, &step_list, None);
            encoder.copy_buffer_to_buffer(
                &bf.energy,
                0,
                &bf.energies,
                t as u64 * energy_bytes,
                energy_bytes,
            );
            if (t + 1) % STEPS_PER_SUBMIT == 0 {
                let done = std::mem::replace(
                    &mut encoder,
                    ctx.device.create_command_encoder(&Default::default()),
                );
                ctx.queue.submit([done.finish()]);
            }
        }
        exec::encode(&mut encoder, &final_list, None);
        encoder.copy_buffer_to_buffer(
            &bf.energy,
            0,
            &bf.energies,
            steps as u64 * energy_bytes,
            energy_bytes,
        );
        // With fast memory neurons the memory layer is XG of the final state.
        let hidden_buf = if fast { &bf.xg } else { &bf.h_state };
        let mut read: Vec<(&wgpu::Buffer, &'static str)> =
            vec![(&bf.v_state, "states"), (&bf.energies, "energies")];
        if keep_hidden {
            read.push((hidden_buf, "memory neurons"));
        }
        let bytes = exec::submit_and_read(ctx, vec![encoder.finish()], &read)?;
        Ok(bytes)
    })??;

    let states: Vec<f32> = exec::cast(&out[0]);
    let states = Array2::from_shape_vec((b, n), states).expect("B × N read back");
    let flat: Vec<f32> = exec::cast(&out[1]);
    let energies = Array2::from_shape_fn((b, steps + 1), |(q, t)| flat[t * b + q] as f64);
    let hidden = if keep_hidden {
        let h: Vec<f32> = exec::cast(&out[2]);
        Some(Array2::from_shape_vec((b, k), h).expect("B × K read back"))
    } else {
        None
    };
    Ok((states, energies, hidden))
}
