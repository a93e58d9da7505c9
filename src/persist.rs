//! Saving and loading a [`Retriever`] as a safetensors file, readable by NumPy and
//! PyTorch (`safetensors.numpy.load_file`).
//!
//! # Format (version 1)
//!
//! * tensor `patterns`: P×N, `F32`, or `F16` for [`Storage::F16`] (the stored halves
//!   exactly, so f16 memories round-trip bit for bit);
//! * tensor `ids`: P, `U64`, the stable id of each row (strictly increasing);
//! * tensor `values` (key → value memories only): P×M, `F32`;
//! * tensors `feature_weight` (D_Φ×N, `F64`) and `feature_bias` (D_Φ, `F64`), kernelized
//!   memories only ([`crate::RetrieverBuilder::feature_map`]): the feature map Φ exactly,
//!   with the metadata `feature_normalise` (`true` or `false`); `patterns` then holds the
//!   memories in input space;
//! * metadata (strings): `format` = `dam-memory`, `format_version` = `1`, the rule
//!   (`similarity`, `separation` with `beta` / `degree` / `k`, `dynamics` with `max_steps`
//!   and `tol`, `projection`, `energy_trace`), `storage`, `next_id` (the next id
//!   [`Retriever::insert`] gives out), `abstain_below` and `report_top` when set, and `checksum`: CRC-32 of
//!   the other metadata (sorted `key=value` lines) followed by the bytes of `patterns`,
//!   `ids`, `values`, `feature_weight` and `feature_bias` (those present).
//!
//! Files without the feature tensors (every file of a plain memory, and those written
//! before kernelized memories existed) load as plain memories.
//!
//! Loading checks all of it: a truncated, corrupted, wrong-version or wrong-shape file is
//! an [`Error::Format`] naming what is wrong, never a panic and never a memory that differs
//! from the one saved.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use ndarray::Array2;
use safetensors::{Dtype, SafeTensors};

use crate::{
    Config, Device, Dynamics, Error, Patterns, Projection, Result, Retriever, Separation,
    Similarity, Storage,
};

/// The value of the `format` metadata key.
pub const FORMAT: &str = "dam-memory";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "dam memory (safetensors)";

impl Retriever {
    /// Writes the memory (patterns, ids, rule, storage) to `writer` in the safetensors
    /// format described in [`crate::persist`].
    pub fn save(&self, mut writer: impl Write) -> Result<()> {
        let bytes = self.to_safetensors()?;
        writer
            .write_all(&bytes)
            .and_then(|()| writer.flush())
            .map_err(|source| Error::Io {
                path: "<writer>".into(),
                source,
            })
    }

