//! The `dam` Python extension: the engine's `Retriever`, capacity sweeps and device list,
//! NumPy in and out. Every engine error becomes a Python exception (`ValueError` for bad
//! arguments and files, `OSError` for I/O, `dam.DeviceError` for device failures); engine
//! work runs with the GIL released; a panic becomes `dam.DeviceError`, never an abort.

use ndarray::ArrayView2;
use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use ::dam as engine;
use engine::{
    Config, Device, Dynamics, Error, Patterns, Projection, Separation, Similarity, Storage,
};

create_exception!(
    dam,
    DeviceError,
    PyRuntimeError,
    "A device failed: no adapter, out of device memory, a lost device, or an internal error."
);

/// An engine error as the Python exception its kind calls for.
fn py_err(e: Error) -> PyErr {
    match e {
        Error::Backend { .. } => DeviceError::new_err(e.to_string()),
        Error::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

fn experiment_err(e: dam_experiments::ExperimentError) -> PyErr {
    match e {
        dam_experiments::ExperimentError::Engine(e) => py_err(e),
        dam_experiments::ExperimentError::Io { .. } => PyOSError::new_err(e.to_string()),
        other => PyValueError::new_err(other.to_string()),
    }
}

/// Runs engine work with the GIL released; a panic becomes `DeviceError`.
fn compute<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, PyErrLite> + Send,
) -> PyResult<T> {
    py.detach(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(PyErrLite::Panic(what))
        })
    })
    .map_err(PyErrLite::into_py)
}

/// An error made without the GIL, turned into a Python exception once it is held again.
enum PyErrLite {
    Engine(Error),
    Experiment(dam_experiments::ExperimentError),
    Panic(String),
}

impl From<Error> for PyErrLite {
    fn from(e: Error) -> Self {
        PyErrLite::Engine(e)
    }
}

impl From<dam_experiments::ExperimentError> for PyErrLite {
    fn from(e: dam_experiments::ExperimentError) -> Self {
        PyErrLite::Experiment(e)
    }
}

impl PyErrLite {
    fn into_py(self) -> PyErr {
        match self {
            PyErrLite::Engine(e) => py_err(e),
            PyErrLite::Experiment(e) => experiment_err(e),
            PyErrLite::Panic(what) => {
                DeviceError::new_err(format!("internal error (a Rust panic): {what}"))
            }
        }
    }
}

/// A 2-D float32 view of `obj`: a float32 array is read in place (any strides); anything
/// else is converted once with `numpy.ascontiguousarray(obj, dtype=float32)`.
/// `obj` as a contiguous float64 array of `ndim` dimensions (converted once).
fn float64<'py>(
    obj: &Bound<'py, PyAny>,
    argument: &str,
    ndim: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let numpy = obj.py().import("numpy")?;
    let converted = numpy
        .call_method1("ascontiguousarray", (obj, "float64"))
        .map_err(|e| {
            PyValueError::new_err(format!("`{argument}`: not convertible to float64: {e}"))
        })?;
    let got: usize = converted.getattr("ndim")?.extract()?;
    if got != ndim {
        let shape = converted.getattr("shape")?;
        return Err(PyValueError::new_err(format!(
            "`{argument}` must be {ndim}-D, got shape {shape}"
        )));
    }
    Ok(converted)
}

fn matrix<'py>(obj: &Bound<'py, PyAny>, argument: &str) -> PyResult<PyReadonlyArray2<'py, f32>> {
    if let Ok(array) = obj.extract::<PyReadonlyArray2<'py, f32>>() {
        return Ok(array);
    }
    let numpy = obj.py().import("numpy")?;
    let converted = numpy
        .call_method1("ascontiguousarray", (obj, "float32"))
        .map_err(|e| {
            PyValueError::new_err(format!("`{argument}`: not convertible to float32: {e}"))
        })?;
    let ndim: usize = converted.getattr("ndim")?.extract()?;
    if ndim != 2 {
        let shape = converted.getattr("shape")?;
        return Err(PyValueError::new_err(format!(
            "`{argument}` must be 2-D (rows × columns), got shape {shape}"
        )));
    }
    converted.extract::<PyReadonlyArray2<'py, f32>>()
}

/// A 1-D float32 view of `obj` (converted once if needed).
fn vector<'py>(obj: &Bound<'py, PyAny>, argument: &str) -> PyResult<PyReadonlyArray1<'py, f32>> {
    if let Ok(array) = obj.extract::<PyReadonlyArray1<'py, f32>>() {
        return Ok(array);
    }
    let numpy = obj.py().import("numpy")?;
    let converted = numpy
        .call_method1("ascontiguousarray", (obj, "float32"))
        .map_err(|e| {
            PyValueError::new_err(format!("`{argument}`: not convertible to float32: {e}"))
        })?;
    converted
        .extract::<PyReadonlyArray1<'py, f32>>()
        .map_err(|_| PyValueError::new_err(format!("`{argument}` must be 1-D")))
}

fn device_of(name: &str) -> PyResult<Device> {
    match name.trim() {
        "auto" => Device::auto().map_err(py_err),
        other => Device::parse(other)
            .map(|(device, _)| device)
            .map_err(py_err),
    }
}

/// A similarity by its name in the engine's vocabulary (`dam_core::Similarity::parse`).
fn similarity_of(name: &str) -> PyResult<Similarity> {
    Similarity::parse(name).map_err(py_err)
}

