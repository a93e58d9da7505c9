mod common;
use common::*;
use dam::*;

#[test]
fn smoke() {
    let p = unit_patterns(100, 17, 1);
    let q = noisy_queries(&p, 5, 0.3, 2);
    let patterns = Patterns::new(p).unwrap();
    for sep in [Separation::Softmax{beta: 8.0}, Separation::Polynomial{n:3}, Separation::TopK{k:3}, Separation::Exponential{beta: 8.0}] {
        let b = Retriever::builder(patterns.clone()).separation(sep).projection(Projection::Sphere).energy_trace(true);
        let c = b.clone().build().unwrap().retrieve(q.view()).unwrap();
        let g = b.device(gpu()).build().unwrap().retrieve(q.view()).unwrap();
        println!("{sep:?} {:?}", assert_matches("smoke", &g, &c));
    }
}
