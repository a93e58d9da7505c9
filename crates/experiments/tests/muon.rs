//! `dam muon`: the closed forms of GD and Muon on every device, the loss at W = 0, the
//! entropy floor with label noise, the order in which frequency groups are learned, the
//! scaling exponent of a sweep, clear errors, and the command's files.

mod common;
use common::dam;

use dam::Device;
use dam_experiments::muon::{
    self, closed_form_gd, closed_form_muon, MuonSpec, NewtonSchulz, Optimizer, Spectrum,
};
use dam_experiments::ExperimentError;

/// The stated values (uniform p, K = 100, no noise): Muon with η = 1, GD with η = 100.
const MUON_10: f64 = 4.4845e-3;
const MUON_20: f64 = 2.0405e-7;
const GD_10: f64 = 0.18763;
const GD_20: f64 = 0.067303;
/// The reference (f64, exact SVD) against the stated five-digit values.
const REFERENCE_RTOL: f64 = 1e-4;
/// The f32 devices (logits in f32, 25 cubic Newton–Schulz iterations) against the stated
/// values: f32 rounding of the logits moves L by about 5e-6 of itself (measured on the
/// fast CPU and on lavapipe), the five-digit rounding of the stated values by up to 2.5e-5.
const F32_RTOL: f64 = 1e-4;

fn uniform(optimizer: Optimizer, lr: f64, steps: usize) -> MuonSpec {
    MuonSpec {
        k: 100,
        groups: 10,
        steps,
        lr,
        optimizer,
        ..MuonSpec::default()
    }
}

fn close(what: &str, got: f64, want: f64, rtol: f64) {
    assert!(
        ((got - want) / want).abs() <= rtol,
        "{what}: {got:e} against {want:e} (rtol {rtol:e})"
    );
}

fn check_closed_forms(device: &Device, rtol: f64) {
    let name = format!("{device:?}");
    let m = muon::run(&uniform(Optimizer::Muon, 1.0, 20), device, |_| {}).unwrap();
    close(&format!("{name} muon L(10)"), m.losses[10], MUON_10, rtol);
    close(&format!("{name} muon L(20)"), m.losses[20], MUON_20, rtol);
    let g = muon::run(&uniform(Optimizer::Gd, 100.0, 20), device, |_| {}).unwrap();
    close(&format!("{name} gd L(10)"), g.losses[10], GD_10, rtol);
    close(&format!("{name} gd L(20)"), g.losses[20], GD_20, rtol);
    // Every step, not only the two stated ones, follows the closed form.
    for t in 0..=20 {
        close(
            "muon L(t)",
            m.losses[t],
            closed_form_muon(100, 1.0, t),
            rtol,
        );
        close("gd L(t)", g.losses[t], closed_form_gd(100, 100.0, t), rtol);
    }
    // Uniform frequencies: every group has the mean loss.
    for row in m.group_losses.iter().chain(&g.group_losses) {
        let mean = row.iter().sum::<f64>() / row.len() as f64;
        assert!(
            row.iter().all(|l| (l - mean).abs() <= rtol * mean),
            "{name}: {row:?}"
        );
    }
}

#[test]
fn the_closed_forms_match_the_stated_values() {
    close(
        "muon 10",
        closed_form_muon(100, 1.0, 10),
        MUON_10,
        REFERENCE_RTOL,
    );
    close(
        "muon 20",
        closed_form_muon(100, 1.0, 20),
        MUON_20,
        REFERENCE_RTOL,
    );
    close(
        "gd 10",
        closed_form_gd(100, 100.0, 10),
        GD_10,
        REFERENCE_RTOL,
    );
    close(
        "gd 20",
        closed_form_gd(100, 100.0, 20),
        GD_20,
        REFERENCE_RTOL,
    );
}

#[test]
fn the_reference_follows_the_closed_forms() {
    check_closed_forms(&Device::Reference, REFERENCE_RTOL);
}

#[test]
fn the_fast_cpu_follows_the_closed_forms() {
    check_closed_forms(&Device::Cpu, F32_RTOL);
}

#[test]
fn wgpu_follows_the_closed_forms() {
    check_closed_forms(&Device::wgpu(), F32_RTOL);
}

#[test]
fn the_f32_devices_follow_the_reference_off_the_closed_form() {
    // Power-law groups and label noise: the gradient's singular values spread over an order
    // of magnitude, which 25 cubic iterations still take to 1 within f32 rounding.
    let spec = MuonSpec {
        k: 100,
        groups: 5,
        spectrum: Spectrum::Power(1.5),
        noise: 0.1,
        steps: 30,
        lr: 0.25,
        ..MuonSpec::default()
    };
    let reference = muon::run(&spec, &Device::Reference, |_| {}).unwrap();
    for device in [Device::Cpu, Device::wgpu()] {
        let r = muon::run(&spec, &device, |_| {}).unwrap();
        for (t, (a, b)) in r.losses.iter().zip(&reference.losses).enumerate() {
            close(&format!("{device:?} L({t})"), *a, *b, 1e-5);
        }
        for (a, b) in r
            .final_group_losses()
            .iter()
            .zip(reference.final_group_losses())
        {
            close(&format!("{device:?} group"), *a, *b, 1e-5);
        }
    }
}

