//! `dam lagrangian`: the files, their columns and keys, retrieval with the defaults for each
//! named model, and clear errors for bad arguments.

mod common;
use common::dam;

fn tmp(name: &str) -> std::path::PathBuf {
    common::tmp("lagrangian", name)
}

#[test]
fn each_model_retrieves_with_the_defaults_and_writes_the_files() {
    for (model, device) in [("A", "cpu"), ("B", "cpu"), ("C", "cpu"), ("B", "reference")] {
        let out = tmp(&format!("{model}-{device}"));
        let o = dam(&[
            "lagrangian",
            "--model",
            model,
            "--memories",
            "10",
            "--dim",
            "100",
            "--batch",
            "8",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let csv = std::fs::read_to_string(out.join("trajectory.csv")).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("query,step,t,energy,overlap_nearest"));
        assert_eq!(
            lines.count(),
            8 * 101,
            "{model}: one row per query and step"
        );
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        // Most queries (20% of signs flipped) end on their own memory.
        let retrieved = summary["retrieved_fraction"].as_f64().unwrap();
        assert!(retrieved >= 0.75, "{model}: {summary}");
        let rise = summary["largest_relative_energy_increase"]
            .as_f64()
            .unwrap();
        assert!(rise <= 1e-5, "{model}: {rise}");
        assert!(
            summary["steps_to_converge_mean"].as_f64().is_some(),
            "{summary}"
        );
        let svg = std::fs::read_to_string(out.join("energy.svg")).unwrap();
        assert!(svg.contains("<polyline"), "{model}: no curve drawn");
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn bad_arguments_give_a_message_and_exit_2() {
    let out = tmp("bad");
    let out = out.to_str().unwrap();
    let base = ["lagrangian", "--memories", "4", "--dim", "8", "--out", out];
    for extra in [
        &["--dt", "0"][..],
        &["--visible", "quadratic", "--hidden", "poly:3"],
        &["--visible", "tanh", "--hidden", "lse"],
        &["--model", "D"],
        &["--tau-h=-1"],
        &["--patterns", "mnist"],
        &["--noise", "2"],
        &["--integrator", "rk5"],
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let r = dam(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("dam: error:") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}