/// A separation by its name in the engine's vocabulary (`dam_core::Separation::parse`),
/// with the degree, k and α given as keywords: `separation="polynomial", degree=3` is
/// `polynomial:3`, `separation="entmax", alpha=1.25` is `entmax:1.25` (`"polynomial:3"`,
/// `"entmax:1.25"` themselves work too; a bare `"entmax"` is α = 1.5, `"sparsemax"` α = 2).
fn separation_of(
    name: &str,
    beta: f32,
    degree: Option<u32>,
    k: Option<usize>,
    alpha: Option<f32>,
) -> PyResult<Separation> {
    let lower = name.trim().to_ascii_lowercase();
    let needs = |what: &str| PyValueError::new_err(format!("separation {name:?} needs `{what}`"));
    let full = match lower.as_str() {
        "polynomial" | "poly" | "rectified-polynomial" | "rectified" | "rpoly" => {
            format!("{lower}:{}", degree.ok_or_else(|| needs("degree"))?)
        }
        "top-k" | "topk" => format!("{lower}:{}", k.ok_or_else(|| needs("k"))?),
        "entmax" | "alpha-entmax" if alpha.is_some() => {
            format!("{lower}:{}", alpha.unwrap_or(engine::entmax::DEFAULT_ALPHA))
        }
        _ if alpha.is_some() => {
            return Err(PyValueError::new_err(format!(
                "`alpha` is the parameter of separation=\"entmax\", not of {name:?}"
            )))
        }
        _ => lower,
    };
    Separation::parse(&full, beta).map_err(py_err)
}

/// The result of `Retriever.retrieve`: NumPy arrays, one row or entry per query.
#[pyclass(module = "dam", frozen)]
struct RetrievalResult {
    /// Final states, float32 (B, N).
    #[pyo3(get)]
    states: Py<PyAny>,
    /// Update steps applied to each query, int64 (B,).
    #[pyo3(get)]
    steps: Py<PyAny>,
    /// Whether each query converged, bool (B,).
    #[pyo3(get)]
    converged: Py<PyAny>,
    /// Id of the stored pattern nearest to each final state (the row when never edited), uint64 (B,).
    #[pyo3(get)]
    nearest: Py<PyAny>,
    /// Energy of each final state, float64 (B,).
    #[pyo3(get)]
    energy: Py<PyAny>,
    /// Softmax: the nearest pattern's weight at the final state, float64 (B,); else None.
    #[pyo3(get)]
    confidence: Py<PyAny>,
    /// With `report_top=k`: ids of the k patterns with the largest softmax weight at the
    /// final state, best first, uint64 (B, k); else None.
    #[pyo3(get)]
    top_ids: Py<PyAny>,
    /// With `report_top=k`: their softmax weights, float64 (B, k); else None.
    #[pyo3(get)]
    top_weights: Py<PyAny>,
    /// With `report_top=k`: their similarities to the final state, float64 (B, k); else None.
    #[pyo3(get)]
    top_similarities: Py<PyAny>,
    /// With `report_top=k`: the participation ratio 1/Σ p² of the weights, float64 (B,); else None.
    #[pyo3(get)]
    participation: Py<PyAny>,
}

#[pymethods]
impl RetrievalResult {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let b: usize = self.steps.bind(py).len()?;
        Ok(format!("RetrievalResult(queries={b})"))
    }
}

