//! `dam sequential`: its files and their columns, joint training in summary.json, and bad
//! input refused with an error that names the flag.

mod common;
use common::dam;

fn tmp(name: &str) -> std::path::PathBuf {
    common::tmp("sequential", name)
}

/// `dam sequential` on the shipped digits cut to their first 200 training and test images,
/// 3 tasks, K = 20, n = 3, 1 epoch per task, with the flags of `changes` replaced or added.
fn small(out: &std::path::Path, changes: &[(&str, &str)]) -> Vec<String> {
    let mut flags: Vec<(String, String)> = [
        ("--tasks", "3"),
        ("--method", "naive"),
        ("--memories", "20"),
        ("--degree", "3"),
        ("--epochs", "1"),
        ("--limit", "200"),
        ("--seed", "2"),
    ]
    .iter()
    .map(|(f, v)| (f.to_string(), v.to_string()))
    .collect();
    for (f, v) in changes {
        match flags.iter_mut().find(|(g, _)| g == f) {
            Some(entry) => entry.1 = v.to_string(),
            None => flags.push((f.to_string(), v.to_string())),
        }
    }
    let mut args = vec!["sequential".to_string(), "--rectified".into()];
    for (f, v) in flags {
        args.push(f);
        if !v.is_empty() {
            args.push(v);
        }
    }
    args.extend(["--out".to_string(), out.display().to_string()]);
    args
}

fn run(args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    dam(&refs)
}

fn summary(out: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn the_command_writes_its_files() {
    let out = tmp("rehearsal");
    let o = run(&small(
        &out,
        &[("--method", "rehearsal:50"), ("--joint", "")],
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("average_accuracy=") && stdout.contains("joint="),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("accuracy.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("after_task,task,accuracy"));
    let rows: Vec<(usize, usize, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 3, "{l}");
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 9, "T × T rows");
    let mut k = 0;
    for after in 1..=3 {
        for task in 1..=3 {
            assert_eq!((rows[k].0, rows[k].1), (after, task));
            assert!((0.0..=100.0).contains(&rows[k].2));
            k += 1;
        }
    }
    assert!(out.join("accuracy.svg").is_file());
    let s = summary(&out);
    for key in [
        "average_accuracy",
        "backward_transfer",
        "forgetting",
        "accuracy_matrix",
        "task_seconds",
        "args",
        "method",
    ] {
        assert!(!s[key].is_null(), "{key}: {s}");
    }
    assert_eq!(s["method"], "rehearsal");
    // The buffer grows by 50 items per past task.
    assert_eq!(s["task_items"], serde_json::json!([200, 250, 300]));
    let last: Vec<f64> = rows[6..].iter().map(|r| r.2).collect();
    let mean = last.iter().sum::<f64>() / 3.0;
    assert!((s["average_accuracy"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert_eq!(s["joint"]["accuracy"].as_array().unwrap().len(), 3);
    assert!(s["joint"]["average_accuracy"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_penalty_method_runs_on_the_reference_device() {
    let out = tmp("ewc");
    let o = run(&small(
        &out,
        &[
            ("--method", "ewc:5"),
            ("--device", "reference"),
            ("--tasks", "2"),
        ],
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = summary(&out);
    assert_eq!(s["method_spec"], "ewc:5");
    assert_eq!(s["accuracy_matrix"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_names_the_flag() {
    for (flag, change) in [
        ("--tasks", "0"),
        ("--method", "foo"),
        ("--method", "rehearsal:0"),
        ("--method", "ewc:-1"),
        ("--method", "agem"),
        ("--epochs", "0"),
        ("--memories", "0"),
        ("--limit", "0"),
        ("--data", "/nonexistent-digits"),
        ("--temperature", "0"),
        ("--lr-decay", "0"),
        ("--batch", "0"),
        ("--degree", "0"),
        ("--loss-power", "0"),
    ] {
        let dir = tmp("bad");
        let o = run(&small(&dir, &[(flag, change)]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(flag) && !err.contains("panicked"),
            "{change:?}: {err}"
        );
        assert!(!dir.join("accuracy.csv").exists(), "{change:?}");
    }
    // A method that reaches into every step does not run where the epoch runs on wgpu.
    let dir = tmp("wgpu");
    let o = run(&small(&dir, &[("--method", "ewc"), ("--device", "wgpu")]));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--device") && err.contains("ewc"),
        "{err}"
    );
}