    /// Writes the memory to `path` atomically: into a temporary file in the same folder,
    /// synced to disk, then renamed over `path`. A crash or a full disk part-way leaves
    /// the previous file as it was.
    pub fn save_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_safetensors()?;
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let name = path
            .file_name()
            .ok_or_else(|| Error::InvalidParameter {
                argument: "path",
                value: path.display().to_string(),
                reason: "names no file".into(),
            })?
            .to_string_lossy();
        let temp = folder.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, path)?;
            // Make the rename itself durable where the platform allows opening a folder.
            if let Ok(dir) = std::fs::File::open(&folder) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written.map_err(io)
    }

    /// Reads a memory written by [`Retriever::save`] from `reader` and builds it on
    /// `device`.
    pub fn load(mut reader: impl Read, device: &Device) -> Result<Retriever> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).map_err(|source| Error::Io {
            path: "<reader>".into(),
            source,
        })?;
        Self::from_safetensors(&bytes, device).map_err(|e| e.at("<reader>"))
    }

    /// Reads the memory in the file at `path` and builds it on `device`.
    pub fn load_file(path: impl AsRef<Path>, device: &Device) -> Result<Retriever> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_safetensors(&bytes, device).map_err(|e| e.at(&path.display().to_string()))
    }

    fn to_safetensors(&self) -> Result<Vec<u8>> {
        let patterns = self.patterns();
        let (dtype, data): (Dtype, Vec<u8>) = match self.storage() {
            Storage::F32 => (
                Dtype::F32,
                bytemuck::cast_slice(patterns.as_slice()).to_vec(),
            ),
            Storage::F16 => {
                let halves: Vec<half::f16> = patterns
                    .as_slice()
                    .iter()
                    .map(|&v| half::f16::from_f32(v))
                    .collect();
                (Dtype::F16, bytemuck::cast_slice(&halves).to_vec())
            }
        };
        let ids: Vec<u8> = self.ids().iter().flat_map(|id| id.to_le_bytes()).collect();
        let values: Option<(Vec<u8>, usize)> = self.values().map(|v| {
            let owned = v.as_standard_layout();
            let bytes = bytemuck::cast_slice(owned.as_slice().expect("standard layout"));
            (bytes.to_vec(), v.ncols())
        });
        let mut metadata = rule_metadata(self.config(), self.storage(), self.next_id);
        if let Some(t) = self.abstain_below() {
            metadata.insert("abstain_below".into(), t.to_string());
        }
        if let Some(k) = self.report_top() {
            metadata.insert("report_top".into(), k.to_string());
        }
        let feature: Option<(Vec<u8>, Vec<u8>, usize, usize)> = self.kernel().map(|k| {
            let w: Vec<u8> = k.map.w.iter().flat_map(|v| v.to_le_bytes()).collect();
            let b: Vec<u8> = k.map.b.iter().flat_map(|v| v.to_le_bytes()).collect();
            (w, b, k.map.feature_dim(), k.map.input_dim())
        });
        if let Some(k) = self.kernel() {
            metadata.insert("feature_normalise".into(), k.normalise.to_string());
        }
        let mut parts: Vec<&[u8]> = vec![&data, &ids];
        if let Some((bytes, _)) = &values {
            parts.push(bytes);
        }
        if let Some((w, b, _, _)) = &feature {
            parts.push(w);
            parts.push(b);
        }
        metadata.insert("checksum".into(), checksum(&metadata, &parts));
        let shape = vec![patterns.count(), patterns.dim()];
        let mut tensors = vec![
            ("ids", view(Dtype::U64, vec![patterns.count()], &ids)?),
            ("patterns", view(dtype, shape, &data)?),
        ];
        if let Some((bytes, m)) = &values {
            tensors.push((
                "values",
                view(Dtype::F32, vec![patterns.count(), *m], bytes)?,
            ));
        }
        if let Some((w, b, d, n)) = &feature {
            tensors.push(("feature_weight", view(Dtype::F64, vec![*d, *n], w)?));
            tensors.push(("feature_bias", view(Dtype::F64, vec![*d], b)?));
        }
        safetensors::serialize(tensors, Some(metadata)).map_err(|e| Error::Backend {
            backend: "safetensors",
            source: Box::new(e),
        })
    }

    fn from_safetensors(bytes: &[u8], device: &Device) -> Result<Retriever, Invalid> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let mut metadata = header
            .metadata()
            .clone()
            .ok_or_else(|| bad("no metadata: not written by dam".into()))?;
        match metadata.get("format").map(String::as_str) {
            Some(FORMAT) => {}
            None => {
                return Err(bad(
                    "metadata `format` is missing: not written by dam".into()
                ))
            }
            Some(other) => return Err(bad(format!("`format` is {other:?}, not {FORMAT:?}"))),
        }
        let version = get(&metadata, "format_version")?;
        if version != FORMAT_VERSION.to_string() {
            return Err(bad(format!(
                "format version {version}; this build reads version {FORMAT_VERSION}"
            )));
        }
        let stored_sum = metadata
            .remove("checksum")
            .ok_or_else(|| bad("no `checksum`".into()))?;
        let tensor = |name: &str| {
            file.tensor(name)
                .map_err(|e| bad(format!("tensor `{name}`: {e}")))
        };
        let (patterns, ids) = (tensor("patterns")?, tensor("ids")?);
        let value_tensor = file
            .names()
            .contains(&"values")
            .then(|| tensor("values"))
            .transpose()?;
        let names = file.names();
        let feature_tensors = match (
            names.contains(&"feature_weight"),
            names.contains(&"feature_bias"),
        ) {
            (false, false) => None,
            (true, true) => Some((tensor("feature_weight")?, tensor("feature_bias")?)),
            _ => {
                return Err(bad(
                    "a kernelized memory needs both `feature_weight` and `feature_bias`".into(),
                ))
            }
        };
        if file.len()
            != 2 + value_tensor.is_some() as usize + 2 * feature_tensors.is_some() as usize
        {
            return Err(bad(format!(
                "expected the tensors `patterns`, `ids` and optionally `values`, \
                 `feature_weight` and `feature_bias`, found {:?}",
                file.names()
            )));
        }
        let mut parts = vec![patterns.data(), ids.data()];
        parts.extend(value_tensor.as_ref().map(|v| v.data()));
        if let Some((w, b)) = &feature_tensors {
            parts.push(w.data());
            parts.push(b.data());
        }
        if checksum(&metadata, &parts) != stored_sum {
            return Err(bad(
                "checksum mismatch: the file is corrupted (its data or metadata changed)".into(),
            ));
        }
        let storage = match get(&metadata, "storage")? {
            "f32" => Storage::F32,
            "f16" => Storage::F16,
            other => return Err(bad(format!("unknown storage {other:?}"))),
        };
        let (count, dim) = match *patterns.shape() {
            [p, n] => (p, n),
            ref other => return Err(bad(format!("`patterns` has shape {other:?}, not P×N"))),
        };
        let values: Vec<f32> = match (storage, patterns.dtype()) {
            (Storage::F32, Dtype::F32) => bytemuck::pod_collect_to_vec(patterns.data()),
            (Storage::F16, Dtype::F16) => {
                bytemuck::pod_collect_to_vec::<u8, half::f16>(patterns.data())
                    .into_iter()
                    .map(f32::from)
                    .collect()
            }
            (_, dtype) => {
                return Err(bad(format!(
                    "`patterns` is {dtype:?} but storage is {storage:?}"
                )))
            }
        };
        if ids.dtype() != Dtype::U64 || ids.shape() != [count] {
            return Err(bad(format!(
                "`ids` is {:?} {:?}, expected U64 [{count}]",
                ids.dtype(),
                ids.shape()
            )));
        }
        let ids: Vec<u64> = bytemuck::pod_collect_to_vec::<u8, u64>(ids.data())
            .into_iter()
            .map(u64::from_le)
            .collect();
        let next_id: u64 = parse(&metadata, "next_id")?;
        if let Some(w) = ids.windows(2).find(|w| w[0] >= w[1]) {
            return Err(bad(format!(
                "`ids` must be strictly increasing ({} then {})",
                w[0], w[1]
            )));
        }
        if ids.last().is_some_and(|&last| last >= next_id) {
            return Err(bad(format!(
                "`next_id` = {next_id} is not above the largest id"
            )));
        }
        let config = rule_of(&metadata)?;
        let value_rows = match value_tensor {
            None => None,
            Some(v) => match (v.dtype(), v.shape()) {
                (Dtype::F32, &[p, m]) if p == count => Some(
                    Array2::from_shape_vec((p, m), bytemuck::pod_collect_to_vec(v.data()))
                        .map_err(|e| bad(e.to_string()))?,
                ),
                (dtype, shape) => {
                    return Err(bad(format!(
                        "`values` is {dtype:?} {shape:?}, expected F32 [{count}, M]"
                    )))
                }
            },
        };
        let patterns = Array2::from_shape_vec((count, dim), values)
            .map_err(|e| bad(e.to_string()))
            .and_then(|m| Patterns::new(m).map_err(|e| bad(e.to_string())))?;
        let mut builder = Retriever::builder(patterns)
            .config(config)
            .storage(storage)
            .device(device.clone());
        if let Some(rows) = value_rows {
            builder = builder.values(rows);
        }
        if let Some((w, b)) = feature_tensors {
            let (d, n) = match (w.dtype(), w.shape(), b.dtype(), b.shape()) {
                (Dtype::F64, &[d, n], Dtype::F64, &[db]) if n == dim && db == d => (d, n),
                _ => {
                    return Err(bad(format!(
                        "`feature_weight` is {:?} {:?} and `feature_bias` {:?} {:?}, \
                         expected F64 [D, {dim}] and F64 [D]",
                        w.dtype(),
                        w.shape(),
                        b.dtype(),
                        b.shape()
                    )))
                }
            };
            let floats = |bytes: &[u8]| -> Vec<f64> {
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect()
            };
            let map = crate::kernelized::FeatureMap {
                w: Array2::from_shape_vec((d, n), floats(w.data()))
                    .map_err(|e| bad(e.to_string()))?,
                b: ndarray::Array1::from(floats(b.data())),
            };
            let normalise = parse(&metadata, "feature_normalise")?;
            builder = builder.feature_map(map, normalise);
        }
        if metadata.contains_key("report_top") {
            builder = builder.report_top(parse(&metadata, "report_top")?);
        }
        if metadata.contains_key("abstain_below") {
            builder = builder.abstain_below(parse(&metadata, "abstain_below")?);
        }
        let mut memory = builder.build().map_err(Invalid::Engine)?;
        memory.ids = ids;
        memory.next_id = next_id;
        Ok(memory)
    }
}