#[test]
fn muon_follows_the_closed_form_far_below_epsilon() {
    // L(100) = log(1 + 19e^{−100}) ≈ 7.07e-43: the gradient must not cancel to 0 once
    // the loss is below f64's ε, nor underflow f32 before Newton–Schulz.
    let spec = MuonSpec {
        k: 20,
        groups: 2,
        ..MuonSpec::default()
    };
    let want = closed_form_muon(20, 1.0, 100);
    assert!(want < 1e-42 && want > 1e-43, "{want:e}");
    for (device, rtol) in [(Device::Reference, 1e-9), (Device::Cpu, 1e-3)] {
        let r = muon::run(&spec, &device, |_| {}).unwrap();
        close(&format!("{device:?} L(100)"), r.final_loss(), want, rtol);
    }
}

#[test]
fn the_quintic_iteration_stays_near_the_closed_form() {
    // The quintic iteration does not converge to the polar factor: its singular values
    // end in about [0.7, 1.2], so Muon's steps are that much shorter or longer.
    let spec = MuonSpec {
        ns: NewtonSchulz::Quintic,
        ns_steps: 5,
        ..uniform(Optimizer::Muon, 1.0, 10)
    };
    let r = muon::run(&spec, &Device::Cpu, |_| {}).unwrap();
    let exact = closed_form_muon(100, 1.0, 10);
    assert!(
        r.losses[10] > exact / 100.0 && r.losses[10] < exact * 100.0,
        "{:e}",
        r.losses[10]
    );
}

#[test]
fn the_loss_at_zero_is_log_k() {
    for noise in [0.0, 0.3] {
        for device in [Device::Reference, Device::Cpu] {
            let spec = MuonSpec {
                k: 40,
                groups: 4,
                spectrum: Spectrum::Power(1.0),
                noise,
                steps: 1,
                ..MuonSpec::default()
            };
            let r = muon::run(&spec, &device, |_| {}).unwrap();
            close("L(0)", r.losses[0], 40f64.ln(), 1e-12);
            assert!(r.group_losses[0]
                .iter()
                .all(|l| (l - 40f64.ln()).abs() < 1e-12));
        }
    }
}

#[test]
fn label_noise_keeps_the_loss_above_the_entropy_floor() {
    let (k, noise) = (50, 0.2);
    let floor = muon::label_entropy(k, noise);
    assert!(floor > 0.5, "{floor}");
    for (optimizer, lr) in [(Optimizer::Gd, 50.0), (Optimizer::Muon, 0.5)] {
        for device in [Device::Reference, Device::Cpu] {
            let spec = MuonSpec {
                k,
                groups: 5,
                noise,
                steps: 200,
                lr,
                optimizer,
                ..MuonSpec::default()
            };
            let r = muon::run(&spec, &device, |_| {}).unwrap();
            assert_eq!(r.lower_bound, floor);
            for (t, &l) in r.losses.iter().enumerate() {
                assert!(
                    l >= floor - 1e-9,
                    "{optimizer:?} {device:?} L({t}) = {l} < {floor}"
                );
            }
            // And it gets there: the excess over the floor is a small part of L(0) − floor.
            let excess = r.final_loss() - floor;
            assert!(
                excess < 0.05 * ((k as f64).ln() - floor),
                "{optimizer:?} {device:?} excess {excess}"
            );
        }
    }
}

/// log(group_M / group_1) at the end: how far the rarest group lags the most frequent.
fn spread(r: &muon::MuonReport) -> f64 {
    let g = r.final_group_losses();
    (g[g.len() - 1] / g[0]).ln()
}

#[test]
fn gd_learns_frequent_groups_first_and_muon_evens_them_out() {
    let base = MuonSpec {
        k: 100,
        groups: 5,
        spectrum: Spectrum::Power(1.5),
        steps: 40,
        ..MuonSpec::default()
    };
    let gd = muon::run(
        &MuonSpec {
            optimizer: Optimizer::Gd,
            lr: 100.0,
            ..base.clone()
        },
        &Device::Reference,
        |_| {},
    )
    .unwrap();
    let mu = muon::run(
        &MuonSpec {
            optimizer: Optimizer::Muon,
            lr: 0.25,
            ..base
        },
        &Device::Reference,
        |_| {},
    )
    .unwrap();
    // GD: the more frequent the group, the lower its loss, at every step after the first.
    for row in &gd.group_losses[1..] {
        assert!(row.windows(2).all(|w| w[0] < w[1]), "{row:?}");
    }
    let (s_gd, s_mu) = (spread(&gd), spread(&mu));
    assert!(s_gd > 1.0, "GD spread {s_gd}");
    assert!(s_mu < 0.5 * s_gd, "Muon spread {s_mu} against GD {s_gd}");
}

