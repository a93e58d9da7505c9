//! Sequential learning (`dam::sequential`): the task permutations, the metrics on a
//! hand-made accuracy matrix, A-GEM's projection, the penalty's pull towards its anchor,
//! the importances, the training hook, and a small naive run on the CPU and the reference.

use dam::cpu::learn::fast;
use dam::learn::{Classifier, ClassifierModel, GradientStep, Recipe, StepHook};
use dam::sequential::{
    self, agem_project, average_accuracy, backward_transfer, forgetting, permutation, permute,
    Method, Penalty, Schedule, Task,
};
use dam::Device;
use ndarray::{array, Array2, ArrayView2};
use rand::{Rng, SeedableRng};

fn uniform(rows: usize, cols: usize, lo: f64, hi: f64, seed: u64) -> Array2<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(lo..hi))
}

#[test]
fn permutations_are_seeded_bijections() {
    assert_eq!(permutation(50, 7, 0), (0..50).collect::<Vec<_>>());
    for task in 1..4 {
        let p = permutation(784, 7, task);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..784).collect::<Vec<_>>(), "task {task}");
        assert_eq!(p, permutation(784, 7, task), "same seed, same permutation");
        assert_ne!(
            p,
            permutation(784, 8, task),
            "another seed, another permutation"
        );
        assert_ne!(p, (0..784).collect::<Vec<_>>());
    }
    assert_ne!(permutation(784, 7, 1), permutation(784, 7, 2));
    let x = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
    assert_eq!(
        permute(x.view(), &[2, 0, 1]).unwrap(),
        array![[3.0, 1.0, 2.0], [6.0, 4.0, 5.0]]
    );
    assert!(permute(x.view(), &[0, 1]).is_err());
}

#[test]
fn metrics_of_a_hand_made_matrix() {
    let acc = vec![
        vec![90.0, 10.0, 10.0],
        vec![60.0, 85.0, 10.0],
        vec![40.0, 70.0, 80.0],
    ];
    assert!((average_accuracy(&acc) - 190.0 / 3.0).abs() < 1e-12);
    // ((40 − 90) + (70 − 85)) / 2
    assert!((backward_transfer(&acc).unwrap() + 32.5).abs() < 1e-12);
    // task 1: max(90, 60) − 40 = 50; task 2: max(10, 85) − 70 = 15
    assert!((forgetting(&acc).unwrap() - 32.5).abs() < 1e-12);
    // A task forgotten and relearnt: its best earlier accuracy counts.
    let acc2 = vec![vec![80.0, 5.0], vec![85.0, 90.0]];
    assert_eq!(backward_transfer(&acc2), Some(5.0));
    assert_eq!(forgetting(&acc2), Some(-5.0));
    assert_eq!(backward_transfer(&[vec![70.0]]), None);
    assert_eq!(forgetting(&[vec![70.0]]), None);
    assert_eq!(average_accuracy(&[vec![70.0]]), 70.0);
}

fn dot(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

#[test]
fn agem_projects_only_conflicting_gradients() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut projected = 0;
    for _ in 0..50 {
        let g0 = Array2::from_shape_fn((7, 13), |_| rng.random_range(-1.0f32..1.0));
        let r = Array2::from_shape_fn((7, 13), |_| rng.random_range(-1.0f32..1.0));
        let mut g = g0.clone();
        let did = agem_project(&mut g, r.view());
        let before = dot(&g0, &r);
        assert_eq!(did, before < 0.0);
        if before >= 0.0 {
            assert_eq!(g, g0, "a gradient that agrees is left alone");
        } else {
            projected += 1;
            let scale = (dot(&g0, &g0) * dot(&r, &r)).sqrt();
            assert!(dot(&g, &r) >= -1e-5 * scale, "g·g_ref = {}", dot(&g, &r));
        }
    }
    assert!(projected > 5, "the draws include conflicting gradients");
    // Opposite gradients: the projection removes all of g.
    let r = Array2::from_elem((2, 3), 1.0f32);
    let mut g = Array2::from_elem((2, 3), -2.0f32);
    assert!(agem_project(&mut g, r.view()));
    assert!(g.iter().all(|v| v.abs() < 1e-6));
}

