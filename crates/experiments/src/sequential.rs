//! `dam sequential`: permuted digits learned one task after another by the Krotov–Hopfield
//! classifier with a continual-learning method ([`dam::sequential`]), optionally against
//! joint training on all tasks at once: accuracy.csv (`after_task,task,accuracy`, T × T
//! rows) and summary.json; the binary adds accuracy.svg ([`crate::sequential_plot`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use dam::learn::{Classifier, ClassifierModel, Recipe, RecipeOverrides};
use dam::sequential::{self, Method, Schedule, Task, TaskDone};

use crate::error::{invalid, output, prepare_out, ExperimentError, Result};
use crate::train::{load_digits, write_summary};

/// The classes of the digits.
const CLASSES: usize = 10;

/// `dam sequential`: the tasks, the method, the model, the schedule and where to write.
#[derive(Debug, Clone)]
pub struct SequentialSpec {
    /// Folder of IDX files (train-* and t10k-*); `None`: the shipped digits.
    pub data: Option<PathBuf>,
    /// Use only the first `limit` training and test images of the data (every task).
    pub limit: Option<usize>,
    /// Number of tasks T.
    pub tasks: usize,
    /// `--method` as given ([`Method::parse`]).
    pub method: String,
    /// Also train on all tasks at once (the upper bound).
    pub joint: bool,
    /// Number of memories K.
    pub memories: usize,
    /// Degree n of F.
    pub degree: u32,
    /// F = max(x, 0)ⁿ instead of xⁿ.
    pub rectified: bool,
    /// m in the loss Σ (c − t)^{2m}.
    pub loss_power: u32,
    /// The schedule flags as `dam train` reads them (`None`: the recipe's).
    pub overrides: RecipeOverrides,
    /// Epochs per task.
    pub epochs: usize,
    /// Seed of the memories, the permutations, the sample order, the buffers.
    pub seed: u64,
    /// Start the temperature ramp and the rate's decay again at each task
    /// ([`dam::sequential::Schedule::restart`]).
    pub restart: bool,
    /// The output folder.
    pub out: PathBuf,
    /// The command's arguments, as summary.json records them.
    pub args: serde_json::Value,
}

/// What [`run`] measured.
#[derive(Debug, Clone)]
pub struct SequentialReport {
    /// The method run.
    pub method: Method,
    /// The accuracy matrix and timings.
    pub sequence: sequential::SequenceReport,
    /// Per task, the accuracy (%) of joint training, when run.
    pub joint: Option<Vec<f64>>,
    /// summary.json as written.
    pub summary: serde_json::Value,
}

/// Maps an engine error about the method or the device to the flag that caused it.
fn flag_error(e: dam::Error, method: &str) -> ExperimentError {
    match e {
        dam::Error::InvalidParameter {
            argument: "method",
            value,
            reason,
        } => invalid("--method", &value, reason),
        dam::Error::InvalidParameter {
            argument,
            value,
            reason,
        } if schedule_flag(argument).is_some() => invalid(
            schedule_flag(argument).unwrap_or("--method"),
            &value,
            reason,
        ),
        dam::Error::Unsupported { detail, .. } => invalid(
            "--device",
            "wgpu",
            format!("--method {method}: {detail}; use --device cpu or reference"),
        ),
        other => other.into(),
    }
}

/// The flag of a schedule setting the engine names ([`Recipe::validate`]).
fn schedule_flag(argument: &str) -> Option<&'static str> {
    Some(match argument {
        "temperature" | "temperature (T)" => "--temperature",
        "degree (n)" => "--degree",
        "loss power (m)" => "--loss-power",
        "temperature_final" => "--temperature-final",
        "batch" => "--batch",
        "lr" => "--lr",
        "lr_decay" => "--lr-decay",
        "momentum" => "--momentum",
        _ => return None,
    })
}

/// Parses `--method` (errors name the flag).
pub fn parse_method(text: &str) -> Result<Method> {
    Method::parse(text).map_err(|e| flag_error(e, text))
}

