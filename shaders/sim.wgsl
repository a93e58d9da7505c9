// Similarity measures, specialised by the SIM override constant:
// 0 = dot, 1 = negative Euclidean, 2 = negative Manhattan.
// A similarity is a sum of per-coordinate terms followed by a finishing map.
override SIM: u32 = 0u;

fn sim_term(a: f32, b: f32) -> f32 {
    if SIM == 0u {
        return a * b;
    } else if SIM == 1u {
        let d = a - b;
        return d * d;
    }
    return abs(a - b);
}

fn finish_similarity(acc: f32) -> f32 {
    if SIM == 0u {
        return acc;
    } else if SIM == 1u {
        return -sqrt(acc);
    }
    return -acc;
}