/// What `__reduce__` returns: the loader and its arguments.
type Reduced<'py> = (Bound<'py, PyAny>, (Bound<'py, PyBytes>, String));

/// One field of the reported top patterns as a (B, k) array, or None when not asked for.
fn top_field<T: numpy::Element + Copy>(
    py: Python<'_>,
    top: Option<&[Vec<engine::TopEntry>]>,
    field: impl Fn(&engine::TopEntry) -> T,
) -> PyResult<Py<PyAny>> {
    let Some(top) = top else {
        return Ok(py.None());
    };
    let k = top.first().map_or(0, Vec::len);
    let values: Vec<T> = top.iter().flat_map(|row| row.iter().map(&field)).collect();
    let array = ndarray::Array2::from_shape_vec((top.len(), k), values)
        .map_err(|e| DeviceError::new_err(e.to_string()))?;
    Ok(array.into_pyarray(py).into_any().unbind())
}

/// Stored patterns and a retrieval rule on a device (see the Rust `dam::Retriever`).
#[pyclass(module = "dam", frozen)]
struct Retriever {
    /// Reads share the memory; edits wait for them (and they for an edit) instead of
    /// failing with "already borrowed". Locked inside the GIL-free sections.
    inner: RwLock<engine::Retriever>,
    device: String,
}

/// A shared view of a memory (a panic inside an earlier call does not poison it: the
/// engine leaves a memory unchanged on error).
fn read(lock: &RwLock<engine::Retriever>) -> RwLockReadGuard<'_, engine::Retriever> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

/// The memory for an edit, once no call is reading it.
fn write(lock: &RwLock<engine::Retriever>) -> RwLockWriteGuard<'_, engine::Retriever> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

#[pymethods]
impl Retriever {
    #[new]
    #[pyo3(signature = (patterns, *, similarity="dot", separation="softmax", beta=1.0, degree=None, k=None, alpha=None, dynamics="iterate", max_steps=100, tol=1e-5, projection="none", device="auto", dtype="float32", report_top=None, feature_map=None, normalise=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        patterns: &Bound<'_, PyAny>,
        similarity: &str,
        separation: &str,
        beta: f32,
        degree: Option<u32>,
        k: Option<usize>,
        alpha: Option<f32>,
        dynamics: &str,
        max_steps: usize,
        tol: f32,
        projection: &str,
        device: &str,
        dtype: &str,
        report_top: Option<usize>,
        feature_map: Option<(Bound<'_, PyAny>, Bound<'_, PyAny>)>,
        normalise: bool,
    ) -> PyResult<Self> {
        // A kernelized memory: similarities through Φ(x) = W x + b (read in float64).
        let kernel = match feature_map {
            None if normalise => {
                return Err(PyValueError::new_err(
                    "normalise: belongs to a feature_map=(W, b)",
                ))
            }
            None => None,
            Some((w, b)) => {
                let w: PyReadonlyArray2<'_, f64> = float64(&w, "feature_map W", 2)?.extract()?;
                let b: PyReadonlyArray1<'_, f64> = float64(&b, "feature_map b", 1)?.extract()?;
                Some(engine::kernelized::FeatureMap {
                    w: w.as_array().to_owned(),
                    b: b.as_array().to_owned(),
                })
            }
        };
        let config = Config {
            similarity: similarity_of(similarity)?,
            separation: separation_of(separation, beta, degree, k, alpha)?,
            dynamics: match dynamics {
                "iterate" => Dynamics::Iterate { max_steps, tol },
                "one-step" => Dynamics::OneStep,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown dynamics {other:?}; use \"iterate\" or \"one-step\""
                    )))
                }
            },
            projection: match projection {
                "none" => Projection::None,
                "sphere" => Projection::Sphere,
                "sign" => Projection::Sign,
                other => {
                    return Err(PyValueError::new_err(format!(
                        "unknown projection {other:?}; use \"none\", \"sphere\" or \"sign\""
                    )))
                }
            },
            energy_trace: false,
        };
        let storage = match dtype {
            "float32" => Storage::F32,
            "float16" => Storage::F16,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown dtype {other:?}; use \"float32\" or \"float16\""
                )))
            }
        };
        let rows = matrix(patterns, "patterns")?;
        let owned = rows.as_array().to_owned();
        let device_value = device_of(device)?;
        let inner = compute(py, move || {
            let mut builder = engine::Retriever::builder(Patterns::new(owned)?)
                .config(config)
                .storage(storage)
                .device(device_value);
            if let Some(k) = report_top {
                builder = builder.report_top(k);
            }
            if let Some(map) = kernel {
                builder = builder.feature_map(map, normalise);
            }
            Ok(builder.build()?)
        })?;
        Ok(Self {
            inner: RwLock::new(inner),
            device: device.to_string(),
        })
    }

    /// Runs the dynamics from each query (B, N) → RetrievalResult. `clamped`: coordinate
    /// indices held at their query values at every step (in-painting).
    #[pyo3(signature = (queries, *, clamped=None))]
    fn retrieve(
        &self,
        py: Python<'_>,
        queries: &Bound<'_, PyAny>,
        clamped: Option<Vec<usize>>,
    ) -> PyResult<RetrievalResult> {
        let q = matrix(queries, "queries")?;
        let view: ArrayView2<'_, f32> = q.as_array();
        let lock = &self.inner;
        let clamp = match clamped {
            Some(list) => Some(
                engine::binary::Clamp::fixing(view.ncols(), &list)
                    .map_err(|e| PyValueError::new_err(format!("`clamped`: {e}")))?,
            ),
            None => None,
        };
        let r = compute(py, || match &clamp {
            Some(c) => Ok(read(lock).retrieve_clamped(view, c)?),
            None => Ok(read(lock).retrieve(view)?),
        })?;
        let steps: Vec<i64> = r.steps.iter().map(|&s| s as i64).collect();
        Ok(RetrievalResult {
            states: r.states.into_pyarray(py).into_any().unbind(),
            steps: steps.into_pyarray(py).into_any().unbind(),
            converged: r.converged.into_pyarray(py).into_any().unbind(),
            nearest: r.nearest_id.into_pyarray(py).into_any().unbind(),
            energy: r.energy.into_pyarray(py).into_any().unbind(),
            confidence: match r.confidence {
                Some(c) => c.into_pyarray(py).into_any().unbind(),
                None => py.None(),
            },
            top_ids: top_field(py, r.top.as_deref(), |e| e.id)?,
            top_weights: top_field(py, r.top.as_deref(), |e| e.weight)?,
            top_similarities: top_field(py, r.top.as_deref(), |e| e.similarity)?,
            participation: match r.participation {
                Some(p) => p.into_pyarray(py).into_any().unbind(),
                None => py.None(),
            },
        })
    }

    /// One update of the configured rule from each query (B, N) → float32 (B, N).
    fn step<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let q = matrix(queries, "queries")?;
        let view = q.as_array();
        let lock = &self.inner;
        let out = compute(py, || Ok(read(lock).step(view)?))?;
        Ok(out.into_pyarray(py).into_any())
    }

    /// E(x) of each row of `states` (B, N) → float64 (B,).
    fn energy<'py>(
        &self,
        py: Python<'py>,
        states: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let q = matrix(states, "states")?;
        let view = q.as_array();
        let lock = &self.inner;
        let out = compute(py, || Ok(read(lock).energy(view)?))?;
        Ok(out.into_pyarray(py).into_any())
    }

    /// Exact top-k: (ids uint64 (B, k'), scores float32 (B, k')), best first, k' = min(k, P).
    fn search<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: usize,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let q = matrix(queries, "queries")?;
        let view = q.as_array();
        let lock = &self.inner;
        let out = compute(py, || Ok(read(lock).search(view, k)?))?;
        Ok((
            out.ids.into_pyarray(py).into_any(),
            out.scores.into_pyarray(py).into_any(),
        ))
    }

    /// Stores new patterns (k, N); returns their ids (uint64).
    fn insert<'py>(
        &self,
        py: Python<'py>,
        patterns: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let rows = matrix(patterns, "patterns")?;
        let view = rows.as_array();
        let lock = &self.inner;
        let ids = compute(py, || Ok(write(lock).insert(view)?))?;
        Ok(ids.into_pyarray(py).into_any())
    }

    /// Removes the patterns with these ids.
    fn remove(&self, py: Python<'_>, ids: Vec<u64>) -> PyResult<()> {
        let lock = &self.inner;
        compute(py, || Ok(write(lock).remove(&ids)?))
    }

    /// Replaces the pattern with this id.
    fn update(&self, py: Python<'_>, id: u64, pattern: &Bound<'_, PyAny>) -> PyResult<()> {
        let row = vector(pattern, "pattern")?;
        let view = row.as_array();
        let lock = &self.inner;
        compute(py, || Ok(write(lock).update(id, view)?))
    }

    /// The stable ids of the stored patterns, in row order (uint64).
    #[getter]
    fn ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        read(&self.inner).ids().to_vec().into_pyarray(py).into_any()
    }

    /// The stored patterns, float32 (P, N) (rounded to float16 values with dtype="float16").
    #[getter]
    fn patterns<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        read(&self.inner)
            .patterns()
            .view()
            .to_owned()
            .into_pyarray(py)
            .into_any()
    }

    /// `cpu (reference)` or `wgpu: <adapter> (<backend>, <device type>)`.
    #[getter]
    fn device(&self) -> String {
        read(&self.inner).device_name()
    }

    fn __len__(&self) -> usize {
        read(&self.inner).len()
    }

    /// Saves the memory to `path` (safetensors; atomic).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let lock = &self.inner;
        compute(py, || Ok(read(lock).save_file(&path)?))
    }

    /// Loads a memory saved with `save` (or by the Rust engine) onto `device`.
    #[staticmethod]
    #[pyo3(signature = (path, *, device="auto"))]
    fn load(py: Python<'_>, path: std::path::PathBuf, device: &str) -> PyResult<Self> {
        let device_value = device_of(device)?;
        let inner = compute(py, move || {
            Ok(engine::Retriever::load_file(&path, &device_value)?)
        })?;
        Ok(Self {
            inner: RwLock::new(inner),
            device: device.to_string(),
        })
    }

    /// Pickling: the memory's safetensors bytes and the device name it was built with.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Reduced<'py>> {
        let mut bytes = Vec::new();
        read(&self.inner).save(&mut bytes).map_err(py_err)?;
        let loader = py.import("dam")?.getattr("_from_bytes")?;
        Ok((loader, (PyBytes::new(py, &bytes), self.device.clone())))
    }

    fn __repr__(&self) -> String {
        let inner = read(&self.inner);
        format!(
            "Retriever(patterns={}, dim={}, config={:?}, device={:?})",
            inner.len(),
            inner.patterns().dim(),
            inner.config(),
            inner.device_name()
        )
    }
}