/// Runs the sequence of `spec` on `device` (`progress` after each task), writes
/// accuracy.csv and summary.json.
pub fn run(
    spec: &SequentialSpec,
    device: &dam::Device,
    mut progress: impl FnMut(&TaskDone),
) -> Result<SequentialReport> {
    let method = parse_method(&spec.method)?;
    if spec.tasks == 0 {
        return Err(invalid("--tasks", "0", "at least one task"));
    }
    if spec.epochs == 0 {
        return Err(invalid("--epochs", "0", "at least one epoch per task"));
    }
    if spec.memories == 0 {
        return Err(invalid("--memories", "0", "K must be at least 1"));
    }
    if spec.limit == Some(0) {
        return Err(invalid("--limit", "0", "at least one image"));
    }
    method
        .validate(device)
        .map_err(|e| flag_error(e, &spec.method))?;
    let recipe = Recipe::recommended(spec.degree, spec.rectified).with(&spec.overrides);
    let model = ClassifierModel {
        degree: spec.degree,
        rectified: spec.rectified,
        temperature: recipe.temperature,
        loss_power: spec.loss_power,
        classes: CLASSES,
    };
    recipe.validate().map_err(|e| flag_error(e, &spec.method))?;
    model.validate().map_err(|e| flag_error(e, &spec.method))?;
    let data = spec.data.clone().unwrap_or_else(dam::mnist::data_dir);
    let mut train = load_digits(&data, "train", CLASSES)?;
    let mut test = load_digits(&data, "t10k", CLASSES)?;
    if let Some(limit) = spec.limit {
        for set in [&mut train, &mut test] {
            let keep = limit.min(set.labels.len());
            set.images = set.images.slice(ndarray::s![..keep, ..]).to_owned();
            set.labels.truncate(keep);
        }
    }
    let tasks: Vec<Task> = sequential::permuted_tasks(
        train.images.view(),
        &train.labels,
        test.images.view(),
        &test.labels,
        spec.tasks,
        spec.seed,
    )?;
    let visible = train.images.ncols();
    let schedule = Schedule {
        recipe,
        epochs: spec.epochs,
        seed: spec.seed,
        restart: spec.restart,
    };
    let (device_name, adapter) = device.describe()?;
    prepare_out(&spec.out)?;
    let mut clf = Classifier::random(model, spec.memories, visible, spec.seed, device)?;
    let sequence =
        sequential::train_sequence(&mut clf, &tasks, &method, &schedule, |done| progress(done))
            .map_err(|e| flag_error(e, &spec.method))?;
    write_accuracy_csv(&spec.out.join("accuracy.csv"), &sequence.accuracy)?;
    let joint = if spec.joint {
        let mut fresh = Classifier::random(model, spec.memories, visible, spec.seed, device)?;
        Some(sequential::train_joint(&mut fresh, &tasks, &schedule)?)
    } else {
        None
    };
    let acc = &sequence.accuracy;
    let average = sequential::average_accuracy(acc);
    let mut summary = serde_json::json!({
        "method": method.name(),
        "method_spec": method.to_string(),
        "tasks": spec.tasks,
        "epochs_per_task": spec.epochs,
        "average_accuracy": average,
        "backward_transfer": sequential::backward_transfer(acc),
        "forgetting": sequential::forgetting(acc),
        "accuracy_matrix": acc,
        "task_seconds": sequence.seconds,
        "task_items": sequence.items,
        "final_loss": sequence.final_loss,
        "first_task": {
            "after_itself": acc[0][0],
            "after_last": acc[acc.len() - 1][0],
        },
        "permutations": "task 1 keeps the pixel order; task t > 1 a Fisher–Yates permutation seeded by --seed and t",
        "training_images": train.labels.len(),
        "test_images": test.labels.len(),
        "device": device_name,
        "adapter": adapter,
        "args": spec.args,
        "recipe": crate::train::recipe_json(&recipe),
    });
    if let Some((joint_acc, seconds)) = &joint {
        let mean = joint_acc.iter().sum::<f64>() / joint_acc.len() as f64;
        summary["joint"] = serde_json::json!({
            "accuracy": joint_acc,
            "average_accuracy": mean,
            "seconds": seconds,
            "gap": mean - average,
        });
    }
    write_summary(&spec.out, &summary)?;
    Ok(SequentialReport {
        method,
        sequence,
        joint: joint.map(|(a, _)| a),
        summary,
    })
}

/// Writes accuracy.csv: `after_task,task,accuracy`, tasks 1-based, accuracy in %.
pub fn write_accuracy_csv(path: &Path, acc: &[Vec<f64>]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| output(path, e))?;
    let mut text = String::from("after_task,task,accuracy\n");
    for (l, row) in acc.iter().enumerate() {
        for (i, a) in row.iter().enumerate() {
            text.push_str(&format!("{},{},{}\n", l + 1, i + 1, a));
        }
    }
    f.write_all(text.as_bytes()).map_err(|e| output(path, e))
}