/// What went wrong reading a file, before the file's name is known.
enum Invalid {
    /// The bytes are not a valid memory.
    Format(String),
    /// The memory is valid but could not be built (device errors).
    Engine(Error),
}

fn bad(reason: String) -> Invalid {
    Invalid::Format(reason)
}

impl Invalid {
    fn at(self, path: &str) -> Error {
        match self {
            Invalid::Format(reason) => Error::Format {
                path: path.to_string(),
                format: FORMAT_NAME,
                reason,
            },
            Invalid::Engine(e) => e,
        }
    }
}

fn view(
    dtype: Dtype,
    shape: Vec<usize>,
    data: &[u8],
) -> Result<safetensors::tensor::TensorView<'_>> {
    safetensors::tensor::TensorView::new(dtype, shape, data).map_err(|e| Error::Backend {
        backend: "safetensors",
        source: Box::new(e),
    })
}

fn checksum(metadata: &HashMap<String, String>, tensors: &[&[u8]]) -> String {
    let mut keys: Vec<&String> = metadata.keys().collect();
    keys.sort();
    let mut hasher = crc32fast::Hasher::new();
    for key in keys {
        hasher.update(format!("{key}={}\n", metadata[key]).as_bytes());
    }
    for bytes in tensors {
        hasher.update(bytes);
    }
    format!("{:08x}", hasher.finalize())
}

