//! The fast CPU integrator of a network from Lagrangians ([`dam_core::lagrangian`]): the
//! whole batch at once, states in f32, the two products B×N·(K×N)ᵀ and B×K·(K×N) on the
//! generic matrix product ([`crate::product::gemm`]), the activations applied row by row
//! after each product (in f64, by the core definitions), and the energies summed in f64.
//! Trajectories are independent, so a large batch is cut into contiguous ranges of states
//! run on every core (each range exactly as it would run alone).

use crate::product::gemm;
use crate::reference::lagrangian::LagrangianRun;
use dam_core::lagrangian::{Integrator, LagrangianSpec};
use ndarray::{Array2, ArrayView2, Zip};

/// Applies an activation to every row of `x` into `out` (f64 inside each row).
fn rows_through(x: &Array2<f32>, out: &mut Array2<f32>, act: impl Fn(&[f64], &mut [f64])) {
    let n = x.ncols();
    let (mut a, mut b) = (vec![0.0f64; n], vec![0.0f64; n]);
    for (row, mut o) in x.rows().into_iter().zip(out.rows_mut()) {
        for (d, &s) in a.iter_mut().zip(row.iter()) {
            *d = s as f64;
        }
        act(&a, &mut b);
        for (d, &s) in o.iter_mut().zip(&b) {
            *d = s as f32;
        }
    }
}

/// One evaluation of the network at (V, H): the activations, the products, the energy of
/// every row and the derivatives.
struct Eval {
    dv: Array2<f32>,
    dh: Array2<f32>,
    energy: Vec<f64>,
}

struct Net<'a> {
    spec: &'a LagrangianSpec,
    memories: ArrayView2<'a, f32>,
    current: Option<&'a [f32]>,
}

impl Net<'_> {
    /// G = g(V), XG = G Ξᵀ, F = f(H) (or f(XG) with fast memory neurons), U = F Ξ.
    fn eval(&self, v: &Array2<f32>, h: &Array2<f32>) -> Eval {
        let spec = self.spec;
        let (b, n) = v.dim();
        let k = self.memories.nrows();
        let mut g = Array2::<f32>::zeros((b, n));
        rows_through(v, &mut g, |x, o| spec.visible.activation(x, o));
        let mut xg = Array2::<f32>::zeros((b, k));
        gemm(g.view(), self.memories.t(), &mut xg.view_mut(), false);
        let fast = spec.fast_memory();
        let hid = if fast { &xg } else { h };
        let mut f = Array2::<f32>::zeros((b, k));
        rows_through(hid, &mut f, |x, o| spec.hidden.activation(x, o));
        let mut u = Array2::<f32>::zeros((b, n));
        gemm(f.view(), self.memories, &mut u.view_mut(), false);
        // Energies in f64 from the f32 rows.
        let mut energy = Vec::with_capacity(b);
        for q in 0..b {
            let vr: Vec<f64> = v.row(q).iter().map(|&x| x as f64).collect();
            let gr: Vec<f64> = g.row(q).iter().map(|&x| x as f64).collect();
            let cur: Option<Vec<f64>> = self.current.map(|c| c.iter().map(|&x| x as f64).collect());
            let visible = spec.visible.energy_term(&vr, &gr, cur.as_deref());
            let xr: Vec<f64> = xg.row(q).iter().map(|&x| x as f64).collect();
            let e = if fast {
                visible - spec.hidden.value(&xr)
            } else {
                let hr: Vec<f64> = h.row(q).iter().map(|&x| x as f64).collect();
                let fr: Vec<f64> = f.row(q).iter().map(|&x| x as f64).collect();
                let interaction: f64 = fr.iter().zip(&xr).map(|(a, b)| a * b).sum();
                visible + spec.hidden.energy_term(&hr, &fr) - interaction
            };
            energy.push(e);
        }
        let tv = spec.tau_visible as f32;
        let mut dv = u;
        Zip::from(&mut dv)
            .and(v)
            .for_each(|d, &x| *d = (*d - x) / tv);
        if let Some(c) = self.current {
            for mut row in dv.rows_mut() {
                for (d, &i) in row.iter_mut().zip(c) {
                    *d += i / tv;
                }
            }
        }
        let dh = if fast {
            Array2::zeros((b, k))
        } else {
            let th = spec.tau_hidden as f32;
            let mut dh = xg.clone();
            Zip::from(&mut dh)
                .and(h)
                .for_each(|d, &x| *d = (*d - x) / th);
            dh
        };
        // With fast memory neurons, H follows XG: keep it for the caller.
        Eval { dv, dh, energy }
    }

    /// H = Ξ g(V).
    fn follow(&self, v: &Array2<f32>) -> Array2<f32> {
        let (b, n) = v.dim();
        let mut g = Array2::<f32>::zeros((b, n));
        rows_through(v, &mut g, |x, o| self.spec.visible.activation(x, o));
        let mut xg = Array2::<f32>::zeros((b, self.memories.nrows()));
        gemm(g.view(), self.memories.t(), &mut xg.view_mut(), false);
        xg
    }
}