#[test]
fn the_penalty_pulls_memories_towards_the_anchor() {
    let anchor = uniform(6, 15, -0.5, 0.5, 4).mapv(|v| v as f32);
    let start = uniform(6, 15, -0.9, 0.9, 5).mapv(|v| v as f32);
    let importance = uniform(6, 15, 0.1, 1.0, 6).mapv(|v| v as f32);
    let mut penalty = Penalty::new(start.view(), 1.0);
    penalty.consolidate(importance.view(), anchor.view());
    assert_eq!(penalty.anchor, anchor);
    assert!(penalty.importance.iter().all(|&v| (0.0..=1.0).contains(&v)));
    let distance = |m: &Array2<f32>| -> Vec<f64> {
        m.outer_iter()
            .zip(anchor.outer_iter())
            .map(|(a, b)| {
                a.iter()
                    .zip(b)
                    .map(|(&x, &y)| ((x - y) as f64).powi(2))
                    .sum()
            })
            .collect()
    };
    let mut memories = start.clone();
    let mut velocity = Array2::<f32>::zeros(memories.dim());
    let d0 = distance(&memories);
    for _ in 0..5 {
        let g = penalty.gradient(memories.view());
        fast::optimiser_step(
            memories.view_mut(),
            velocity.view_mut(),
            &[(0, g)],
            0.02,
            0.0,
        );
    }
    let d1 = distance(&memories);
    for (mu, (a, b)) in d0.iter().zip(&d1).enumerate() {
        assert!(b < a, "memory {mu}: distance² {a} → {b}");
    }
    // Through `apply`, the penalty adds λ G Ω ⊙ (ξ − ξ*), G the largest |loss gradient|.
    let mut g = Array2::<f32>::zeros(start.dim());
    g[[0, 0]] = -2.0;
    penalty.apply(start.view(), &mut g);
    let want = 2.0 * penalty.importance[[1, 3]] * (start[[1, 3]] - anchor[[1, 3]]);
    assert!((g[[1, 3]] - want).abs() < 1e-6);
    // No loss gradient, no penalty (the step would be taken by the penalty alone).
    let mut zero = Array2::<f32>::zeros(start.dim());
    penalty.apply(start.view(), &mut zero);
    assert!(zero.iter().all(|&v| v == 0.0));
}