#[test]
fn a_sweep_of_gd_decays_as_one_over_t() {
    // GD, uniform, no noise: e^Δ ≈ ηt for large t, so L ≈ (K − 1)/(ηt): γ → −1.
    let spec = MuonSpec {
        k: 10,
        groups: 1,
        lr: 10.0,
        optimizer: Optimizer::Gd,
        ..MuonSpec::default()
    };
    let steps = muon::parse_sweep_steps("100:10000:5").unwrap();
    let s = muon::sweep(&spec, &steps, &Device::Reference, |_| {}).unwrap();
    assert_eq!(s.points.len(), 5);
    assert_eq!(s.longest.losses.len(), 10001);
    let fit = s.fit.unwrap();
    assert!((fit.exponent + 1.0).abs() < 0.02, "{fit:?}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let ok = MuonSpec::default();
    let cases = [
        (
            "--groups",
            MuonSpec {
                groups: 7,
                ..ok.clone()
            },
        ),
        (
            "--groups",
            MuonSpec {
                groups: 0,
                ..ok.clone()
            },
        ),
        (
            "--lr",
            MuonSpec {
                lr: 0.0,
                ..ok.clone()
            },
        ),
        (
            "--lr",
            MuonSpec {
                lr: -1.0,
                ..ok.clone()
            },
        ),
        (
            "--noise",
            MuonSpec {
                noise: 1.0,
                ..ok.clone()
            },
        ),
        (
            "--noise",
            MuonSpec {
                noise: -0.1,
                ..ok.clone()
            },
        ),
        (
            "--steps",
            MuonSpec {
                steps: 0,
                ..ok.clone()
            },
        ),
        ("--k", MuonSpec { k: 0, ..ok.clone() }),
        (
            "--ns-steps",
            MuonSpec {
                ns_steps: 0,
                ..ok.clone()
            },
        ),
    ];
    for (flag, spec) in cases {
        match muon::run(&spec, &Device::Reference, |_| {}) {
            Err(ExperimentError::Invalid { argument, .. }) => assert_eq!(argument, flag),
            other => panic!("{flag}: {other:?}"),
        }
    }
    assert!(Spectrum::parse("power:-1").is_err());
    assert!(Spectrum::parse("zipf").is_err());
    assert_eq!(Spectrum::parse("power:1.5").unwrap(), Spectrum::Power(1.5));
    assert!(Optimizer::parse("adam").is_err());
}

fn tmp(name: &str) -> std::path::PathBuf {
    common::tmp("muon", name)
}

#[test]
fn the_command_writes_its_files() {
    let out = tmp("run");
    let o = dam(&[
        "muon",
        "--k",
        "12",
        "--groups",
        "3",
        "--spectrum",
        "power:1",
        "--noise",
        "0.1",
        "--steps",
        "15",
        "--lr",
        "0.5",
        "--device",
        "reference",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("step,loss,group_1,group_2,group_3"));
    assert_eq!(lines.count(), 16);
    assert!(out.join("loss.svg").is_file());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    for key in [
        "final_loss",
        "final_group_losses",
        "lower_bound",
        "seconds",
        "optimizer",
    ] {
        assert!(!summary[key].is_null(), "{key}: {summary}");
    }
    assert_eq!(summary["final_group_losses"].as_array().unwrap().len(), 3);
    assert!(!out.join("sweep.csv").exists());

    let out = tmp("sweep");
    let o = dam(&[
        "muon",
        "--k",
        "10",
        "--groups",
        "2",
        "--optimizer",
        "gd",
        "--lr",
        "10",
        "--sweep-steps",
        "10,30,100",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("exponent="), "{stdout}");
    let sweep = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(sweep.lines().next(), Some("steps,final_loss"));
    assert_eq!(sweep.lines().count(), 4);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["exponent"].as_f64().unwrap() < 0.0, "{summary}");

    for bad in [
        vec!["muon", "--k", "10", "--groups", "3"],
        vec!["muon", "--lr", "0"],
        vec!["muon", "--noise", "1"],
        vec!["muon", "--steps", "0"],
        vec!["muon", "--spectrum", "zipf"],
    ] {
        let dir = tmp("bad");
        let mut args = bad.clone();
        args.extend(["--out", dir.to_str().unwrap()]);
        let o = dam(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("invalid") && !err.contains("panicked"),
            "{bad:?}: {err}"
        );
    }
}
