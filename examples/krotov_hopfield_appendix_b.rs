//! Krotov & Hopfield (2016), Appendix B: from random ±1 starts, how often do the exact
//! asynchronous spin dynamics end on a stored pattern? N = 100, K = 2000 random patterns,
//! F(x) = xⁿ for n = 2…5. The paper (10⁴ starts) finds that n ≥ 5 always converges to a
//! stored pattern while n = 2, 3 mostly do not.
//!
//! Run: `cargo run --release --example krotov_hopfield_appendix_b -- [STARTS] [cpu|wgpu|auto]`
//! (default 200 starts on `auto`). A start counts when its fixed point equals a stored
//! pattern or its negative (xⁿ with even n is symmetric, so −ξ is a minimum too).

use dam::binary::{overlap, pack, BinaryPatterns, SpinEnergy, SpinUpdate};
use dam::procedural::{fill, PatternKind, Stream};
use dam::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let starts: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let device = match args.next().as_deref() {
        None | Some("auto") => Device::auto()?,
        Some("cpu") => Device::Cpu,
        Some("wgpu") => Device::wgpu(),
        Some(other) => {
            return Err(format!("unknown device {other:?}; use cpu, wgpu or auto").into())
        }
    };
    let (n, k) = (100, 2000);
    let patterns = BinaryPatterns::procedural(k, n, 2016)?;
    let words = n.div_ceil(32);
    let mut queries = vec![0u32; starts * words];
    let mut x = vec![0f32; n];
    for s in 0..starts {
        fill(PatternKind::Binary, 7, Stream::Queries, s as u64, &mut x);
        pack(&x, &mut queries[s * words..(s + 1) * words]);
    }
    let name = match device.context()? {
        Some(ctx) => format!("wgpu: {}", ctx.describe()),
        None => "cpu (reference)".to_string(),
    };
    println!("device: {name}");
    println!(
        "N = {n}, K = {k}, {starts} random starts, asynchronous sweeps to a fixed point (≤ 50)"
    );
    println!("| n | converged | on a stored pattern (±) | mean sweeps | seconds |");
    println!("| --- | --- | --- | --- | --- |");
    for degree in 2..=5 {
        let energy = SpinEnergy::Polynomial { n: degree };
        let update = SpinUpdate::Async {
            max_sweeps: 50,
            seed: degree as u64,
        };
        let start = std::time::Instant::now();
        let r = dam::spin_dynamics(&device, &patterns, energy, update, &queries)?;
        let seconds = start.elapsed().as_secs_f64();
        let on_pattern = (0..starts)
            .filter(|&s| {
                let state = &r.states[s * words..(s + 1) * words];
                (0..k)
                    .any(|mu| overlap(patterns.pattern(mu), state, n).unsigned_abs() as usize == n)
            })
            .count();
        let converged = r.converged.iter().filter(|&&c| c).count();
        let sweeps = r.flips.iter().map(|f| f.len()).sum::<usize>() as f64 / starts as f64;
        println!(
            "| {degree} | {converged}/{starts} | {on_pattern}/{starts} ({:.1}%) | {sweeps:.1} | {seconds:.1} |",
            100.0 * on_pattern as f64 / starts as f64
        );
    }
    Ok(())
}