/// Rebuilds a pickled `Retriever`.
#[pyfunction]
fn _from_bytes(py: Python<'_>, data: &[u8], device: &str) -> PyResult<Retriever> {
    let device_value = device_of(device)?;
    let bytes = data.to_vec();
    let inner = compute(py, move || {
        Ok(engine::Retriever::load(bytes.as_slice(), &device_value)?)
    })?;
    Ok(Retriever {
        inner: RwLock::new(inner),
        device: device.to_string(),
    })
}

/// The address of the float32 data the engine reads for `array` (tests check that a
/// float32 input is not copied).
#[pyfunction]
fn _input_address(array: &Bound<'_, PyAny>) -> PyResult<usize> {
    let view = matrix(array, "array")?;
    Ok(view.as_array().as_ptr() as usize)
}

/// The wgpu adapters of this machine: a list of dicts (index, name, backend,
/// device_type, driver, max_binding_bytes, max_buffer_bytes, max_workgroups, shader_f16,
/// timestamps).
#[pyfunction]
fn devices(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let adapters =
        py.detach(|| engine::WgpuContext::adapters(engine::WgpuOptions::default().backends));
    let list = PyList::empty(py);
    for a in adapters {
        let d = PyDict::new(py);
        d.set_item("index", a.index)?;
        d.set_item("name", a.name)?;
        d.set_item("backend", a.backend)?;
        d.set_item("device_type", a.device_type)?;
        d.set_item("driver", a.driver)?;
        d.set_item("max_binding_bytes", a.max_binding_bytes)?;
        d.set_item("max_buffer_bytes", a.max_buffer_bytes)?;
        d.set_item("max_workgroups", a.max_workgroups)?;
        d.set_item("shader_f16", a.shader_f16)?;
        d.set_item("timestamps", a.timestamps)?;
        list.append(d)?;
    }
    Ok(list)
}

