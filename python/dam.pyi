"""Dense associative memories (modern Hopfield networks) on any GPU via wgpu, with a CPU
reference. NumPy in, NumPy out; float32 C-contiguous inputs are read without a copy,
other dtypes and layouts are converted once with ``numpy.ascontiguousarray(x, "float32")``.

Errors: ``ValueError`` for bad arguments (shapes, NaN/Inf, names, ranges) and bad files,
``OSError`` for I/O, ``DeviceError`` for device failures. Engine work releases the GIL.
"""
from os import PathLike
from typing import Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike

class DeviceError(RuntimeError):
    """A device failed: no adapter, out of device memory, a lost device, or an internal error."""

class RetrievalResult:
    """The result of ``Retriever.retrieve``: one row or entry per query."""

    states: npt.NDArray[np.float32]
    """Final states, (B, N)."""
    steps: npt.NDArray[np.int64]
    """Update steps applied to each query, (B,)."""
    converged: npt.NDArray[np.bool_]
    """Whether each query converged, (B,)."""
    nearest: npt.NDArray[np.uint64]
    """Id of the stored pattern nearest to each final state (its row when never edited), (B,)."""
    energy: npt.NDArray[np.float64]
    """Energy of each final state, (B,)."""
    confidence: Optional[npt.NDArray[np.float64]]
    """Softmax only: the nearest pattern's weight at the final state, (B,); else None."""
    top_ids: Optional[npt.NDArray[np.uint64]]
    """With ``report_top=k``: the k patterns with the largest softmax weight at the final state, (B, k)."""
    top_weights: Optional[npt.NDArray[np.float64]]
    """With ``report_top=k``: their softmax weights, (B, k)."""
    top_similarities: Optional[npt.NDArray[np.float64]]
    """With ``report_top=k``: their similarities to the final state, (B, k)."""
    participation: Optional[npt.NDArray[np.float64]]
    """With ``report_top=k``: the participation ratio 1/Σ p² of the weights, (B,)."""

