//! `dam minima` through the binary: files, columns, summary keys, the β sweep and errors.

mod common;
use common::dam;

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = common::tmp("minima-cli", name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An equilateral triangle of side 2, with a header line.
fn triangle(dir: &std::path::Path) -> String {
    let path = dir.join("triangle.csv");
    std::fs::write(&path, format!("x,y\n0,0\n2,0\n1,{}\n", 3f64.sqrt())).unwrap();
    path.to_str().unwrap().to_string()
}

fn summary(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn minima_writes_the_contracted_files_for_one_beta_and_a_sweep() {
    let dir = tmp("files");
    let patterns = triangle(&dir);
    let one = dir.join("one");
    let o = dam(&[
        "minima",
        "--patterns",
        &patterns,
        "--energy",
        "lsr",
        "--beta",
        "1",
        "--out",
        one.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout.lines().count(),
        2,
        "a line for β and the closing line: {stdout}"
    );
    assert!(
        stdout.starts_with("beta=1 stored=3 emergent=4 total=7 "),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(one.join("minima.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("beta,kind,support,energy,members,grad_norm,starts,x0,x1")
    );
    let kinds: Vec<&str> = lines.map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(
        kinds,
        ["stored", "stored", "stored", "emergent", "emergent", "emergent", "emergent"]
    );
    let s = summary(&one);
    for key in [
        "beta",
        "stored",
        "emergent",
        "total",
        "eps",
        "patterns",
        "dim",
        "candidates",
        "descent",
        "descent_mismatches",
        "seconds",
        "args",
    ] {
        assert!(s.get(key).is_some(), "summary.json lacks {key}: {s}");
    }
    assert_eq!(
        (s["stored"].as_u64(), s["emergent"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(s["descent"]["starts"], 256);
    assert_eq!(s["descent"]["all_enumerated"], true);
    assert_eq!(s["args"]["energy"], "lsr");
    // The defaults: the library's tolerance, support size and starts.
    assert_eq!(s["tol"], dam_experiments::minima::DEFAULT_TOL);
    assert_eq!(
        s["max_support"],
        dam_experiments::minima::DEFAULT_MAX_SUPPORT
    );
    assert!(one.join("minima.svg").is_file());

    // The sweep: per-β arrays, every row in one file, the figure.
    let sweep = dir.join("sweep");
    let o = dam(&[
        "minima",
        "--patterns",
        &patterns,
        "--energy",
        "log-sum-relu",
        "--beta",
        "0.25:2.25:0.5",
        "--starts",
        "64",
        "--seed",
        "3",
        "--out",
        sweep.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 6);
    let s = summary(&sweep);
    assert_eq!(s["beta"], serde_json::json!([0.25, 0.75, 1.25, 1.75, 2.25]));
    assert_eq!(s["stored"], serde_json::json!([0, 3, 3, 3, 3]));
    assert_eq!(s["emergent"], serde_json::json!([1, 4, 4, 3, 0]));
    assert_eq!(s["descent"].as_array().map(Vec::len), Some(5));
    assert_eq!(s["descent_mismatches"], 0);
    let rows = std::fs::read_to_string(sweep.join("minima.csv"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(rows, 1 + 1 + 7 + 7 + 6 + 3);
    let svg = std::fs::read_to_string(sweep.join("minima.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("stored") && svg.contains("emergent"),
        "svg"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn minima_bad_arguments_give_a_message_naming_the_flag_and_exit_2() {
    let dir = tmp("bad");
    let patterns = triangle(&dir);
    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "1,2\n3\n").unwrap();
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    for (file, energy, beta, extra, flag) in [
        (patterns.as_str(), "lse", "1", &[][..], "--energy"),
        (patterns.as_str(), "lsr", "0", &[][..], "--beta"),
        (patterns.as_str(), "lsr", "2:1:1", &[][..], "--beta"),
        (ragged.to_str().unwrap(), "lsr", "1", &[][..], "--patterns"),
        (empty.to_str().unwrap(), "lsr", "1", &[][..], "--patterns"),
        ("/nonexistent/p.csv", "lsr", "1", &[][..], "--patterns"),
        (
            patterns.as_str(),
            "lsr",
            "1",
            &["--epsilon=-1"][..],
            "--epsilon",
        ),
        (
            patterns.as_str(),
            "lsr",
            "1",
            &["--max-candidates", "3"][..],
            "--max-candidates",
        ),
        (
            patterns.as_str(),
            "lsr",
            "1",
            &["--max-support", "0"][..],
            "--max-support",
        ),
        (
            patterns.as_str(),
            "lsr",
            "1",
            &["--enumerate", "some"][..],
            "--enumerate",
        ),
    ] {
        let mut args = vec![
            "minima",
            "--patterns",
            file,
            "--energy",
            energy,
            "--beta",
            beta,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let r = dam(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("dam: error:") && err.contains(flag) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