/// A capacity sweep (`dam capacity`): one dict per load with the columns of results.csv
/// (alpha, patterns, trials, successes, success_rate, mean_overlap, bit_flip_rate,
/// seconds, mean_abs_correlation, min_hamming, empty_supports). Loads by `alpha`
/// (ln P / N) or `count` (P), each "LO:HI:STEP". `patterns`: spherical, gaussian, binary,
/// correlated:C, separated:D or mnist[:DIR]; `query`: stored, flip:RHO or random; `beta`:
/// λ for lse/exp (default 1), b of the spherical log-sum-ReLU for lsr (default 2 + √2).
#[pyfunction]
#[pyo3(signature = (*, dim, patterns="spherical", energy="lse", beta=None, degree=2, alpha=None, count=None, trials=100, query="stored", dynamics="one-step", criterion="weight", seed=0, device="auto"))]
#[allow(clippy::too_many_arguments)]
fn capacity<'py>(
    py: Python<'py>,
    dim: usize,
    patterns: &str,
    energy: &str,
    beta: Option<f64>,
    degree: u32,
    alpha: Option<&str>,
    count: Option<&str>,
    trials: usize,
    query: &str,
    dynamics: &str,
    criterion: &str,
    seed: u64,
    device: &str,
) -> PyResult<Bound<'py, PyList>> {
    let (sweep, loads) = dam_experiments::args::SweepText {
        patterns,
        dim,
        energy,
        beta,
        degree,
        alpha,
        count,
        trials,
        query,
        dynamics,
        criterion,
        seed,
        shard: None,
        search: false,
    }
    .build()
    .map_err(experiment_err)?;
    let device_value = device_of(device)?;
    let rows = compute(py, || {
        loads
            .iter()
            .map(|&p| Ok(sweep.run_point(&device_value, p, |_| {})?))
            .collect::<Result<Vec<_>, PyErrLite>>()
    })?;
    let list = PyList::empty(py);
    for r in rows {
        let d = PyDict::new(py);
        d.set_item("alpha", r.alpha)?;
        d.set_item("patterns", r.patterns)?;
        d.set_item("trials", r.trials)?;
        d.set_item("successes", r.successes)?;
        d.set_item("success_rate", r.success_rate)?;
        d.set_item("mean_overlap", r.mean_overlap)?;
        d.set_item("bit_flip_rate", r.bit_flip_rate)?;
        d.set_item("seconds", r.seconds)?;
        d.set_item("mean_abs_correlation", r.mean_abs_correlation)?;
        d.set_item("min_hamming", r.min_hamming)?;
        d.set_item("empty_supports", r.empty_supports)?;
        list.append(d)?;
    }
    Ok(list)
}

/// Exact binary spin dynamics (the Rust `dam::spin_dynamics`): ±1 patterns (P, N) and
/// queries (B, N) (entries ≥ 0 count as +1). Returns a dict: `states` float32 ±1 (B, N),
/// `flips` (a list per query of the flips in each sweep or step), `converged` bool (B,).
/// Both devices return identical results. `clamped`: indices of neurons held at their query
/// values (the others follow the update).
#[pyfunction]
#[pyo3(signature = (patterns, queries, *, energy="polynomial", degree=3, beta=1.0, update="async", max_sweeps=100, seed=0, device="auto", clamped=None))]
#[allow(clippy::too_many_arguments)]
fn spin_dynamics<'py>(
    py: Python<'py>,
    patterns: &Bound<'py, PyAny>,
    queries: &Bound<'py, PyAny>,
    energy: &str,
    degree: u32,
    beta: f64,
    update: &str,
    max_sweeps: usize,
    seed: u64,
    device: &str,
    clamped: Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyDict>> {
    use engine::binary::{
        pack, unpack, words_per_state, BinaryPatterns, Clamp, SpinEnergy, SpinUpdate,
    };
    let energy = match energy {
        "polynomial" => SpinEnergy::Polynomial { n: degree },
        "rectified-polynomial" => SpinEnergy::RectifiedPolynomial { n: degree },
        "exponential" => SpinEnergy::Exponential { beta },
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown energy {other:?}; use \"polynomial\", \"rectified-polynomial\" or \"exponential\""
            )))
        }
    };
    let update = match update {
        "async" => SpinUpdate::Async { max_sweeps, seed },
        "sync" => SpinUpdate::Sync {
            max_steps: max_sweeps,
        },
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown update {other:?}; use \"async\" or \"sync\""
            )))
        }
    };
    let p = matrix(patterns, "patterns")?;
    let q = matrix(queries, "queries")?;
    let (pv, qv) = (p.as_array(), q.as_array());
    let dim = pv.ncols();
    if qv.ncols() != dim {
        return Err(PyValueError::new_err(format!(
            "`queries` has {} columns, the patterns {dim}",
            qv.ncols()
        )));
    }
    let device_value = device_of(device)?;
    let words = words_per_state(dim);
    let clamp = Clamp::fixing(dim, clamped.as_deref().unwrap_or(&[]))
        .map_err(|e| PyValueError::new_err(format!("`clamped`: {e}")))?;
    let result = compute(py, || {
        let signs: Vec<f32> = pv.iter().copied().collect();
        let stored = BinaryPatterns::from_signs(pv.nrows(), dim, &signs)?;
        let mut packed = vec![0u32; qv.nrows() * words];
        for (row, out) in qv.rows().into_iter().zip(packed.chunks_mut(words.max(1))) {
            pack(&row.to_vec(), out);
        }
        Ok(engine::spin_dynamics_clamped(
            &device_value,
            &stored,
            energy,
            update,
            &packed,
            &clamp,
        )?)
    })?;
    let states: Vec<f32> = result
        .states
        .chunks(words.max(1))
        .flat_map(|w| unpack(w, dim))
        .collect();
    let states = ndarray::Array2::from_shape_vec((qv.nrows(), dim), states)
        .map_err(|e| DeviceError::new_err(e.to_string()))?;
    let out = PyDict::new(py);
    out.set_item("states", states.into_pyarray(py))?;
    out.set_item("flips", result.flips)?;
    out.set_item("converged", result.converged.into_pyarray(py))?;
    Ok(out)
}

/// A random-feature memory (DrDAM; the Rust `dam::features::RandomFeatures`): patterns
/// are summed into Y feature weights, so memory does not grow with P.
#[pyclass(module = "dam")]
struct RandomFeatures {
    inner: engine::features::RandomFeatures,
}