#[test]
fn method_strings_parse_and_bad_ones_name_the_method() {
    for (text, want) in [
        ("naive", Method::Naive),
        ("rehearsal:20", Method::Rehearsal { per_task: 20 }),
        ("pseudo:5", Method::Pseudo { per_task: 5 }),
        ("ewc:2.5", Method::Ewc { lambda: 2.5 }),
        ("si:0.5", Method::Si { c: 0.5 }),
        ("mas:3", Method::Mas { lambda: 3.0 }),
        ("agem:10", Method::Agem { per_task: 10 }),
        (
            "ewc",
            Method::Ewc {
                lambda: sequential::DEFAULT_EWC,
            },
        ),
    ] {
        let m = Method::parse(text).unwrap();
        assert_eq!(m, want, "{text}");
        assert_eq!(Method::parse(&m.to_string()).unwrap(), m);
    }
    for bad in [
        "foo",
        "rehearsal:0",
        "rehearsal",
        "rehearsal:x",
        "ewc:-1",
        "si:0",
        "mas:nan",
        "agem:",
        "naive:3",
        "",
    ] {
        match Method::parse(bad) {
            Err(dam::Error::InvalidParameter { argument, .. }) => {
                assert_eq!(argument, "method", "{bad}")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let wgpu = Device::Wgpu(dam::WgpuOptions::default());
    for m in ["ewc", "si", "mas", "agem:3"] {
        let err = Method::parse(m).unwrap().validate(&wgpu).unwrap_err();
        assert!(
            matches!(err, dam::Error::Unsupported { ref detail, .. } if detail.contains(m.split(':').next().unwrap())),
            "{m}: {err}"
        );
    }
    for m in ["naive", "rehearsal:3", "pseudo:3"] {
        Method::parse(m).unwrap().validate(&wgpu).unwrap();
    }
}

const PIXELS: usize = 20;
const CLASSES: usize = 10;
const TEMPERATURE: f64 = 2.0;
const K: usize = 16;
const DEAD: usize = K - 1;

fn model(temperature: f64) -> ClassifierModel {
    ClassifierModel {
        degree: 2,
        rectified: true,
        temperature,
        loss_power: 2,
        classes: CLASSES,
    }
}

/// ±1 images: a noisy copy (a tenth of the pixels flipped) of its class's random prototype.
fn noisy_prototypes(count: usize, seed: u64) -> (Array2<f64>, Vec<usize>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let prototypes = Array2::from_shape_fn((CLASSES, PIXELS), |_| {
        if rng.random_bool(0.5) {
            1.0
        } else {
            -1.0
        }
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let labels: Vec<usize> = (0..count).map(|_| rng.random_range(0..CLASSES)).collect();
    let x = Array2::from_shape_fn((count, PIXELS), |(q, i)| {
        let v = prototypes[[labels[q], i]];
        if rng.random_bool(0.1) {
            -v
        } else {
            v
        }
    });
    (x, labels)
}

fn small_tasks(count: usize) -> Vec<Task> {
    let (train, train_labels) = noisy_prototypes(120, 11);
    let (test, test_labels) = noisy_prototypes(50, 12);
    sequential::permuted_tasks(
        train.view(),
        &train_labels,
        test.view(),
        &test_labels,
        count,
        3,
    )
    .unwrap()
}

/// K memories, the last with its pixel entries 0 and its label entries +1: with the other
/// labels clamped at −1 its arguments 0 − 9 ± 1 are negative whatever the image, F′ = 0
/// there (rectified F), and it never gets a gradient.
fn classifier_with_a_dead_memory(k: usize, device: &Device) -> Classifier {
    let mut m = uniform(k, PIXELS + CLASSES, -0.3, 0.3, 21);
    m.row_mut(k - 1).fill(1.0);
    m.row_mut(k - 1).slice_mut(ndarray::s![..PIXELS]).fill(0.0);
    Classifier::new(model(TEMPERATURE), m, device).unwrap()
}

fn schedule(epochs: usize) -> Schedule {
    let mut recipe = Recipe::recommended(2, true);
    recipe.temperature = TEMPERATURE;
    recipe.temperature_final = TEMPERATURE;
    recipe.batch = 10;
    recipe.lr = 0.1;
    Schedule {
        recipe,
        epochs,
        seed: 9,
        restart: false,
    }
}

#[test]
fn importances_are_non_negative_and_zero_where_no_gradient_went() {
    let tasks = small_tasks(2);
    for method in ["ewc:1", "mas:1", "si:1"] {
        let method = Method::parse(method).unwrap();
        let mut clf = classifier_with_a_dead_memory(K, &Device::Cpu);
        let dead_before = clf.memories().row(DEAD).to_owned();
        let report =
            sequential::train_sequence(&mut clf, &tasks, &method, &schedule(2), |_| {}).unwrap();
        let omega = report.importance.expect("penalty methods report Ω");
        assert!(omega.iter().all(|&v| v >= 0.0), "{method}: Ω ≥ 0");
        assert!(
            omega.row(DEAD).iter().all(|&v| v == 0.0),
            "{method}: the dead memory has Ω = 0"
        );
        assert_eq!(
            clf.memories().row(DEAD),
            dead_before,
            "{method}: it never moved"
        );
        assert!(
            omega.iter().any(|&v| v > 0.0),
            "{method}: the other memories learnt something"
        );
        assert_eq!(report.accuracy.len(), 2);
    }
    // The importance of one pass directly: the dead row is 0 for Fisher and MAS.
    let clf = classifier_with_a_dead_memory(K, &Device::Cpu);
    for kind in [sequential::Importance::Fisher, sequential::Importance::Mas] {
        let omega = sequential::gradient_importance(
            &clf,
            tasks[0].train.view(),
            &tasks[0].train_labels,
            10,
            kind,
        )
        .unwrap();
        assert!(omega.iter().all(|&v| v >= 0.0));
        assert!(omega.row(DEAD).iter().all(|&v| v == 0.0), "{kind:?}");
        assert!(omega.row(0).iter().any(|&v| v > 0.0), "{kind:?}");
    }
}

/// A hook that changes nothing, counting its calls.
struct Count(usize, usize);

impl StepHook for Count {
    fn before_step(&mut self, step: &mut GradientStep<'_>) -> dam::Result<()> {
        assert_eq!(step.gradient.dim(), step.memories.dim());
        self.0 += 1;
        Ok(())
    }

    fn after_step(&mut self, _memories: ArrayView2<'_, f32>) -> dam::Result<()> {
        self.1 += 1;
        Ok(())
    }
}

#[test]
fn a_hook_that_changes_nothing_gives_the_same_epoch() {
    let tasks = small_tasks(1);
    for device in [Device::Cpu, Device::Reference] {
        let options = schedule(1).recipe.epoch_options(5);
        let mut plain = classifier_with_a_dead_memory(K, &device);
        let mut hooked = plain.clone();
        let l1 = plain
            .train_epoch(tasks[0].train.view(), &tasks[0].train_labels, &options)
            .unwrap();
        let mut count = Count(0, 0);
        let l2 = hooked
            .train_epoch_with(
                tasks[0].train.view(),
                &tasks[0].train_labels,
                &options,
                &mut count,
            )
            .unwrap();
        assert_eq!(l1, l2, "{device:?}");
        assert_eq!(plain.memories(), hooked.memories(), "{device:?}");
        assert_eq!((count.0, count.1), (12, 12), "120 images in batches of 10");
    }
}

#[test]
fn a_naive_run_gives_the_same_accuracies_on_cpu_and_reference() {
    let tasks = small_tasks(2);
    let run = |device: &Device| {
        let mut clf = classifier_with_a_dead_memory(K, device);
        sequential::train_sequence(&mut clf, &tasks, &Method::Naive, &schedule(2), |_| {})
            .unwrap()
            .accuracy
    };
    let (cpu, reference) = (run(&Device::Cpu), run(&Device::Reference));
    assert_eq!(cpu.len(), 2);
    // f32 against f64 products: at most one of the 50 test images may flip.
    let one_image = 100.0 / 50.0 + 1e-9;
    for (a, b) in cpu.iter().flatten().zip(reference.iter().flatten()) {
        assert!((a - b).abs() <= one_image, "{cpu:?} against {reference:?}");
    }
    // Something was learnt on the first task (chance is 10 %).
    assert!(cpu[0][0] > 50.0, "{cpu:?}");
}

#[test]
fn every_method_runs_and_reports_a_full_matrix() {
    let tasks = small_tasks(3);
    for method in [
        "naive",
        "rehearsal:30",
        "pseudo:20",
        "ewc:5",
        "si:5",
        "mas:5",
        "agem:20",
    ] {
        let m = Method::parse(method).unwrap();
        let mut clf = classifier_with_a_dead_memory(K, &Device::Cpu);
        let mut rows = 0;
        let report = sequential::train_sequence(&mut clf, &tasks, &m, &schedule(1), |done| {
            assert_eq!(done.task, rows);
            rows += 1;
        })
        .unwrap();
        assert_eq!(rows, 3, "{method}");
        assert_eq!(report.accuracy.len(), 3);
        assert!(report.accuracy.iter().all(|r| r.len() == 3));
        assert!(report
            .accuracy
            .iter()
            .flatten()
            .all(|a| (0.0..=100.0).contains(a)));
        let grows = matches!(m, Method::Rehearsal { .. } | Method::Pseudo { .. });
        let want_items: Vec<usize> = match m {
            Method::Rehearsal { per_task } | Method::Pseudo { per_task } if grows => {
                vec![120, 120 + per_task, 120 + 2 * per_task]
            }
            _ => vec![120; 3],
        };
        assert_eq!(report.items, want_items, "{method}");
    }
    let mut clf = classifier_with_a_dead_memory(K, &Device::Cpu);
    let (joint, _) = sequential::train_joint(&mut clf, &tasks, &schedule(1)).unwrap();
    assert_eq!(joint.len(), 3);
    assert_eq!(clf.epochs(), 3, "T × epochs epochs");
}

#[test]
fn pseudo_items_are_binary_and_labelled_by_the_classifier() {
    let clf = classifier_with_a_dead_memory(K, &Device::Cpu);
    let (x, y) = sequential::pseudo_items(&clf, 15, 2, 1).unwrap();
    assert_eq!(x.dim(), (15, PIXELS));
    assert!(x.iter().all(|&v| v == 1.0 || v == -1.0));
    assert_eq!(y, clf.predict(x.view()).unwrap());
    let (x2, _) = sequential::pseudo_items(&clf, 15, 2, 1).unwrap();
    assert_eq!(x, x2, "seeded");
}

/// With `restart`, each task's epochs run the temperature ramp and the rate's decay from
/// their start again; without, they run on across the tasks.
#[test]
fn a_restarted_schedule_starts_each_task_at_the_recipe_start() {
    let tasks = small_tasks(2);
    let mut base = schedule(2);
    base.recipe.temperature = 4.0;
    base.recipe.temperature_final = 2.0;
    base.recipe.ramp_epochs = 4;
    base.recipe.lr_decay = 0.5;
    let mut seen = Vec::new();
    for restart in [false, true] {
        let plan = Schedule { restart, ..base };
        let mut clf = classifier_with_a_dead_memory(K, &Device::Cpu);
        sequential::train_sequence(&mut clf, &tasks, &Method::Naive, &plan, |_| {}).unwrap();
        let last = clf.last_epoch().unwrap();
        assert_eq!(last.epoch, 4);
        seen.push((last.temperature, last.lr));
    }
    let (r, lr) = (&base.recipe, base.recipe.lr);
    // The fourth epoch: epoch 3 of one run, or epoch 1 of task 2's own.
    assert_eq!(seen[0], (r.temperature_at(3), lr * 0.5f64.powi(3)));
    assert_eq!(seen[1].0, r.temperature_at(1));
    assert!((seen[1].1 - lr * 0.5).abs() <= 1e-15 * lr, "{seen:?}");
    assert_ne!(seen[0].0, seen[1].0);
}