fn offset(x: &Array2<f32>, d: &Array2<f32>, s: f32) -> Array2<f32> {
    let mut out = x.clone();
    out.scaled_add(s, d);
    out
}

/// Runs `steps` steps from every row of `states` (B×N, already validated), the memories
/// K×N in standard layout, `current` of length N or `None`. Memory neurons start at
/// `hidden` (B×K) or h = Ξ g(v). The same contract as
/// [`crate::reference::lagrangian::run`]. Batches with enough work
/// ([`crate::fast::threads_for`]) run on every core, split by states.
pub fn run(
    spec: &LagrangianSpec,
    memories: ArrayView2<'_, f32>,
    current: Option<&[f32]>,
    states: ArrayView2<'_, f32>,
    hidden0: Option<ArrayView2<'_, f32>>,
    steps: usize,
    keep_hidden: bool,
) -> LagrangianRun {
    let (b, n) = states.dim();
    let k = memories.nrows();
    let work_per_state = 2 * k * steps.max(1);
    let threads = crate::fast::threads_for(b, work_per_state, n, 0).min(b.max(1));
    if threads <= 1 {
        return run_serial(spec, memories, current, states, hidden0, steps, keep_hidden);
    }
    let parts = crate::fast::per_query_range(b, threads, |lo, hi| {
        let rows = ndarray::s![lo..hi, ..];
        run_serial(
            spec,
            memories,
            current,
            states.slice(rows),
            hidden0.map(|h| h.slice_move(rows)),
            steps,
            keep_hidden,
        )
    });
    fn stack<T: Clone>(parts: Vec<ArrayView2<'_, T>>) -> Array2<T> {
        ndarray::concatenate(ndarray::Axis(0), &parts).expect("ranges of one batch")
    }
    LagrangianRun {
        states: stack(parts.iter().map(|p| p.states.view()).collect()),
        energies: stack(parts.iter().map(|p| p.energies.view()).collect()),
        hidden: keep_hidden.then(|| {
            stack(
                parts
                    .iter()
                    .map(|p| p.hidden.as_ref().expect("kept").view())
                    .collect(),
            )
        }),
    }
}

/// [`run`] on one thread.
fn run_serial(
    spec: &LagrangianSpec,
    memories: ArrayView2<'_, f32>,
    current: Option<&[f32]>,
    states: ArrayView2<'_, f32>,
    hidden0: Option<ArrayView2<'_, f32>>,
    steps: usize,
    keep_hidden: bool,
) -> LagrangianRun {
    let net = Net {
        spec,
        memories,
        current,
    };
    let b = states.nrows();
    let dt = spec.dt as f32;
    let mut v = states.to_owned();
    let mut h = match hidden0 {
        Some(h0) if !spec.fast_memory() => h0.to_owned(),
        _ => net.follow(&v),
    };
    let mut energies = Array2::<f64>::zeros((b, steps + 1));
    for t in 0..=steps {
        let k1 = net.eval(&v, &h);
        for (q, e) in k1.energy.iter().enumerate() {
            energies[[q, t]] = *e;
        }
        if t == steps {
            break;
        }
        match spec.integrator {
            Integrator::Euler => {
                v.scaled_add(dt, &k1.dv);
                h.scaled_add(dt, &k1.dh);
            }
            Integrator::Rk4 => {
                let k2 = net.eval(&offset(&v, &k1.dv, dt / 2.0), &offset(&h, &k1.dh, dt / 2.0));
                let k3 = net.eval(&offset(&v, &k2.dv, dt / 2.0), &offset(&h, &k2.dh, dt / 2.0));
                let k4 = net.eval(&offset(&v, &k3.dv, dt), &offset(&h, &k3.dh, dt));
                for (x, k) in [(&mut v, [&k1.dv, &k2.dv, &k3.dv, &k4.dv])]
                    .into_iter()
                    .chain([(&mut h, [&k1.dh, &k2.dh, &k3.dh, &k4.dh])])
                {
                    x.scaled_add(dt / 6.0, k[0]);
                    x.scaled_add(dt / 3.0, k[1]);
                    x.scaled_add(dt / 3.0, k[2]);
                    x.scaled_add(dt / 6.0, k[3]);
                }
            }
        }
        if spec.fast_memory() {
            h = net.follow(&v);
        }
    }
    LagrangianRun {
        states: v,
        energies,
        hidden: keep_hidden.then_some(h),
    }
}