#[pymethods]
impl RandomFeatures {
    #[new]
    #[pyo3(signature = (dim, features, *, kind="fourier", beta=1.0, seed=0, device="auto"))]
    fn new(
        py: Python<'_>,
        dim: usize,
        features: usize,
        kind: &str,
        beta: f64,
        seed: u64,
        device: &str,
    ) -> PyResult<Self> {
        let kind = match kind {
            "fourier" => engine::features::FeatureKind::Fourier,
            "positive" => engine::features::FeatureKind::PositiveExp,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown feature kind {other:?}; use \"fourier\" or \"positive\""
                )))
            }
        };
        let spec = engine::features::FeatureSpec {
            kind,
            dim,
            features,
            beta,
            seed,
        };
        let device_value = device_of(device)?;
        let inner = compute(py, move || {
            Ok(engine::features::RandomFeatures::new(spec, &device_value)?)
        })?;
        Ok(Self { inner })
    }

    /// Adds patterns (P, N) to the feature weights.
    fn insert(&mut self, py: Python<'_>, patterns: &Bound<'_, PyAny>) -> PyResult<()> {
        let rows = matrix(patterns, "patterns")?;
        let view = rows.as_array();
        let inner = &mut self.inner;
        compute(py, || Ok(inner.insert(view)?))
    }

    /// Subtracts patterns (P, N) from the feature weights.
    fn remove(&mut self, py: Python<'_>, patterns: &Bound<'_, PyAny>) -> PyResult<()> {
        let rows = matrix(patterns, "patterns")?;
        let view = rows.as_array();
        let inner = &mut self.inner;
        compute(py, || Ok(inner.remove(view)?))
    }

    /// The random-feature energy of each state (B, N) → float64 (B,).
    fn energy<'py>(
        &self,
        py: Python<'py>,
        states: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let rows = matrix(states, "states")?;
        let view = rows.as_array();
        let inner = &self.inner;
        let out = compute(py, || Ok(inner.energy(view)?))?;
        Ok(out.into_pyarray(py).into_any())
    }

    /// ∇E of each state (B, N) → float32 (B, N).
    fn gradient<'py>(
        &self,
        py: Python<'py>,
        states: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let rows = matrix(states, "states")?;
        let view = rows.as_array();
        let inner = &self.inner;
        let out = compute(py, || Ok(inner.gradient(view)?))?;
        Ok(out.into_pyarray(py).into_any())
    }

    /// `steps` gradient steps x ← x − step_size·∇E(x) from each query (B, N).
    #[pyo3(signature = (queries, *, steps=1, step_size=1.0))]
    fn retrieve<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        steps: usize,
        step_size: f32,
    ) -> PyResult<Bound<'py, PyAny>> {
        let rows = matrix(queries, "queries")?;
        let view = rows.as_array();
        let inner = &self.inner;
        let out = compute(py, || Ok(inner.retrieve(view, steps, step_size)?))?;
        Ok(out.into_pyarray(py).into_any())
    }

    /// Patterns inserted minus patterns removed.
    #[getter]
    fn stored(&self) -> i64 {
        self.inner.stored()
    }
}

/// A network from Lagrangians (Krotov & Hopfield 2021; the Rust `dam::EnergyNetwork`):
/// K memory neurons over N feature neurons, coupled by the memories (K, N).
#[pyclass(module = "dam", frozen)]
struct EnergyNetwork {
    inner: engine::EnergyNetwork,
}

#[pymethods]
impl EnergyNetwork {
    #[new]
    #[pyo3(signature = (memories, *, visible="quadratic", hidden="lse", beta=1.0, degree=None, tau_visible=1.0, tau_hidden=0.0, dt=0.1, current=None, device="auto"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        memories: &Bound<'_, PyAny>,
        visible: &str,
        hidden: &str,
        beta: f64,
        degree: Option<u32>,
        tau_visible: f64,
        tau_hidden: f64,
        dt: f64,
        current: Option<&Bound<'_, PyAny>>,
        device: &str,
    ) -> PyResult<Self> {
        use engine::lagrangian::{HiddenLagrangian, LagrangianSpec, VisibleLagrangian};
        let rows = matrix(memories, "memories")?;
        // `poly` defaults to the convex degree 2, `rpoly` to the 2016 model's 3.
        let degree = degree.unwrap_or(if hidden.trim() == "poly" { 2 } else { 3 });
        let spec = LagrangianSpec {
            visible: VisibleLagrangian::parse(visible).map_err(py_err)?,
            hidden: HiddenLagrangian::parse(hidden, beta, degree).map_err(py_err)?,
            tau_visible,
            tau_hidden,
            dt,
            ..LagrangianSpec::default()
        };
        let mut inner =
            engine::EnergyNetwork::new(rows.as_array().to_owned(), spec).map_err(py_err)?;
        if let Some(current) = current {
            let current = vector(current, "current")?;
            inner = inner
                .with_current(current.as_array().to_vec())
                .map_err(py_err)?;
        }
        // The network runs on the CPUs (the fast one unless `reference` is asked for);
        // `auto` therefore means `cpu` here.
        let device = match device.trim() {
            "auto" => Device::Cpu,
            other => device_of(other)?,
        };
        Ok(Self {
            inner: inner.with_device(device),
        })
    }

    /// `steps` integration steps from each state (B, N) → (final states float32 (B, N),
    /// energies float64 (B, steps + 1)).
    fn run<'py>(
        &self,
        py: Python<'py>,
        states: &Bound<'py, PyAny>,
        steps: usize,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let rows = matrix(states, "states")?;
        let view = rows.as_array();
        let inner = &self.inner;
        let (states, energies) = compute(py, || Ok(inner.run(view, steps)?))?;
        Ok((
            states.into_pyarray(py).into_any(),
            energies.into_pyarray(py).into_any(),
        ))
    }

    /// The energy of each state (B, N) → float64 (B,) (memory neurons at h = Ξg).
    fn energy<'py>(
        &self,
        py: Python<'py>,
        states: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let rows = matrix(states, "states")?;
        let view = rows.as_array();
        let inner = &self.inner;
        let out = compute(py, || Ok(inner.energy(view)?))?;
        Ok(out.into_pyarray(py).into_any())
    }
}

