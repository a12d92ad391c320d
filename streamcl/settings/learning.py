"""Settings of the learner: its memories, drift detectors, step and plasticity methods."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from streamcl.settings.section import Section

__all__ = ["DriftSettings", "LearnerSettings", "MemorySettings", "PlasticitySettings"]


class MemorySettings(Section):
    """The learner's episodic memory: kNN memory, class prototypes, replay buffer.

    See :mod:`streamcl.learning.memory` for the algorithms and their references.
    """

    knn: bool = Field(True, description="Use the FAISS kNN memory as a predictor.")
    space: Literal["input", "embedding"] = Field(
        "input", description="Key space of the kNN memory: scaled inputs or the MLP's embedding."
    )
    capacity: int = Field(2_000, ge=1, le=1_000_000, description="Most entries in the kNN memory.")
    k: int = Field(10, ge=1, le=256, description="Neighbours in the kNN vote.")
    eviction: Literal["fifo", "reservoir", "class_balanced"] = Field(
        "fifo", description="kNN eviction: sliding window, reservoir sample, or per-class FIFO."
    )
    hnsw_threshold: int = Field(
        50_000, ge=1, description="Entries beyond which the exact index becomes HNSW."
    )
    recent: int = Field(
        100,
        ge=0,
        le=100_000,
        description="Short-term kNN memory of the latest N labelled events, a predictor of "
        "its own (0 = off).",
    )
    prototypes: bool = Field(
        False,
        description="Use nearest-class-mean prototypes as a predictor (off by default: the "
        "Hedge gives them no weight on the benchmark streams; see docs/benchmarks.md).",
    )
    prototype_decay: float = Field(
        0.99, ge=0, lt=1, description="Prototype running mean: weight of the past per update."
    )
    replay: int = Field(4, ge=0, le=4096, description="Replayed rows mixed into each step.")
    replay_capacity: int = Field(2_000, ge=1, le=1_000_000, description="Replay buffer size.")
    replay_balanced: bool = Field(False, description="Class-balanced reservoir replay.")
    snapshot_every: int = Field(
        1, ge=1, description="Steps between memory copies published to serving snapshots."
    )


class DriftSettings(Section):
    """Task-free drift detection (river detectors) and what to do on a drift."""

    detector: Literal["adwin", "kswin", "page_hinkley", "none"] = Field(
        "adwin", description="Detector on the prequential 0/1 error (or |error|) stream."
    )
    delta: float = Field(
        0.03,
        gt=0,
        lt=1,
        description="ADWIN confidence (smaller = fewer alarms; river's default is 0.002). "
        "0.03 since a drift trims the tree expert too: tuning seeds +0.0017, no false alarm "
        "on 30,000-event stationary streams (docs/benchmarks.md).",
    )
    clock: int = Field(
        1, ge=1, description="ADWIN: events between checks (river's default 32 delays alarms)."
    )
    input_detector: Literal["knn_distance", "none"] = Field(
        "knn_distance",
        description="Input drift: Page-Hinkley on the distance to the nearest memory entry.",
    )
    actions: tuple[Literal["lr_restart", "shrink_perturb", "trim_memory"], ...] = Field(
        ("lr_restart", "trim_memory"), description="Actions taken on a loss drift."
    )
    delayed_actions: tuple[Literal["lr_restart", "shrink_perturb", "trim_memory"], ...] = Field(
        (),
        description="Actions taken on a loss drift found on delayed labels (the label join): "
        "none by default, they cost 2.8 points on elec2 with labels 100 events late "
        "(benchmarks/delayed.py).",
    )
    input_actions: tuple[Literal["lr_restart", "shrink_perturb", "trim_memory"], ...] = Field(
        (), description="Actions taken on an input drift (logged and counted regardless)."
    )
    trim_replay: bool = Field(
        True, description="trim_memory also drops replay rows older than the drift."
    )
    lr_boost: float = Field(3.0, ge=1, description="LR multiplier right after a drift.")
    lr_restart_steps: int = Field(200, ge=1, description="Steps for the boost to decay (cosine).")
    log_size: int = Field(100, ge=1, description="Most recent drifts kept in the drift log.")


class LearnerSettings(Section):
    """The online learner: network, optimiser, combination, memory and drift handling."""

    task: Literal["classification", "regression"] = "classification"
    hidden: tuple[int, ...] = Field((64, 64), description="Hidden layer widths.")
    batch_size: int = Field(64, ge=1, le=4096, description="Events per learning micro-batch.")
    warmup: int = Field(
        1024,
        ge=0,
        description="Events over which the learner's own steps grow from 1 event to "
        "batch_size (more, smaller steps at the start of a stream; 0 = off).",
    )
    lr: float = Field(0.2, gt=0, le=10.0, description="Learning rate.")
    optimizer: Literal["sgd", "adam", "upgd"] = Field(
        "sgd",
        description="sgd, adam, or upgd (utility-based perturbed GD, streamcl.learning.upgd).",
    )
    loss: Literal["squared", "absolute"] = Field(
        "squared", description="Regression loss (classification uses cross-entropy)."
    )
    label_lags: int = Field(
        0,
        ge=0,
        le=16,
        description="Most recent labels fed as inputs (off by default: the temporal expert "
        "uses the autocorrelation only where it pays; see benchmarks/suite.py).",
    )
    temporal: bool = Field(
        True,
        description="Temporal expert in the combination: the label predicted from the previous "
        "one (transition model; the previous value for regression).",
    )
    temporal_decay: float = Field(
        0.999, gt=0, le=1, description="Temporal expert: per-event decay of transition counts."
    )
    linear: bool = Field(
        True,
        description="Linear expert in the combination: online softmax regression on the "
        "standardised inputs (streamcl.learning.linear; classification only).",
    )
    tree: bool = Field(
        True,
        description="A decision-tree expert in the Hedge mixture, refit on a sliding window "
        "of the latest labelled events (streamcl.learning.tree; classification only).",
    )
    tree_window: int = Field(500, ge=32, description="Labelled events the tree is fit on.")
    tree_every: int = Field(250, ge=1, description="Refit the tree after this many events.")
    tree_depth: int = Field(8, ge=1, le=32, description="Largest depth of the tree.")
    linear_lr: float = Field(
        0.01, gt=0, le=10.0, description="Linear expert: SGD step size per event."
    )
    calibration_lr: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Sharpen under-confident classifier experts before the mixture: the "
        "RMSprop step per micro-batch of each expert's log inverse temperature "
        "(streamcl.learning.calibration; Guo et al. 2017; 0 = off; chosen on the suite's "
        "tuning seeds, benchmarks/suite.py).",
    )
    hedge_eta: float = Field(1.0, gt=0, description="Hedge learning rate of the combination.")
    hedge_loss: Literal["brier", "log"] = Field(
        "brier",
        description="Loss each classifier expert's Hedge weight pays per labelled event: the "
        "Brier score of its class probabilities (Brier 1950; bounded in [0, 2], as Hedge's "
        "analysis assumes, Cesa-Bianchi & Lugosi 2006) or the log loss (nats, clipped at "
        "1e-4). Regression experts always pay the squared error.",
    )
    hedge_delayed_scale: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Weight of a delayed label's loss in the Hedge cumulative losses, relative "
        "to a label that came with its event: a smaller learning rate for delayed feedback.",
    )
    hedge_delayed_decay: float = Field(
        0.99,
        gt=0,
        le=1,
        description="Per-event decay of the Hedge cumulative losses on delayed labels (a "
        "longer memory than hedge_decay: delayed losses are older and noisier).",
    )
    hedge_decay: float = Field(
        0.95, gt=0, le=1, description="Per-event decay of the predictors' cumulative losses."
    )
    hedge_share: float = Field(
        0.002,
        ge=0,
        lt=1,
        description="Fixed Share rate per labelled event (Herbster & Warmuth 1998): after a "
        "micro-batch of m labelled events each predictor keeps at least about m x this "
        "fraction of the Hedge weight over the number of predictors, so one that becomes "
        "best after a drift takes the lead quickly (0 = off; chosen on the suite's tuning "
        "seeds, benchmarks/suite.py). Not applied to delayed labels.",
    )
    ema_decay: float = Field(
        0.0, ge=0, lt=1, description="Serve an EMA of the weights (0 = serve the fast weights)."
    )
    seed: int = 0
    partitioning: Literal["none", "key"] = Field(
        "none",
        description="none: one global model; key: one model per model key, whose state moves "
        "with its Kafka partition (docs/scaling.md).",
    )
    key_field: str | None = Field(
        None, description="Feature holding the model key; None: the Kafka record key."
    )
    max_live_models: int = Field(
        10_000,
        ge=1,
        description="Most per-key models in memory; the least recently used "
        "is saved and evicted beyond it.",
    )
    template: Path | None = Field(
        None, description="Checkpoint file whose learner every new key starts from; None: fresh."
    )
    standby: bool = Field(
        False,
        description="partitioning none: learn only while holding the lock partition "
        "(kafka.lock_topic); otherwise wait as a hot standby.",
    )
    memory: MemorySettings = MemorySettings()
    drift: DriftSettings = DriftSettings()


class PlasticitySettings(Section):
    """Methods that keep a forever-learning network plastic (see ``streamcl.learning.plasticity``).

    Defaults are the papers' defaults where the paper gives one; the references are in the
    docstrings of the method classes.
    """

    methods: tuple[Literal["cbp", "redo", "shrink_perturb", "l2_init", "spectral"], ...] = Field(
        ("redo",),
        description=(
            "Methods applied together; empty = none. Default ReDo: with the default SGD it kept"
            " later permuted-digits tasks learned as well as early ones (benchmarks/plasticity.py)"
            " at no measurable cost on elec2."
        ),
    )
    seed: int = Field(0, description="Seed of the methods' re-initialisation and noise.")
    health_every: int = Field(500, ge=1, description="Steps between plasticity health metrics.")
    dormant_tau: float = Field(0.0, ge=0, description="Health: a unit is dormant at score <= tau.")
    cbp_replacement_rate: float = Field(
        1e-4, ge=0, le=1, description="CBP: units per unit per step."
    )
    cbp_decay_rate: float = Field(
        0.99, ge=0, lt=1, description="CBP: utility running-average decay."
    )
    cbp_maturity_threshold: int = Field(
        100, ge=0, description="CBP: steps before a unit may be reset."
    )
    redo_tau: float = Field(0.1, ge=0, description="ReDo: tau-dormant threshold on the unit score.")
    redo_every: int = Field(1000, ge=1, description="ReDo: steps between dormant-unit resets.")
    sp_shrink: float = Field(0.4, gt=0, le=1, description="Shrink-perturb: weight multiplier.")
    sp_noise: float = Field(0.01, ge=0, description="Shrink-perturb: scale of a fresh init added.")
    sp_every: int = Field(0, ge=0, description="Shrink-perturb: steps between; 0 = on drift only.")
    l2_init_strength: float = Field(1e-3, ge=0, description="L2-init: penalty on |theta-theta0|^2.")
    spectral_strength: float = Field(1e-4, ge=0, description="Spectral: penalty strength.")
    spectral_k: int = Field(2, ge=1, description="Spectral: penalise (sigma_max**k - 1)**2.")
    upgd_weight_decay: float = Field(1e-3, ge=0, description="UPGD: weight decay.")
    upgd_beta_utility: float = Field(0.999, ge=0, lt=1, description="UPGD: utility average decay.")
    upgd_sigma: float = Field(1e-3, ge=0, description="UPGD: std of the perturbation noise.")