fn get<'a>(metadata: &'a HashMap<String, String>, key: &str) -> Result<&'a str, Invalid> {
    metadata
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| bad(format!("metadata `{key}` is missing")))
}

fn parse<T: std::str::FromStr>(
    metadata: &HashMap<String, String>,
    key: &str,
) -> Result<T, Invalid> {
    let value = get(metadata, key)?;
    value
        .parse()
        .map_err(|_| bad(format!("metadata `{key}` = {value:?} is not a valid value")))
}

fn rule_metadata(config: &Config, storage: Storage, next_id: u64) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("format", FORMAT.into());
    put("format_version", FORMAT_VERSION.to_string());
    put(
        "similarity",
        match config.similarity {
            Similarity::Dot => "dot",
            Similarity::NegEuclidean => "euclidean",
            Similarity::NegManhattan => "manhattan",
        }
        .into(),
    );
    let (separation, parameter) = match config.separation {
        Separation::Polynomial { n } => ("polynomial", Some(("degree", n.to_string()))),
        Separation::RectifiedPolynomial { n } => {
            ("rectified-polynomial", Some(("degree", n.to_string())))
        }
        Separation::Exponential { beta } => ("exponential", Some(("beta", beta.to_string()))),
        Separation::Softmax { beta } => ("softmax", Some(("beta", beta.to_string()))),
        Separation::Max => ("max", None),
        Separation::TopK { k } => ("top-k", Some(("k", k.to_string()))),
        Separation::LogSumRelu { beta, eps } => {
            put("eps", eps.to_string());
            ("lsr", Some(("beta", beta.to_string())))
        }
        Separation::Entmax { beta, alpha } => {
            put("alpha", alpha.to_string());
            ("entmax", Some(("beta", beta.to_string())))
        }
    };
    put("separation", separation.into());
    if let Some((key, value)) = parameter {
        put(key, value);
    }
    match config.dynamics {
        Dynamics::OneStep => put("dynamics", "one-step".into()),
        Dynamics::Iterate { max_steps, tol } => {
            put("dynamics", "iterate".into());
            put("max_steps", max_steps.to_string());
            put("tol", tol.to_string());
        }
    }
    put(
        "projection",
        match config.projection {
            Projection::None => "none",
            Projection::Sphere => "sphere",
            Projection::Sign => "sign",
        }
        .into(),
    );
    put("energy_trace", config.energy_trace.to_string());
    put(
        "storage",
        match storage {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
        }
        .into(),
    );
    put("next_id", next_id.to_string());
    m
}

fn rule_of(m: &HashMap<String, String>) -> Result<Config, Invalid> {
    let similarity = match get(m, "similarity")? {
        "dot" => Similarity::Dot,
        "euclidean" => Similarity::NegEuclidean,
        "manhattan" => Similarity::NegManhattan,
        other => return Err(bad(format!("unknown similarity {other:?}"))),
    };
    let separation = match get(m, "separation")? {
        "polynomial" => Separation::Polynomial {
            n: parse(m, "degree")?,
        },
        "rectified-polynomial" => Separation::RectifiedPolynomial {
            n: parse(m, "degree")?,
        },
        "exponential" => Separation::Exponential {
            beta: parse(m, "beta")?,
        },
        "softmax" => Separation::Softmax {
            beta: parse(m, "beta")?,
        },
        "max" => Separation::Max,
        "top-k" => Separation::TopK { k: parse(m, "k")? },
        "lsr" => Separation::LogSumRelu {
            beta: parse(m, "beta")?,
            eps: parse(m, "eps")?,
        },
        "entmax" => Separation::Entmax {
            beta: parse(m, "beta")?,
            alpha: parse(m, "alpha")?,
        },
        other => return Err(bad(format!("unknown separation {other:?}"))),
    };
    let dynamics = match get(m, "dynamics")? {
        "one-step" => Dynamics::OneStep,
        "iterate" => Dynamics::Iterate {
            max_steps: parse(m, "max_steps")?,
            tol: parse(m, "tol")?,
        },
        other => return Err(bad(format!("unknown dynamics {other:?}"))),
    };
    let projection = match get(m, "projection")? {
        "none" => Projection::None,
        "sphere" => Projection::Sphere,
        "sign" => Projection::Sign,
        other => return Err(bad(format!("unknown projection {other:?}"))),
    };
    Ok(Config {
        similarity,
        separation,
        dynamics,
        projection,
        energy_trace: parse(m, "energy_trace")?,
    })
}