/// A Krotov–Hopfield classifier (the Rust `dam::learn::Classifier`): K memories over N
/// visible neurons and C label neurons, trained with the paper's optimiser on either device.
/// Unset training arguments take `dam::learn::Recipe::recommended` for the degree, and a
/// `dam::learn::TrainingMonitor` stops a run that cannot learn (`ValueError`).
#[pyclass(module = "dam")]
struct Classifier {
    inner: engine::learn::Classifier,
    /// The temperature schedule, minibatch, rate and decay unset arguments take.
    recipe: engine::learn::Recipe,
    /// Checks every epoch.
    monitor: engine::learn::TrainingMonitor,
}

/// Images as given: float32 and float64 arrays are read in place, anything else is
/// converted once to float32.
enum Pixels<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

/// A view of [`Pixels`], for work without the GIL.
#[derive(Clone, Copy)]
enum PixelsView<'a> {
    F32(ArrayView2<'a, f32>),
    F64(ArrayView2<'a, f64>),
}

impl<'py> Pixels<'py> {
    fn new(obj: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(array) = obj.extract::<PyReadonlyArray2<'py, f64>>() {
            return Ok(Pixels::F64(array));
        }
        Ok(Pixels::F32(matrix(obj, "images")?))
    }

    fn view(&self) -> PixelsView<'_> {
        match self {
            Pixels::F32(a) => PixelsView::F32(a.as_array()),
            Pixels::F64(a) => PixelsView::F64(a.as_array()),
        }
    }
}

impl Classifier {
    fn wrap(inner: engine::learn::Classifier, recipe: engine::learn::Recipe) -> Self {
        Self {
            inner,
            recipe,
            monitor: engine::learn::TrainingMonitor::new(engine::learn::ParameterNames::KEYWORDS),
        }
    }
}