class Retriever:
    """Stored patterns (P, N) and a retrieval rule on a device.

    Pickles (patterns, ids and rule; rebuilt on the same device name).
    """

    def __init__(
        self,
        patterns: ArrayLike,
        *,
        similarity: Literal["dot", "euclidean", "manhattan"] = "dot",
        separation: Literal[
            "softmax",
            "exponential",
            "polynomial",
            "rectified-polynomial",
            "max",
            "top-k",
            "lsr",
            "sparsemax",
            "entmax",
        ] = "softmax",
        beta: float = 1.0,
        degree: Optional[int] = None,
        k: Optional[int] = None,
        alpha: Optional[float] = None,
        dynamics: Literal["iterate", "one-step"] = "iterate",
        max_steps: int = 100,
        tol: float = 1e-5,
        projection: Literal["none", "sphere", "sign"] = "none",
        device: Literal["auto", "cpu", "reference", "wgpu"] = "auto",
        dtype: Literal["float32", "float16"] = "float32",
        report_top: Optional[int] = None,
        feature_map: Optional[tuple[ArrayLike, ArrayLike]] = None,
        normalise: bool = False,
    ) -> None:
        """``feature_map=(W, b)`` (W: (D, N), b: (D,), read in float64) makes a kernelized
        memory: similarities K(ξ, x) = ⟨Φ(ξ), Φ(x)⟩ with Φ(x) = W x + b (on the normalised
        features when ``normalise``), retrieval x ← Ξᵀ p(β K(Ξ, x)) in input space; needs
        ``similarity="dot"``, a softmax or entmax separation and no projection. Φ is saved
        and pickled with the memory."""
    def retrieve(self, queries: ArrayLike, *, clamped: Optional[list[int]] = None) -> RetrievalResult:
        """Runs the dynamics from each query (B, N); ``clamped``: coordinates held at their
        query values at every step."""
    def step(self, queries: ArrayLike) -> npt.NDArray[np.float32]:
        """One update of the rule from each query (B, N) → (B, N)."""
    def energy(self, states: ArrayLike) -> npt.NDArray[np.float64]:
        """E(x) of each row of ``states`` (B, N) → (B,)."""
    def search(
        self, queries: ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """Exact top-k: (ids (B, k'), scores (B, k')), best first, ties to the lower id."""
    def insert(self, patterns: ArrayLike) -> npt.NDArray[np.uint64]:
        """Stores new patterns (k, N) and returns their ids."""
    def remove(self, ids: list[int]) -> None:
        """Removes the patterns with these ids."""
    def update(self, id: int, pattern: ArrayLike) -> None:
        """Replaces the pattern with this id by ``pattern`` (N,)."""
    @property
    def ids(self) -> npt.NDArray[np.uint64]:
        """Stable ids of the stored patterns, in row order."""
    @property
    def patterns(self) -> npt.NDArray[np.float32]:
        """The stored patterns (P, N)."""
    @property
    def device(self) -> str:
        """``cpu (2 threads, avx2)``, ``cpu reference (f64)`` or ``wgpu: <adapter> (<backend>, <device type>)``."""
    def __len__(self) -> int: ...
    def save(self, path: Union[str, PathLike[str]]) -> None:
        """Saves the memory (safetensors, atomic)."""
    @staticmethod
    def load(path: Union[str, PathLike[str]], *, device: Literal["auto", "cpu", "reference", "wgpu"] = "auto") -> "Retriever":
        """Loads a memory saved with ``save`` (or by the Rust engine)."""

def devices() -> list[dict[str, object]]:
    """The wgpu adapters of this machine (index, name, backend, device_type, driver, limits)."""

def capacity(
    *,
    dim: int,
    patterns: str = "spherical",
    energy: Literal["lse", "exp", "poly", "rpoly", "lsr"] = "lse",
    beta: Optional[float] = None,
    degree: int = 2,
    alpha: Optional[str] = None,
    count: Optional[str] = None,
    trials: int = 100,
    query: str = "stored",
    dynamics: str = "one-step",
    criterion: str = "weight",
    seed: int = 0,
    device: Literal["auto", "cpu", "reference", "wgpu"] = "auto",
) -> list[dict[str, object]]:
    """A capacity sweep (``dam capacity``): one dict per load with the columns of results.csv.

    ``patterns``: ``spherical``, ``gaussian``, ``binary``, ``correlated:C``, ``separated:D``
    or ``mnist[:DIR]``; ``query``: ``stored``, ``flip:RHO`` or ``random``. ``beta``: λ for
    ``lse``/``exp`` (default 1), b of the spherical log-sum-ReLU for ``lsr`` (default
    2 + √2, the support wall at φ = 1/√2).
    """

def spin_dynamics(
    patterns: ArrayLike,
    queries: ArrayLike,
    *,
    energy: Literal["polynomial", "rectified-polynomial", "exponential"] = "polynomial",
    degree: int = 3,
    beta: float = 1.0,
    update: Literal["async", "sync"] = "async",
    max_sweeps: int = 100,
    seed: int = 0,
    device: Literal["auto", "cpu", "reference", "wgpu"] = "auto",
    clamped: Optional[list[int]] = None,
) -> dict[str, object]:
    """Exact binary spin dynamics from ±1 queries (B, N) on ±1 patterns (P, N).

    Returns ``states`` (float32 ±1, (B, N)), ``flips`` (per query, the flips of each sweep
    or step) and ``converged`` (bool, (B,)); both devices return identical results.
    ``clamped``: neuron indices held at their query values.
    """

class RandomFeatures:
    """A random-feature memory (DrDAM): patterns are summed into Y feature weights."""

    def __init__(
        self,
        dim: int,
        features: int,
        *,
        kind: Literal["fourier", "positive"] = "fourier",
        beta: float = 1.0,
        seed: int = 0,
        device: Literal["auto", "cpu", "reference", "wgpu"] = "auto",
    ) -> None: ...
    def insert(self, patterns: ArrayLike) -> None:
        """Adds patterns (P, N) to the feature weights."""
    def remove(self, patterns: ArrayLike) -> None:
        """Subtracts patterns (P, N) from the feature weights."""
    def energy(self, states: ArrayLike) -> npt.NDArray[np.float64]:
        """The random-feature energy of each state (B, N)."""
    def gradient(self, states: ArrayLike) -> npt.NDArray[np.float32]:
        """∇E of each state (B, N)."""
    def retrieve(self, queries: ArrayLike, *, steps: int = 1, step_size: float = 1.0) -> npt.NDArray[np.float32]:
        """``steps`` gradient steps x ← x − step_size·∇E(x) from each query."""
    @property
    def stored(self) -> int:
        """Patterns inserted minus patterns removed."""

class EnergyNetwork:
    """A network from Lagrangians (Krotov & Hopfield 2021): N feature neurons and K memory
    neurons coupled by ``memories`` (K, N); ``tau_hidden=0`` means fast memory neurons.
    Runs on the CPU (``device="reference"``: the f64 reference; ``"auto"`` means ``"cpu"``)."""

    def __init__(
        self,
        memories: ArrayLike,
        *,
        visible: Literal["quadratic", "abs", "spherical"] = "quadratic",
        hidden: Literal["poly", "rpoly", "exp", "lse"] = "lse",
        beta: float = 1.0,
        degree: Optional[int] = None,
        tau_visible: float = 1.0,
        tau_hidden: float = 0.0,
        dt: float = 0.1,
        current: Optional[ArrayLike] = None,
        device: Literal["auto", "cpu", "reference"] = "auto",
    ) -> None: ...
    def run(
        self, states: ArrayLike, steps: int
    ) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
        """Final states (B, N) and the energy at every step, t = 0 included (B, steps + 1)."""
    def energy(self, states: ArrayLike) -> npt.NDArray[np.float64]:
        """The energy of each state (B, N)."""

class Classifier:
    """A Krotov–Hopfield classifier: K memories over N visible and C label neurons.

    Unset temperatures, ``batch``, ``lr`` and ``lr_decay`` take the recipe for the degree
    (``dam::learn::Recipe::recommended``); ``train_epoch`` raises ``ValueError`` when the
    run cannot learn (outputs saturated, no gradient, or a loss that stopped moving),
    naming the argument to change.
    """

    def __init__(
        self,
        memories: int,
        visible: int,
        *,
        classes: int = 10,
        degree: int = 3,
        rectified: bool = True,
        temperature: Optional[float] = None,
        temperature_final: Optional[float] = None,
        ramp_epochs: Optional[int] = None,
        loss_power: int = 3,
        seed: int = 0,
        device: Literal["auto", "cpu", "reference", "wgpu"] = "auto",
        optimizer: Literal["krotov", "muon"] = "krotov",
        ns_steps: Optional[int] = None,
    ) -> None: ...
    @property
    def optimizer(self) -> str: ...
    def train_epoch(
        self,
        images: ArrayLike,
        labels: Sequence[int],
        *,
        batch: Optional[int] = None,
        lr: Optional[float] = None,
        lr_decay: Optional[float] = None,
        seed: int = 0,
        momentum: Optional[float] = None,
        temperature: Optional[float] = None,
        shift: Optional[int] = None,
    ) -> float:
        """One epoch over ``images`` (B, N) in [−1, 1] (float32 and float64 read in place);
        returns the summed minibatch loss. ``shift``: each image moved by a random shift of
        up to this many pixels, anew every epoch; unset, 1 for square images of side ≥ 8
        and 0 otherwise."""
    def outputs(self, images: ArrayLike) -> npt.NDArray[np.float64]:
        """The label outputs c (B, C)."""
    def predict(self, images: ArrayLike) -> npt.NDArray[np.int64]:
        """The predicted class of each image (B,)."""
    def error(self, images: ArrayLike, labels: Sequence[int]) -> float:
        """Percentage of ``images`` misclassified."""
    @property
    def memories(self) -> npt.NDArray[np.float64]:
        """The memories (K, N + C)."""
    @property
    def epochs(self) -> int:
        """Epochs trained so far."""
    @property
    def temperature(self) -> float:
        """The current temperature T."""
    def save(self, path: Union[str, PathLike[str]]) -> None:
        """Writes the memories and the model as safetensors."""
    @staticmethod
    def load(path: Union[str, PathLike[str]], *, device: Literal["auto", "cpu", "reference", "wgpu"] = "auto") -> "Classifier":
        """Loads a classifier saved with ``save`` or by ``dam train``."""
