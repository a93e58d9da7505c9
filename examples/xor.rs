//! Krotov & Hopfield (2016): XOR as a dense associative memory with K = 4 memories (the truth
//! table in ±1) over N = 3 neurons (two inputs, one output). The inputs are clamped, the
//! output starts at −1 and takes one exact update. With F = x² the output's update
//! Σ_μ ξ_y^μ (ξ_1^μ x_1 + ξ_2^μ x_2) vanishes for every input — XOR has no pairwise
//! correlation, the energy does not depend on the output — so it stays at −1 (2 of 4);
//! x³ and the rectified max(x, 0)ⁿ for n ≥ 2 answer all four.
//!
//! `cargo run --release --example xor` (add `-- wgpu` for the GPU).

use dam::binary::{pack, unpack, BinaryPatterns, Clamp, SpinEnergy, SpinUpdate};
use dam::Device;

fn main() -> dam::Result<()> {
    let device = match std::env::args().nth(1).as_deref() {
        Some("wgpu") => Device::wgpu(),
        _ => Device::Cpu,
    };
    let table: [[f32; 3]; 4] = [
        [-1.0, -1.0, -1.0],
        [-1.0, 1.0, 1.0],
        [1.0, -1.0, 1.0],
        [1.0, 1.0, -1.0],
    ];
    let stored = BinaryPatterns::from_signs(4, 3, table.as_flattened())?;
    let clamp = Clamp::fixing(3, &[0, 1])?;
    let mut queries = vec![0u32; 4];
    for (q, row) in table.iter().enumerate() {
        pack(&[row[0], row[1], -1.0], &mut queries[q..q + 1]);
    }
    println!("device: {}", device.describe()?.1);
    println!(
        "{:<22} {:>5} {:>5} {:>5} {:>5}  right",
        "energy", "-1-1", "-1+1", "+1-1", "+1+1"
    );
    for (name, energy) in [
        ("x^2", SpinEnergy::Polynomial { n: 2 }),
        ("x^3", SpinEnergy::Polynomial { n: 3 }),
        ("max(x,0)^2", SpinEnergy::RectifiedPolynomial { n: 2 }),
        ("max(x,0)^3", SpinEnergy::RectifiedPolynomial { n: 3 }),
    ] {
        let r = dam::spin_dynamics_clamped(
            &device,
            &stored,
            energy,
            SpinUpdate::Sync { max_steps: 1 },
            &queries,
            &clamp,
        )?;
        let outputs: Vec<f32> = (0..4).map(|q| unpack(&r.states[q..q + 1], 3)[2]).collect();
        let right = outputs
            .iter()
            .zip(&table)
            .filter(|(y, row)| **y == row[2])
            .count();
        let cell = |y: f32| if y > 0.0 { "+1" } else { "-1" };
        println!(
            "{name:<22} {:>5} {:>5} {:>5} {:>5}  {right}/4",
            cell(outputs[0]),
            cell(outputs[1]),
            cell(outputs[2]),
            cell(outputs[3])
        );
    }
    Ok(())
}