#[pymethods]
impl Classifier {
    /// K = `memories` random memories (entries N(−0.3, 0.3²), clipped) over `visible`
    /// pixels in [−1, 1]; F = max(x, 0)ⁿ (`rectified`) or xⁿ, β = 1/Tⁿ, loss Σ (c − t)^{2m}.
    /// The temperature follows the recipe for the degree unless set: `temperature` alone
    /// fixes T, `temperature_final` ramps T to it over `ramp_epochs` epochs. `optimizer`:
    /// `"krotov"` (the paper's per-memory step) or `"muon"` (the orthogonalised step of
    /// `ns_steps` Newton–Schulz iterations, 5 unless given; CPU and reference devices).
    #[new]
    #[pyo3(signature = (memories, visible, *, classes=10, degree=3, rectified=true, temperature=None, temperature_final=None, ramp_epochs=None, loss_power=3, seed=0, device="auto", optimizer="krotov", ns_steps=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        memories: usize,
        visible: usize,
        classes: usize,
        degree: u32,
        rectified: bool,
        temperature: Option<f64>,
        temperature_final: Option<f64>,
        ramp_epochs: Option<usize>,
        loss_power: u32,
        seed: u64,
        device: &str,
        optimizer: &str,
        ns_steps: Option<usize>,
    ) -> PyResult<Self> {
        let optimizer = match (optimizer.trim().to_ascii_lowercase().as_str(), ns_steps) {
            ("krotov", None) => engine::learn::Optimizer::Krotov,
            ("krotov", Some(_)) => {
                return Err(PyValueError::new_err(
                    "ns_steps: Newton–Schulz iterations belong to optimizer=\"muon\"",
                ))
            }
            ("muon", steps) => engine::learn::Optimizer::Muon {
                ns_steps: steps.unwrap_or(engine::learn::Optimizer::MUON_NS_STEPS),
            },
            (other, _) => {
                return Err(PyValueError::new_err(format!(
                    "optimizer: {other:?} is not one; use \"krotov\" or \"muon\""
                )))
            }
        };
        let recipe = engine::learn::Recipe::recommended(degree, rectified).with(
            &engine::learn::RecipeOverrides {
                temperature,
                temperature_final,
                ramp_epochs,
                ..Default::default()
            },
        );
        recipe.validate().map_err(py_err)?;
        let model = engine::learn::ClassifierModel {
            degree,
            rectified,
            temperature: recipe.temperature,
            loss_power,
            classes,
        };
        let device_value = device_of(device)?;
        let mut inner = compute(py, move || {
            Ok(engine::learn::Classifier::random(
                model,
                memories,
                visible,
                seed,
                &device_value,
            )?)
        })?;
        inner.set_optimizer(optimizer).map_err(py_err)?;
        Ok(Self::wrap(inner, recipe))
    }

    /// One epoch over `images` (B, N) and integer `labels` (B,) in minibatches of `batch`
    /// (rate lr·lr_decay^epoch, momentum the 0.5 → 0.9 ramp unless given; unset values
    /// take the recipe for the degree). T follows the classifier's schedule; `temperature`
    /// sets it from this epoch on. `shift`: each image is moved by a random shift of up to
    /// this many pixels in x and y, anew every epoch (augmentation); unset, 1 for square
    /// images of side ≥ 8 (`visible` = side², as 28 × 28 digits) and 0 otherwise. float32
    /// and float64 images are read in place. Returns the summed minibatch loss; raises
    /// `ValueError` when the run cannot learn (no memory received a gradient, or the loss
    /// stopped moving), naming the argument to change.
    #[pyo3(signature = (images, labels, *, batch=None, lr=None, lr_decay=None, seed=0, momentum=None, temperature=None, shift=None))]
    #[allow(clippy::too_many_arguments)]
    fn train_epoch(
        &mut self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        labels: Vec<usize>,
        batch: Option<usize>,
        lr: Option<f64>,
        lr_decay: Option<f64>,
        seed: u64,
        momentum: Option<f64>,
        temperature: Option<f64>,
        shift: Option<usize>,
    ) -> PyResult<f64> {
        let x = Pixels::new(images)?;
        let visible = self.inner.memories().ncols() - self.inner.model().classes;
        let shift = shift.unwrap_or_else(|| engine::learn::default_shift(visible));
        let view = x.view();
        if let Some(t) = temperature {
            // A temperature set by hand replaces the schedule from now on.
            let fixed = self.recipe.with(&engine::learn::RecipeOverrides {
                temperature: Some(t),
                ..Default::default()
            });
            fixed.validate().map_err(py_err)?;
            self.recipe = fixed;
            self.monitor.schedule_changed();
        }
        let options = self
            .recipe
            .with(&engine::learn::RecipeOverrides {
                batch,
                lr,
                lr_decay,
                momentum,
                shift: Some(shift),
                ..Default::default()
            })
            .epoch_options(seed);
        let temperature = self.recipe.temperature_at(self.inner.epochs());
        let (inner, monitor) = (&mut self.inner, &mut self.monitor);
        compute(py, move || {
            inner.set_temperature(temperature)?;
            let loss = match view {
                PixelsView::F32(x) => inner.train_epoch_f32(x, &labels, &options)?,
                PixelsView::F64(x) => inner.train_epoch(x, &labels, &options)?,
            };
            monitor.check(inner)?;
            Ok(loss)
        })
    }

    /// The label outputs c (B, C) in (−1, 1) → float64.
    fn outputs<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = Pixels::new(images)?;
        let view = x.view();
        let inner = &self.inner;
        let out = compute(py, || {
            Ok(match view {
                PixelsView::F32(x) => inner.outputs_f32(x)?,
                PixelsView::F64(x) => inner.outputs(x)?,
            })
        })?;
        Ok(out.into_pyarray(py).into_any())
    }

    /// The predicted class of each image (B, N) → int64 (B,).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        images: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let x = Pixels::new(images)?;
        let view = x.view();
        let inner = &self.inner;
        let out = compute(py, || {
            Ok(match view {
                PixelsView::F32(x) => inner.predict_f32(x)?,
                PixelsView::F64(x) => inner.predict(x)?,
            })
        })?;
        let out: Vec<i64> = out.into_iter().map(|v| v as i64).collect();
        Ok(out.into_pyarray(py).into_any())
    }

    /// Percentage of `images` misclassified against `labels`.
    fn error(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        labels: Vec<usize>,
    ) -> PyResult<f64> {
        let x = Pixels::new(images)?;
        let view = x.view();
        let inner = &self.inner;
        compute(py, move || {
            Ok(match view {
                PixelsView::F32(x) => inner.error_percent_f32(x, &labels)?,
                PixelsView::F64(x) => inner.error_percent(x, &labels)?,
            })
        })
    }

    /// The memories (K, N + C) → float64 (visible part first, then the label entries).
    #[getter]
    fn memories<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        self.inner.memories().to_owned().into_pyarray(py).into_any()
    }

    /// Epochs trained so far.
    #[getter]
    fn epochs(&self) -> usize {
        self.inner.epochs()
    }

    /// The current temperature T.
    #[getter]
    fn temperature(&self) -> f64 {
        self.inner.model().temperature
    }

    /// The optimiser: `"krotov"` or `"muon"`.
    #[getter]
    fn optimizer(&self) -> &'static str {
        self.inner.optimizer().name()
    }

    /// Writes the memories and the model as safetensors (what `dam train` writes).
    fn save(&self, py: Python<'_>, path: std::path::PathBuf) -> PyResult<()> {
        let inner = &self.inner;
        compute(py, || Ok(inner.save_file(&path)?))
    }

    /// Loads a classifier saved with `save` or by `dam train` onto `device`.
    #[staticmethod]
    #[pyo3(signature = (path, *, device="auto"))]
    fn load(py: Python<'_>, path: std::path::PathBuf, device: &str) -> PyResult<Self> {
        let device_value = device_of(device)?;
        let inner = compute(py, move || {
            Ok(engine::learn::Classifier::load_file(&path, &device_value)?)
        })?;
        // The saved temperature stays fixed; rate and decay are the recipe's.
        let model = inner.model();
        let recipe = engine::learn::Recipe::recommended(model.degree, model.rectified).with(
            &engine::learn::RecipeOverrides {
                temperature: Some(model.temperature),
                ..Default::default()
            },
        );
        Ok(Self::wrap(inner, recipe))
    }
}

/// Dense associative memories (modern Hopfield networks) on any GPU via wgpu, with a CPU
/// reference.
#[pymodule]
fn dam(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Retriever>()?;
    m.add_class::<RetrievalResult>()?;
    m.add_class::<RandomFeatures>()?;
    m.add_class::<Classifier>()?;
    m.add_class::<EnergyNetwork>()?;
    m.add_function(wrap_pyfunction!(spin_dynamics, m)?)?;
    m.add("DeviceError", m.py().get_type::<DeviceError>())?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(capacity, m)?)?;
    m.add_function(wrap_pyfunction!(_from_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(_input_address, m)?)?;
    Ok(())
}
