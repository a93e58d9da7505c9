//! The `dam` command-line contract: flags, files, columns, keys, errors, shards and merge.

mod common;
use common::dam;

use std::path::Path;

/// `dam args` must exit with 2 and a `dam: error:` message, never a panic.
fn assert_usage_error(args: &[&str]) {
    let r = dam(args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains("dam: error:") && !err.contains("panicked"),
        "{args:?}: {err}"
    );
}

fn tmp(name: &str) -> std::path::PathBuf {
    common::tmp("cli", name)
}

fn capacity_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "capacity",
        "--patterns",
        "spherical",
        "--dim",
        "12",
        "--energy",
        "lse",
        "--beta",
        "1",
        "--alpha",
        "0.45:0.75:0.1",
        "--trials",
        "24",
        "--device",
        "cpu",
        "--out",
        out,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn capacity_writes_the_contracted_files() {
    let out = tmp("files");
    let o = dam(&capacity_args(out.to_str().unwrap(), &["--seed", "3"]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    assert!(stdout.starts_with("alpha_half="), "{stdout}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "alpha,patterns,trials,successes,success_rate,mean_overlap,bit_flip_rate,seconds,\
             mean_abs_correlation,min_hamming,empty_supports"
        )
    );
    assert_eq!(lines.count(), 4, "4 points: 0.45, 0.55, 0.65, 0.75");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "alpha_half",
        "patterns_half",
        "device",
        "adapter",
        "args",
        "theory",
    ] {
        assert!(
            summary.get(key).is_some(),
            "summary.json lacks {key}: {summary}"
        );
    }
    assert_eq!(summary["device"], "cpu");
    assert!(summary["theory"]["alpha_half"].as_f64().is_some());
    let svg = std::fs::read_to_string(out.join("capacity.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("theory"), "svg");
}

#[test]
fn shards_merge_into_the_unsharded_result() {
    let (whole, s0, s1, merged) = (tmp("whole"), tmp("s0"), tmp("s1"), tmp("merged"));
    for (dir, shard) in [(&whole, None), (&s0, Some("0/2")), (&s1, Some("1/2"))] {
        let d = dir.to_str().unwrap();
        let mut args = capacity_args(d, &[]);
        if let Some(s) = shard {
            args.extend(["--shard", s]);
        }
        let o = dam(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = dam(&[
        "merge",
        s0.to_str().unwrap(),
        s1.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cols = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("results.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(cols(&merged), cols(&whole));
    assert!(merged.join("summary.json").exists() && merged.join("capacity.svg").exists());
}

#[test]
fn bad_arguments_give_a_message_and_a_nonzero_exit() {
    let out = tmp("bad");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "capacity",
                "--patterns",
                "spherical",
                "--dim",
                "12",
                "--energy",
                "lse",
                "--alpha",
                "0.7:0.5:0.1",
                "--trials",
                "4",
                "--out",
                o,
            ],
            "--alpha",
        ),
        (
            vec![
                "capacity",
                "--patterns",
                "spherical",
                "--dim",
                "24",
                "--energy",
                "lse",
                "--alpha",
                "2:2:1",
                "--trials",
                "4",
                "--out",
                o,
            ],
            "2^40",
        ),
        (
            vec![
                "capacity",
                "--patterns",
                "spherical",
                "--dim",
                "12",
                "--energy",
                "lse",
                "--count",
                "10:20:0",
                "--trials",
                "4",
                "--out",
                o,
            ],
            "--count",
        ),
        (
            vec![
                "capacity",
                "--patterns",
                "cubic",
                "--dim",
                "12",
                "--energy",
                "lse",
                "--count",
                "10:20:5",
                "--trials",
                "4",
                "--out",
                o,
            ],
            "cubic",
        ),
        (
            vec![
                "capacity",
                "--patterns",
                "spherical",
                "--dim",
                "12",
                "--energy",
                "lse",
                "--count",
                "10:20:5",
                "--trials",
                "4",
                "--criterion",
                "sometimes",
                "--out",
                o,
            ],
            "--criterion",
        ),
        (
            vec![
                "capacity",
                "--patterns",
                "spherical",
                "--dim",
                "12",
                "--energy",
                "lse",
                "--count",
                "10:20:5",
                "--trials",
                "4",
                "--shard",
                "2/2",
                "--out",
                o,
            ],
            "--shard",
        ),
        (
            vec![
                "capacity",
                "--patterns",
                "spherical",
                "--dim",
                "12",
                "--energy",
                "lse",
                "--count",
                "10:20:5",
                "--trials",
                "4",
                "--out",
                "/proc/dam-cannot-write-here",
            ],
            "/proc/dam-cannot-write-here",
        ),
        (
            vec![
                "capacity",
                "--patterns",
                "binary",
                "--dim",
                "12",
                "--energy",
                "poly",
                "--count",
                "10:20:5",
                "--trials",
                "4",
                "--out",
                o,
            ],
            "spin dynamics",
        ),
    ];
    for (args, needle) in cases {
        let r = dam(&args);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    }
}

/// The engine's rule and device names (`Separation::parse`, `Device::parse`) work on the
/// command line and give the same files as the short spellings, which the files keep.
#[test]
fn engine_names_are_aliases_with_the_same_results() {
    let rows = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("results.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(7).collect::<Vec<_>>().join(","))
            .collect()
    };
    let mut runs = Vec::new();
    for (energy, device) in [("poly", "cpu"), ("Polynomial", " CPU ")] {
        let out = tmp(&format!("alias-{}", energy.len()));
        let o = dam(&[
            "capacity",
            "--patterns",
            "binary",
            "--dim",
            "24",
            "--energy",
            energy,
            "--degree",
            "3",
            "--count",
            "10:40:15",
            "--criterion",
            "exact",
            "--trials",
            "12",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["args"]["energy"], "poly");
        assert_eq!(summary["device"], "cpu");
        runs.push(rows(&out));
        let _ = std::fs::remove_dir_all(&out);
    }
    assert_eq!(runs[0], runs[1]);
    assert_usage_error(&[
        "capacity",
        "--patterns",
        "binary",
        "--dim",
        "24",
        "--energy",
        "poly",
        "--count",
        "10:40:15",
        "--criterion",
        "exact",
        "--trials",
        "2",
        "--device",
        "tpu",
        "--out",
        "x",
    ]);
}

#[test]
fn binary_polynomial_one_step_reports_bit_flip_rates() {
    // THEORY.md §3: n = 3, N = 100, one update from a stored pattern: K = 500 → 0.005,
    // K = 1000 → 0.035 per bit. 40 trials is a small sample (4,000 bits): loose bounds.
    let out = tmp("binary");
    let o = dam(&[
        "capacity",
        "--patterns",
        "binary",
        "--dim",
        "100",
        "--energy",
        "poly",
        "--degree",
        "3",
        "--count",
        "500:1000:500",
        "--dynamics",
        "one-step",
        "--criterion",
        "exact",
        "--trials",
        "40",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rates: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(6)
                .unwrap()
                .parse()
                .expect("bit_flip_rate is filled for binary")
        })
        .collect();
    assert_eq!(rates.len(), 2);
    assert!((0.001..0.012).contains(&rates[0]), "K=500: {}", rates[0]);
    assert!((0.02..0.055).contains(&rates[1]), "K=1000: {}", rates[1]);
}

#[test]
fn drdam_writes_the_contracted_files_on_both_devices() {
    for device in ["cpu", "wgpu"] {
        let out = tmp(&format!("drdam-{device}"));
        let o = dam(&[
            "drdam",
            "--dim",
            "8",
            "--count",
            "40",
            "--beta",
            "1",
            "--features",
            "16,64,256",
            "--trials",
            "2",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "features,energy_rel_error,state_rel_error,seconds,failed_trials"
        );
        assert_eq!(lines.len(), 4, "one row per Y: {csv}");
        let ys: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(',').next().unwrap())
            .collect();
        assert_eq!(ys, ["16", "64", "256"]);
        for line in &lines[1..] {
            let cols: Vec<f64> = line.split(',').map(|c| c.parse().unwrap()).collect();
            assert_eq!(cols.len(), 5, "{line}");
            assert!(
                cols[1..].iter().all(|v| v.is_finite() && *v >= 0.0),
                "{line}"
            );
            assert_eq!(cols[4], 0.0, "no failed trials at β = 1: {line}");
        }
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["device"], device);
        assert!(summary["energy_loglog_slope"].as_f64().unwrap() < 0.0);
        let svg = std::fs::read_to_string(out.join("drdam.svg")).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("1/√Y"),
            "SVG with the reference line"
        );
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn drdam_bad_arguments_give_a_message_and_exit_2() {
    let out = tmp("drdam-bad");
    let o = out.to_str().unwrap();
    for bad in [
        &["--features", "0"][..],
        &["--features", "8", "--beta", "0"],
        &["--features", "8", "--beta", "nan"],
        &["--features", "7"],
        &["--features", "8", "--trials", "0"],
        &["--features", "8", "--step-size=-1"],
    ] {
        let mut args = vec![
            "drdam", "--dim", "4", "--count", "10", "--device", "cpu", "--out", o,
        ];
        args.extend_from_slice(bad);
        assert_usage_error(&args);
    }
}

#[test]
fn drdam_large_beta_marks_failed_trials_instead_of_aborting() {
    let out = tmp("drdam-large-beta");
    let o = dam(&[
        "drdam",
        "--dim",
        "16",
        "--count",
        "200",
        "--beta",
        "10",
        "--features",
        "64,4096",
        "--trials",
        "2",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 2, "{csv}");
    // Y = 64 at β = 10: the Fourier estimate is ≤ 0 for every trial; the means are NaN, not a number.
    assert_eq!(rows[0][1], "NaN", "{csv}");
    assert_eq!(rows[0][4], "2", "{csv}");
    assert!(err.contains("Y = 64: 2 of 2 trials"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bench_prints_the_contracted_json_line_on_every_path() {
    let mut checksums = Vec::new();
    for extra in [
        &["--device", "cpu"][..],
        &["--device", "cpu", "--reference"],
        &["--device", "wgpu"],
        &["--device", "wgpu", "--dtype", "f16"],
    ] {
        let mut args = vec![
            "bench",
            "--patterns",
            "3001",
            "--dim",
            "33",
            "--batch",
            "5",
            "--steps",
            "3",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = dam(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{extra:?}: {err}");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
        let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        for key in [
            "seconds_per_step",
            "gflops",
            "pattern_gbps",
            "device",
            "adapter",
            "path",
            "dtype",
        ] {
            assert!(!r[key].is_null(), "{extra:?}: missing {key} in {r}");
        }
        let s = r["seconds_per_step"].as_f64().unwrap();
        assert!(s > 0.0 && s.is_finite(), "{r}");
        assert_eq!(r["seconds_all"].as_array().unwrap().len(), 3);
        // Device time from timestamp queries: a number on wgpu adapters that have them,
        // null on the CPU; never above the wall-clock median by more than rounding.
        let object = r.as_object().unwrap();
        assert!(object.contains_key("gpu_seconds_per_step"), "{r}");
        let gpu = &r["gpu_seconds_per_step"];
        assert_eq!(gpu.is_null(), extra.contains(&"cpu"), "{r}");
        assert!(gpu.as_f64().unwrap_or(0.0) <= s * 1.01, "{r}");
        // gflops and pattern_gbps follow from the median by their definitions.
        let flops = 4.0 * 5.0 * 3001.0 * 33.0 / s / 1e9;
        assert!((r["gflops"].as_f64().unwrap() - flops).abs() <= 1e-9 * flops.max(1.0));
        let bytes = if extra.contains(&"f16") { 2.0 } else { 4.0 };
        let gbps = 3001.0 * 33.0 * bytes / s / 1e9;
        assert!((r["pattern_gbps"].as_f64().unwrap() - gbps).abs() <= 1e-9 * gbps.max(1.0));
        checksums.push(r["checksum"].as_f64().unwrap());
    }
    // The same step on every path (f16 rounds the patterns: a looser bound).
    assert_eq!(checksums.len(), 4);
    for (i, c) in checksums.iter().enumerate() {
        let tol = if i == 3 { 1e-2 } else { 1e-4 };
        assert!(
            (c - checksums[1]).abs() <= tol * checksums[1].abs(),
            "{checksums:?}"
        );
    }
}

#[test]
fn bench_times_every_call_and_rule_on_the_fast_cpu_and_the_reference() {
    let base = [
        "bench",
        "--patterns",
        "1501",
        "--dim",
        "19",
        "--batch",
        "3",
        "--steps",
        "2",
        "--json",
    ];
    for rule in [
        &["--similarity", "manhattan", "--separation", "top-k:3"][..],
        &[
            "--similarity",
            "euclidean",
            "--separation",
            "rectified:2",
            "--projection",
            "sphere",
        ],
        &[
            "--separation",
            "exponential",
            "--dynamics",
            "iterate",
            "--projection",
            "sign",
        ],
    ] {
        for call in ["step", "retrieve", "energy", "search"] {
            let mut sums = Vec::new();
            for device in ["cpu", "reference"] {
                let mut args = base.to_vec();
                args.extend_from_slice(rule);
                args.extend_from_slice(&["--call", call, "--device", device]);
                let o = dam(&args);
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(o.status.success(), "{args:?}: {err}");
                let r: serde_json::Value =
                    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
                assert_eq!(r["call"], call, "{r}");
                assert_eq!(r["device"], device, "{r}");
                let want_path = match (device, call) {
                    ("reference", _) => "cpu-reference",
                    (_, "search") => "cpu-search",
                    _ => "cpu-fast",
                };
                assert_eq!(r["path"], want_path, "{r}");
                for key in ["similarity", "separation", "seconds_per_step", "checksum"] {
                    assert!(!r[key].is_null(), "{args:?}: missing {key} in {r}");
                }
                sums.push(r["checksum"].as_f64().unwrap());
            }
            assert_eq!(sums.len(), 2);
            assert!(
                (sums[0] - sums[1]).abs() <= 1e-4 * sums[1].abs().max(1.0),
                "{rule:?} {call}: fast {} vs reference {}",
                sums[0],
                sums[1]
            );
        }
    }
}

#[test]
fn bench_bad_arguments_give_a_message_and_exit_2() {
    for bad in [
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--separation",
            "entropy",
        ][..],
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--separation",
            "polynomial",
        ],
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--similarity",
            "cosine",
        ],
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--search",
            "--call",
            "energy",
        ],
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--reference",
            "--device",
            "wgpu",
        ],
        &["--patterns", "0", "--dim", "8", "--batch", "1"][..],
        &["--patterns", "10", "--dim", "8", "--batch", "0"],
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--steps",
            "0",
        ],
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--beta",
            "nan",
        ],
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--beta=-1",
        ],
        // 2⁴⁰ × 512 floats: refused before allocating, not aborted or OOM-killed.
        &[
            "--patterns",
            "1099511627776",
            "--dim",
            "512",
            "--batch",
            "1",
            "--device",
            "cpu",
        ],
        &[
            "--patterns",
            "10",
            "--dim",
            "8",
            "--batch",
            "1",
            "--device",
            "wgpu",
            "--reference",
        ],
    ] {
        let mut args = vec!["bench"];
        args.extend_from_slice(bad);
        assert_usage_error(&args);
    }
}

#[test]
fn devices_lists_adapters_and_says_what_auto_picks() {
    let o = dam(&["devices"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stdout.lines().next().is_some_and(|l| l.starts_with("0: ")),
        "the first adapter is listed with its index: {stdout}"
    );
    assert!(stderr.contains("--device auto: "), "{stderr}");
    let json = dam(&["devices", "--json"]);
    assert!(json.status.success());
    let text = String::from_utf8_lossy(&json.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        stdout.lines().count(),
        "one JSON line per adapter"
    );
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in [
            "index",
            "name",
            "backend",
            "device_type",
            "max_binding_bytes",
        ] {
            assert!(v.get(key).is_some(), "`{key}` missing in {line}");
        }
    }
    // `--device auto` (the default) names its choice on stderr.
    let out = tmp("auto");
    let mut args = capacity_args(out.to_str().unwrap(), &[]);
    let at = args.iter().position(|a| *a == "--device").unwrap();
    args.drain(at..at + 2);
    let o = dam(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("dam: device "), "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn capacity_search_writes_search_csv_and_the_answer_on_both_devices() {
    let mut answers = Vec::new();
    for device in ["cpu", "wgpu"] {
        let out = tmp(&format!("search-{device}"));
        let o = dam(&[
            "capacity",
            "--patterns",
            "binary",
            "--dim",
            "40",
            "--energy",
            "poly",
            "--degree",
            "3",
            "--count",
            "5:400:1",
            "--dynamics",
            "one-step",
            "--criterion",
            "exact",
            "--trials",
            "24",
            "--search",
            "half",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let csv = std::fs::read_to_string(out.join("search.csv")).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("patterns,trials,successes,success_rate"));
        let probes: Vec<(u64, usize)> = lines
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                assert_eq!(f.len(), 4, "{l}");
                (f[0].parse().unwrap(), f[2].parse().unwrap())
            })
            .collect();
        assert_eq!(
            &probes[..2].iter().map(|p| p.0).collect::<Vec<_>>(),
            &[5, 400]
        );
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let p = summary["patterns_half"]
            .as_u64()
            .expect("an answer in the bracket");
        assert_eq!(summary["bracket"], serde_json::json!([p, p + 1]));
        assert_eq!(summary["search"], "half");
        assert_eq!(summary["probes"].as_u64(), Some(probes.len() as u64));
        // The answer met the target; the load above it did not.
        let successes = |q: u64| probes.iter().find(|x| x.0 == q).unwrap().1;
        assert!(2 * successes(p) >= 24 && 2 * successes(p + 1) < 24);
        answers.push((p, probes));
    }
    assert_eq!(
        answers[0], answers[1],
        "the same probes and answer on both devices"
    );
    // A bracket that is not one, and search with shards, are errors.
    assert_usage_error(&[
        "capacity",
        "--patterns",
        "spherical",
        "--dim",
        "8",
        "--energy",
        "lse",
        "--count",
        "7:7:1",
        "--trials",
        "4",
        "--search",
        "all",
        "--device",
        "cpu",
        "--out",
        tmp("search-bad").to_str().unwrap(),
    ]);
    let shard = dam(&[
        "capacity",
        "--patterns",
        "spherical",
        "--dim",
        "8",
        "--energy",
        "lse",
        "--count",
        "2:70:1",
        "--trials",
        "4",
        "--search",
        "all",
        "--shard",
        "0/2",
        "--device",
        "cpu",
        "--out",
        tmp("search-shard").to_str().unwrap(),
    ]);
    assert_eq!(
        shard.status.code(),
        Some(2),
        "clap refuses --search with --shard"
    );
}

#[test]
fn capacity_curve_writes_curve_csv_and_svg() {
    let out = tmp("curve");
    let o = dam(&[
        "capacity-curve",
        "--dims",
        "20:30:10",
        "--degree",
        "3",
        "--count",
        "2:300:1",
        "--trials",
        "16",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("curve.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "dim,energy,degree,target,patterns,probes,estimate,seconds,note"
    );
    assert_eq!(lines.len(), 1 + 4, "two dims × two energies: {csv}");
    for (line, (dim, energy)) in
        lines[1..]
            .iter()
            .zip([(20, "poly"), (30, "poly"), (20, "rpoly"), (30, "rpoly")])
    {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(
            (f[0], f[1], f[3]),
            (dim.to_string().as_str(), energy, "half"),
            "{line}"
        );
        assert!(f[4].parse::<u64>().is_ok(), "an answer: {line}");
    }
    let svg = std::fs::read_to_string(out.join("curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("K–H estimate"));
    let bad = dam(&[
        "capacity-curve",
        "--dims",
        "20:30:10",
        "--energies",
        "quartic",
        "--count",
        "2:300:1",
        "--device",
        "cpu",
        "--out",
        tmp("curve-bad").to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(2));
}

/// `--patterns correlated:C | separated:D | mnist` and `--query random`: both devices give
/// the same rows (the generators' bits are equal; the sets built on the host are shared),
/// and results.csv reports the realised correlation and minimum distance.
#[test]
fn capacity_runs_the_new_ensembles_identically_on_both_devices() {
    let runs: [&[&str]; 5] = [
        &[
            "--patterns",
            "correlated:0.25",
            "--dim",
            "40",
            "--energy",
            "poly",
            "--degree",
            "3",
            "--criterion",
            "exact",
            "--query",
            "flip:0.05",
        ],
        &[
            "--patterns",
            "correlated:0.5",
            "--dim",
            "24",
            "--energy",
            "lse",
            "--beta",
            "0.5",
            "--criterion",
            "nearest",
        ],
        &[
            "--patterns",
            "separated:14",
            "--dim",
            "40",
            "--energy",
            "rpoly",
            "--degree",
            "3",
            "--criterion",
            "exact",
        ],
        &[
            "--patterns",
            "mnist",
            "--dim",
            "784",
            "--energy",
            "lse",
            "--beta",
            "0.05",
            "--criterion",
            "nearest",
            "--query",
            "flip:0.1",
        ],
        &[
            "--patterns",
            "binary",
            "--dim",
            "16",
            "--energy",
            "poly",
            "--degree",
            "3",
            "--criterion",
            "nearest",
            "--query",
            "random",
            "--dynamics",
            "converge:20",
        ],
    ];
    for extra in runs {
        let mut rows = Vec::new();
        for device in ["cpu", "wgpu"] {
            let out = tmp(&format!("ens-{device}"));
            let mut args = vec![
                "capacity",
                "--count",
                "20:60:40",
                "--trials",
                "12",
                "--device",
                device,
                "--out",
                out.to_str().unwrap(),
            ];
            args.extend_from_slice(extra);
            let o = dam(&args);
            assert!(
                o.status.success(),
                "{extra:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
            let lines: Vec<Vec<String>> = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').map(String::from).collect())
                .collect();
            assert_eq!(lines.len(), 2, "{extra:?}: {csv}");
            for f in &lines {
                assert_eq!(f.len(), 11, "{extra:?}: {csv}");
                // empty_supports: only the log-sum-ReLU energy has supports.
                assert_eq!(f[10], "", "{extra:?}: {csv}");
                let corr: f64 = f[8].parse().expect("a realised correlation");
                assert!((0.0..=1.0).contains(&corr), "{extra:?}: {csv}");
                let binary = !extra.contains(&"lse") || !extra.contains(&"mnist");
                assert_eq!(f[9].is_empty(), !binary, "{extra:?}: {csv}");
                if extra[1] == "separated:14" {
                    assert!(f[9].parse::<u64>().unwrap() >= 14, "{csv}");
                }
                if extra[1] == "correlated:0.5" {
                    assert!(corr > 0.3, "realised correlation {corr}: {csv}");
                }
            }
            // P, trials, successes (the seconds column differs).
            rows.push(
                lines
                    .iter()
                    .map(|f| (f[1].clone(), f[3].clone(), f[9].clone()))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(rows[0], rows[1], "{extra:?}: the same rows on both devices");
    }
}

#[test]
fn bad_ensembles_give_a_message_and_exit_2() {
    let out = tmp("bad-ensembles");
    let out = out.to_str().unwrap();
    let base = |patterns: &'static str, dim: &'static str, count: &'static str| {
        vec![
            "capacity",
            "--patterns",
            patterns,
            "--dim",
            dim,
            "--energy",
            "poly",
            "--degree",
            "3",
            "--count",
            count,
            "--trials",
            "2",
            "--criterion",
            "exact",
            "--device",
            "cpu",
            "--out",
            out,
        ]
    };
    for (patterns, dim, count) in [
        ("correlated:1", "20", "5:10:5"),
        ("correlated:-0.1", "20", "5:10:5"),
        ("correlated", "20", "5:10:5"),
        ("separated:21", "20", "5:10:5"),
        ("separated:2.5", "20", "5:10:5"),
        ("separated:12", "16", "100:200:100"),
        ("mnist", "100", "5:10:5"),
        ("mnist:/no/such/folder", "784", "5:10:5"),
        ("mnist", "784", "20000:20001:1"),
        ("binary:3", "20", "5:10:5"),
        ("fractal", "20", "5:10:5"),
    ] {
        assert_usage_error(&base(patterns, dim, count));
    }
    let o = dam(&base("separated:12", "16", "100:200:100"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("lower P or d"), "{err}");
}

/// `dam census`: the contracted files, the same attractors on both devices, basin
/// fractions summing to 1, and clear errors.
#[test]
fn census_classifies_random_starts_on_both_devices() {
    let mut csvs = Vec::new();
    for device in ["cpu", "wgpu"] {
        let out = tmp(&format!("census-{device}"));
        let o = dam(&[
            "census",
            "--patterns",
            "prototype:3:0.15",
            "--dim",
            "70",
            "--count",
            "30",
            "--energy",
            "poly",
            "--degree",
            "2",
            "--starts",
            "300",
            "--seed",
            "4",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.starts_with("starts=300 attractors="), "{stdout}");
        let csv = std::fs::read_to_string(out.join("census.csv")).unwrap();
        assert_eq!(
            csv.lines().next(),
            Some("attractor,class,label,starts,basin_fraction,energy,max_overlap,stability_ratio,converged")
        );
        let total: usize = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(3).unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(total, 300, "{csv}");
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let classes = &summary["classes"];
        let share: f64 = ["stored", "prototype", "mixture", "spurious"]
            .iter()
            .map(|c| classes[c]["basin_fraction"].as_f64().unwrap())
            .sum();
        assert!((share - 1.0).abs() < 1e-9, "{summary}");
        assert!(
            classes["prototype"]["starts"].as_u64().unwrap() > 0,
            "{summary}"
        );
        assert_eq!(summary["starts"], 300);
        assert!(out.join("census.svg").exists());
        csvs.push(csv);
    }
    assert_eq!(csvs[0], csvs[1], "the same census on both devices");
    let out = tmp("census-bad");
    let out = out.to_str().unwrap();
    for bad in [
        &["--count", "30", "--starts", "0"][..],
        &["--count", "30", "--energy", "lse"],
        &["--count", "30", "--patterns", "gaussian"],
        &["--count", "30", "--patterns", "prototype:0:0.1"],
        &["--count", "30", "--patterns", "prototype:3"],
        &["--count", "30", "--patterns", "separated:71"],
        &["--count", "30", "--max-sweeps", "0"],
        &["--count", "0"],
    ] {
        let mut args = vec!["census", "--dim", "70", "--device", "cpu", "--out", out];
        args.extend_from_slice(bad);
        assert_usage_error(&args);
    }
}

/// `dam capacity-ensembles`: one row per (degree, value), the same answers on both
/// devices, capacity falling with correlation, and an unreachable separation noted.
#[test]
fn capacity_ensembles_writes_its_files_on_both_devices() {
    let mut answers = Vec::new();
    for device in ["cpu", "wgpu"] {
        let out = tmp(&format!("ensembles-{device}"));
        let o = dam(&[
            "capacity-ensembles",
            "--vary",
            "correlated:0:0.6:0.3",
            "--dim",
            "24",
            "--degrees",
            "2,3",
            "--count",
            "2:400:1",
            "--trials",
            "20",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let csv = std::fs::read_to_string(out.join("ensembles.csv")).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("family,parameter,degree,energy,target,patterns,probes,mean_abs_correlation,min_hamming,seconds,note")
        );
        let rows: Vec<Vec<String>> = lines
            .map(|l| l.split(',').map(String::from).collect())
            .collect();
        assert_eq!(rows.len(), 6, "{csv}");
        let p = |i: usize| rows[i][5].parse::<u64>().unwrap();
        // n = 3: c = 0 stores more than c = 0.6.
        assert!(p(3) > p(5), "{csv}");
        assert!(out.join("ensembles.svg").exists());
        answers.push(
            rows.iter()
                .map(|r| (r[1].clone(), r[2].clone(), r[5].clone()))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(answers[0], answers[1]);
    let out = tmp("ensembles-sep");
    let o = dam(&[
        "capacity-ensembles",
        "--vary",
        "separated:9:9:1",
        "--dim",
        "16",
        "--degrees",
        "3",
        "--count",
        "2:200:1",
        "--trials",
        "10",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("ensembles.csv")).unwrap();
    assert!(csv.contains("capped: the set could not be built"), "{csv}");
    for bad in [
        &["--vary", "fractal:0:1:1"][..],
        &["--vary", "correlated:0:1.2:0.5"],
        &["--vary", "separated"],
        &["--vary", "correlated:0:0.5:0.5", "--degrees", "2,x"],
    ] {
        let mut args = vec![
            "capacity-ensembles",
            "--dim",
            "16",
            "--count",
            "2:50:1",
            "--trials",
            "4",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(bad);
        assert_usage_error(&args);
    }
}

fn write_idx(path: &Path, dims: &[u32], data: &[u8], type_code: u8) {
    let mut bytes = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

/// `dam train`: the contracted files, a row per epoch, resuming with --init, and clear
/// errors (exit 2) for bad arguments and bad data.
#[test]
fn train_writes_the_contracted_files_and_refuses_bad_input() {
    let out = tmp("train");
    let o = dam(&[
        "train",
        "--memories",
        "12",
        "--degree",
        "3",
        "--rectified",
        "--temperature",
        "60",
        "--lr",
        "0.1",
        "--epochs",
        "2",
        "--batch",
        "200",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("test_error="));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "epoch,loss,train_error,test_error,seconds");
    assert_eq!(lines.len(), 3, "{csv}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "test_error",
        "train_error",
        "epochs",
        "device",
        "adapter",
        "args",
        "votes_per_memory",
        "dominant_memory_fraction",
    ] {
        assert!(!summary[key].is_null(), "{key}: {summary}");
    }
    assert_eq!(summary["epochs"], 2);
    assert_eq!(summary["votes_per_memory"].as_array().unwrap().len(), 11);
    let png = std::fs::read(out.join("memories.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // Resume from the saved memories: the epoch count continues.
    let out2 = tmp("train-resume");
    let init = out.join("memories.safetensors");
    let o = dam(&[
        "train",
        "--memories",
        "12",
        "--degree",
        "3",
        "--rectified",
        "--temperature",
        "60",
        "--lr",
        "0.1",
        "--epochs",
        "1",
        "--batch",
        "200",
        "--device",
        "cpu",
        "--init",
        init.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out2.join("metrics.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("3,"), "{csv}");

    // Bad data: counts that disagree, a label out of range, a truncated file.
    let data = tmp("train-data");
    std::fs::create_dir_all(&data).unwrap();
    let images: Vec<u8> = (0..3 * 784).map(|i| (i % 251) as u8).collect();
    for prefix in ["train", "t10k"] {
        write_idx(
            &data.join(format!("{prefix}-images-idx3-ubyte")),
            &[3, 28, 28],
            &images,
            8,
        );
        write_idx(
            &data.join(format!("{prefix}-labels-idx1-ubyte")),
            &[3],
            &[0, 1, 2],
            8,
        );
    }
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "train",
            "--data",
            data.to_str().unwrap(),
            "--memories",
            "4",
            "--degree",
            "3",
            "--epochs",
            "1",
            "--out",
            out2.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| dam(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        run(base(&[])).status.success(),
        "a well-formed tiny set trains"
    );
    let o = run(base(&[
        "--temperature-final",
        "30",
        "--ramp-epochs",
        "2",
        "--momentum",
        "0.6",
    ]));
    assert!(
        o.status.success(),
        "with a temperature ramp and a fixed momentum: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(base(&["--device", "wgpu"]));
    assert!(
        o.status.success(),
        "on wgpu too: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    write_idx(&data.join("train-labels-idx1-ubyte"), &[2], &[0, 1], 8);
    let o = run(base(&[]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 labels for 3 images"));
    write_idx(&data.join("train-labels-idx1-ubyte"), &[3], &[0, 1, 12], 8);
    let o = run(base(&[]));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not below 10"));
    write_idx(&data.join("train-labels-idx1-ubyte"), &[3], &[0, 1, 2], 8);
    write_idx(
        &data.join("train-images-idx3-ubyte"),
        &[3, 28, 28],
        &images[..100],
        8,
    );
    assert_eq!(run(base(&[])).status.code(), Some(2));
    // Bad arguments.
    let o2 = out2.to_str().unwrap();
    for bad in [
        &["--memories", "0", "--degree", "3"][..],
        &["--memories", "4", "--degree", "0"],
        &["--memories", "4", "--degree", "3", "--temperature", "0"],
        &["--memories", "4", "--degree", "3", "--temperature=-2"],
        &["--memories", "4", "--degree", "3", "--loss-power", "0"],
        &["--memories", "4", "--degree", "3", "--batch", "0"],
        &[
            "--memories",
            "4",
            "--degree",
            "3",
            "--temperature-final",
            "0",
        ],
        &["--memories", "4", "--degree", "3", "--momentum", "1"],
        &["--memories", "4", "--degree", "3", "--momentum=-0.1"],
        &[
            "--memories",
            "4",
            "--degree",
            "3",
            "--init",
            "/no/such/file",
        ],
    ] {
        let mut args = vec!["train", "--epochs", "1", "--out", o2];
        args.extend_from_slice(bad);
        assert_usage_error(&args);
    }
}

/// `dam train` without schedule flags takes the recipe for the degree; a run whose outputs
/// are saturated from the start stops after its first epoch with exit code 2, naming the
/// flag to raise, and keeps the epoch's row and memories on disk.
#[test]
fn train_defaults_to_the_recipe_and_stops_a_saturated_run() {
    // One epoch of K = 10 rectified memories at n = 3 on the CPU, with `extra` flags.
    let train = |extra: &[&str], out: &std::path::Path| {
        let mut args = vec![
            "train",
            "--memories",
            "10",
            "--degree",
            "3",
            "--rectified",
            "--epochs",
            "1",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--out", out.to_str().unwrap()]);
        dam(&args)
    };
    let out = tmp("train-recipe");
    let o = train(&[], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let recipe = &summary["recipe"];
    assert_eq!(recipe["temperature"], 400.0, "{summary}");
    assert_eq!(recipe["temperature_final"], 50.0, "{summary}");
    assert_eq!(recipe["ramp_epochs"], 50, "{summary}");
    assert_eq!(
        (recipe["lr"].as_f64(), recipe["lr_decay"].as_f64()),
        (Some(0.1), Some(0.95))
    );
    assert_eq!(recipe["batch"], 100, "{summary}");
    // The digits are 28 × 28 images: shifted by a pixel unless --shift says otherwise.
    assert_eq!(recipe["shift"], 1, "{summary}");
    assert!(summary["test_error"].as_f64().unwrap() < 90.0, "{summary}");
    let out0 = tmp("train-no-shift");
    let o = train(&["--shift", "0"], &out0);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary0: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out0.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary0["recipe"]["shift"], 0, "{summary0}");
    assert_eq!(summary0["args"]["shift"], 0, "{summary0}");
    let memories = |dir: &std::path::Path| std::fs::read(dir.join("memories.safetensors")).unwrap();
    assert_ne!(
        memories(&out0),
        memories(&out),
        "a shifted epoch moves other memories"
    );
    let o = train(&["--shift", "28"], &tmp("train-shift-28"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "invalid `--shift` = \"28\": the shift must be smaller than the image side 28"
        ),
        "{err}"
    );

    let out = tmp("train-saturated");
    let o = dam(&[
        "train",
        "--memories",
        "10",
        "--degree",
        "3",
        "--rectified",
        "--temperature",
        "1",
        "--epochs",
        "5",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "dam: error: outputs saturated at the start (epoch 1: no memory received a gradient"
        ) && err.contains("): raise --temperature (now 1)")
            && !err.contains("panicked"),
        "{err}"
    );
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("1,"), "{csv}");
    assert!(out.join("memories.safetensors").exists());
    assert!(!out.join("summary.json").exists());
}

/// `--energy lsr`: b defaults to 2 + √2 and is recorded; `empty_supports` is filled; the
/// theory line is the exact T = 0 threshold; cpu and reference give the same rows but
/// the timing; wgpu is refused with an error naming the devices to use.
#[test]
fn capacity_runs_the_log_sum_relu_energy() {
    let mut rows = Vec::new();
    for device in ["cpu", "reference"] {
        let out = tmp(&format!("lsr-{device}"));
        let o = dam(&[
            "capacity",
            "--patterns",
            "spherical",
            "--dim",
            "10",
            "--energy",
            "log-sum-relu",
            "--count",
            "10:400:130",
            "--trials",
            "12",
            "--query",
            "flip:0.1",
            "--device",
            device,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["args"]["energy"], "lsr");
        assert_eq!(summary["args"]["beta"], 2.0 + std::f64::consts::SQRT_2);
        // The exact threshold is for stored queries only.
        assert_eq!(summary["theory"], serde_json::Value::Null);
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        let table: Vec<Vec<String>> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect();
        assert_eq!(table.len(), 4, "{csv}");
        for row in &table {
            assert_eq!(row.len(), 11, "{csv}");
            assert!(row[10].parse::<usize>().is_ok(), "empty_supports: {csv}");
        }
        // All columns but `seconds`.
        rows.push(
            table
                .into_iter()
                .map(|mut r| {
                    r.remove(7);
                    r
                })
                .collect::<Vec<_>>(),
        );
        let _ = std::fs::remove_dir_all(&out);
    }
    assert_eq!(rows[0], rows[1], "cpu and reference");
    let out = tmp("lsr-stored");
    let o = dam(&[
        "capacity",
        "--patterns",
        "spherical",
        "--dim",
        "10",
        "--energy",
        "lsr",
        "--count",
        "10:10:1",
        "--trials",
        "4",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(
        summary["theory"]["alpha_half"].as_f64().is_some(),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&out);
    let out = tmp("lsr-wgpu");
    let r = dam(&[
        "capacity",
        "--patterns",
        "spherical",
        "--dim",
        "10",
        "--energy",
        "lsr",
        "--count",
        "10:10:1",
        "--trials",
        "2",
        "--device",
        "wgpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--energy lsr") && err.contains("--device cpu") && !err.contains("panicked"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// `--energy sparsemax` and `entmax:1.25` on a built ±1 set: the energy is recorded by its
/// spelling, cpu, reference and wgpu give the same rows but the timing; a procedural set
/// and a bad α are refused with exit 2 and the reason.
#[test]
fn capacity_runs_the_entmax_energies() {
    for energy in ["sparsemax", "entmax:1.25"] {
        let mut rows = Vec::new();
        for device in ["cpu", "reference", "wgpu"] {
            let out = tmp(&format!("entmax-{energy}-{device}"));
            let o = dam(&[
                "capacity",
                "--patterns",
                "separated:4",
                "--dim",
                "16",
                "--energy",
                energy,
                "--beta",
                "0.1",
                "--count",
                "4:40:12",
                "--trials",
                "8",
                "--query",
                "flip:0.1",
                "--dynamics",
                "converge:5",
                "--criterion",
                "overlap:0.9",
                "--device",
                device,
                "--out",
                out.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let summary: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                    .unwrap();
            assert_eq!(summary["args"]["energy"], energy);
            let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
            let table: Vec<Vec<String>> = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').map(str::to_string).collect())
                .collect();
            assert_eq!(table.len(), 4, "{csv}");
            // All columns but `seconds`.
            rows.push(
                table
                    .into_iter()
                    .map(|mut r| {
                        r.remove(7);
                        r
                    })
                    .collect::<Vec<_>>(),
            );
            let _ = std::fs::remove_dir_all(&out);
        }
        assert_eq!(rows[0], rows[1], "{energy}: cpu and reference");
        // wgpu's similarities are f32 sums of another order: the same successes, the mean
        // overlap within a few f32 ulps.
        assert_eq!(rows[0].len(), rows[2].len(), "{energy}");
        for (cpu, wgpu) in rows[0].iter().zip(&rows[2]) {
            assert_eq!(cpu.len(), wgpu.len(), "{energy}");
            for (c, (a, b)) in cpu.iter().zip(wgpu).enumerate() {
                if c == 5 {
                    let (a, b): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
                    assert!((a - b).abs() < 1e-5, "{energy}: overlap {a} vs {b}");
                } else {
                    assert_eq!(a, b, "{energy}: column {c}, cpu and wgpu");
                }
            }
        }
    }
    for (patterns, energy, says) in [
        ("spherical", "entmax", "separated:D or mnist"),
        ("separated:4", "entmax:2.5", "1 < α ≤ 2"),
    ] {
        let out = tmp("entmax-refused");
        let r = dam(&[
            "capacity",
            "--patterns",
            patterns,
            "--dim",
            "16",
            "--energy",
            energy,
            "--count",
            "4:4:1",
            "--trials",
            "2",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{energy}: {err}");
        assert!(
            err.contains(says) && !err.contains("panicked"),
            "{energy}: {err}"
        );
    }
}

/// `dam train --optimizer`: an unknown name is a usage error naming the choices, and
/// `muon` trains on the CPU (recorded in summary.json's args).
#[test]
fn train_optimizer_flag() {
    let out = tmp("train-muon");
    let base = [
        "train",
        "--memories",
        "12",
        "--degree",
        "3",
        "--rectified",
        "--temperature",
        "60",
        "--epochs",
        "1",
        "--batch",
        "400",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ];
    let mut bogus = base.to_vec();
    bogus.extend(["--optimizer", "bogus"]);
    let r = dam(&bogus);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--optimizer") && err.contains("krotov") && err.contains("muon"),
        "{err}"
    );
    let mut zero = base.to_vec();
    zero.extend(["--optimizer", "muon", "--ns-steps", "0"]);
    assert_usage_error(&zero);
    let mut muon = base.to_vec();
    muon.extend(["--optimizer", "muon", "--lr", "1"]);
    let o = dam(&muon);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["args"]["optimizer"], "muon");
}
