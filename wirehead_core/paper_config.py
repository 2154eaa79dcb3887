"""Config sections of the paper's components: ``brain:`` (the synthetic brain generator) and ``train:`` (the trainer).

Kept free of torch so that `wirehead_core.config` can import it to validate these sections at load time. Each
section is a frozen dataclass parsed by `wirehead_core.config.parse_section`; every field has a default, so an
absent section (``Config.section("brain") is None``) means "all defaults" (see `brain_config` / `train_config`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

from wirehead_core.config import register_section
from wirehead_core.errors import ConfigError

__all__ = [
    "LABEL_SETS",
    "BrainConfig",
    "EvalVolumeConfig",
    "EvalConfig",
    "TrainConfig",
    "brain_config",
    "train_config",
    "n_classes",
]

#: Output label sets and their class counts (background included).
LABEL_SETS = {"paper18": 18, "tissue": 4}

_BUILTIN_LABEL_MAPS = ("ibsr", "neuromorphometrics")


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


def _check_range(pair: list[float], key: str, lo: float, hi: float) -> None:
    _check(len(pair) == 2, key, f"expected [min, max], got {pair!r}")
    _check(lo <= pair[0] <= pair[1] <= hi, key, f"expected {lo} <= min <= max <= {hi}, got {pair!r}")


def n_classes(labels: str) -> int:
    """Number of output classes (background included) of a label set name."""
    try:
        return LABEL_SETS[labels]
    except KeyError:
        raise ConfigError(f"brain.labels: expected one of {', '.join(LABEL_SETS)}, got {labels!r}") from None


@dataclasses.dataclass(frozen=True)
class BrainConfig:
    """The synthetic brain generator (section ``brain:``); ranges are ``[min, max]`` drawn uniformly per sample.

    Args:
        grid (int): output grid size N (cubic N³ covering a 256 mm field of view, so the voxel is 256/N mm).
        labels ("paper18" | "tissue"): output label set; ``paper18`` merges left/right FreeSurfer-aseg homologs
            into 18 classes (background included, CSF is background), as the Wirehead paper; ``tissue`` is
            0 background, 1 CSF, 2 GM, 3 WM.
        label_maps (list[str]): input label maps: ``ibsr`` / ``neuromorphometrics`` (shipped with deepmriprep)
            or paths to NIfTI files holding FreeSurfer-aseg label ids. One is picked at random per sample.
        device (str): torch device the generator runs on (``cpu``, ``cuda``, ``cuda:1``).
        generation_classes ("synthseg" | "label" | "tissue"): which labels share one random Gaussian per sample:
            ``synthseg`` groups left/right homologs and all CSF-like labels; ``label`` draws one per label id;
            ``tissue`` one per CSF/GM/WM class.
        mean_range (list[float]): range of the per-class intensity means.
        std_range (list[float]): range of the per-class intensity standard deviations.
        mean_jitter (float): each label id's mean deviates from its generation class mean by up to this much.
        contrast ("any" | "t1"): ``any`` (default, contrast-agnostic): every class mean is drawn independently;
            ``t1``: still random, but ordered as in T1-weighted MRI (CSF < GM < WM; background unconstrained).
        p_zero_background (float): probability that a sample's background is set to 0 (a skull-stripped look).
        csf_shell_mm (list[float]): thickness range of the CSF layer added around the brain (and in sulci that a
            closing of the brain mask fills), labelled as extracerebral CSF (aseg 24); ``[0, 0]`` disables it.
        rotation_deg (float): maximum absolute rotation about each axis.
        scaling (float): maximum relative scaling per axis (0.15 = ±15 %).
        shear (float): maximum absolute shear coefficient.
        translation_mm (float): maximum absolute translation per axis.
        elastic_mm (float): maximum standard deviation of the elastic displacement.
        elastic_grid (int): control-point grid size of the elastic field (smoothness).
        bias_std (float): maximum standard deviation of the log bias field.
        bias_grid (int): control-point grid size of the bias field.
        blur_mm (list[float]): range of the Gaussian blur FWHM in mm, drawn per axis.
        lowres_factor (list[float]): range of the low-resolution factor per axis (1 = none).
        noise_std (float): maximum standard deviation of the additive Gaussian noise (image range 0..1).
        gamma_std (float): standard deviation of the log gamma exponent.
        supersample (int): the image is drawn on an N·s grid and averaged down to N (partial-volume effect).
        seed (int, optional): base seed; a source started with its own seed ignores it.
        threads (int): torch threads of a generator process started with `wirehead_core.brain.source` (0 = torch's
            default, all cores); several generators sharing a machine each want 1.
    """

    grid: int = 64
    labels: Literal["paper18", "tissue"] = "tissue"
    label_maps: list[str] = dataclasses.field(default_factory=lambda: ["ibsr"])
    device: str = "cpu"
    generation_classes: Literal["synthseg", "label", "tissue"] = "synthseg"
    mean_range: list[float] = dataclasses.field(default_factory=lambda: [0.0, 1.0])
    std_range: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.1])
    mean_jitter: float = 0.0
    contrast: Literal["any", "t1"] = "any"
    p_zero_background: float = 0.0
    csf_shell_mm: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0])
    rotation_deg: float = 15.0
    scaling: float = 0.15
    shear: float = 0.01
    translation_mm: float = 10.0
    elastic_mm: float = 3.0
    elastic_grid: int = 5
    bias_std: float = 0.3
    bias_grid: int = 4
    blur_mm: list[float] = dataclasses.field(default_factory=lambda: [0.0, 2.0])
    lowres_factor: list[float] = dataclasses.field(default_factory=lambda: [1.0, 2.0])
    noise_std: float = 0.03
    gamma_std: float = 0.25
    supersample: int = 1
    seed: Optional[int] = None
    threads: int = 0

    def validate(self, key: str) -> None:
        k = key or "brain"
        _check(self.threads >= 0, f"{k}.threads", "expected an integer >= 0 (0 = torch's default)")
        _check(16 <= self.grid <= 512, f"{k}.grid", f"expected an integer in [16, 512], got {self.grid}")
        _check(len(self.label_maps) >= 1, f"{k}.label_maps", "expected at least one label map")
        for i, name in enumerate(self.label_maps):
            _check(bool(name), f"{k}.label_maps[{i}]", f"expected {' / '.join(_BUILTIN_LABEL_MAPS)} or a path")
        _check(self.device == "cpu" or self.device.startswith(("cuda", "mps", "xpu")), f"{k}.device",
               f"expected cpu, cuda or cuda:N, got {self.device!r}")
        _check_range(self.mean_range, f"{k}.mean_range", 0.0, 1.0)
        _check_range(self.std_range, f"{k}.std_range", 0.0, 1.0)
        _check(0.0 <= self.mean_jitter <= 1.0, f"{k}.mean_jitter", "expected a number in [0, 1]")
        _check(0.0 <= self.p_zero_background <= 1.0, f"{k}.p_zero_background", "expected a probability in [0, 1]")
        _check_range(self.csf_shell_mm, f"{k}.csf_shell_mm", 0.0, 16.0)
        _check(0.0 <= self.rotation_deg <= 180.0, f"{k}.rotation_deg", "expected a number in [0, 180]")
        _check(0.0 <= self.scaling < 1.0, f"{k}.scaling", "expected a number in [0, 1)")
        _check(0.0 <= self.shear < 1.0, f"{k}.shear", "expected a number in [0, 1)")
        _check(self.translation_mm >= 0.0, f"{k}.translation_mm", "expected a number >= 0")
        _check(self.elastic_mm >= 0.0, f"{k}.elastic_mm", "expected a number >= 0")
        _check(self.elastic_grid >= 2, f"{k}.elastic_grid", "expected an integer >= 2")
        _check(self.bias_std >= 0.0, f"{k}.bias_std", "expected a number >= 0")
        _check(self.bias_grid >= 2, f"{k}.bias_grid", "expected an integer >= 2")
        _check_range(self.blur_mm, f"{k}.blur_mm", 0.0, 32.0)
        _check_range(self.lowres_factor, f"{k}.lowres_factor", 1.0, 16.0)
        _check(self.noise_std >= 0.0, f"{k}.noise_std", "expected a number >= 0")
        _check(self.gamma_std >= 0.0, f"{k}.gamma_std", "expected a number >= 0")
        _check(1 <= self.supersample <= 4, f"{k}.supersample", "expected an integer in [1, 4]")

    @property
    def n_classes(self) -> int:
        """Output classes of this label set, background included."""
        return n_classes(self.labels)

    @property
    def voxel_mm(self) -> float:
        """Voxel size of the output grid in mm."""
        return 256.0 / self.grid


@dataclasses.dataclass(frozen=True)
class EvalVolumeConfig:
    """One real (image, label) pair for evaluation.

    Args:
        name (str): short name used in the evaluation CSV.
        image (str): NIfTI intensity image.
        label (str): NIfTI label image on the same voxel grid as the image.
        mapping ("aseg" | "tissue"): what the label ids are: FreeSurfer aseg / aparc+aseg ids (mapped to the
            trainer's label set) or already 0 bg, 1 CSF, 2 GM, 3 WM (tissue label set only).
    """

    name: str
    image: str
    label: str
    mapping: Literal["aseg", "tissue"] = "aseg"

    def validate(self, key: str) -> None:
        _check(bool(self.name) and "," not in self.name, f"{key}.name", "expected a non-empty name without commas")
        _check(bool(self.image), f"{key}.image", "expected a NIfTI path")
        _check(bool(self.label), f"{key}.label", "expected a NIfTI path")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Real evaluation data (section ``train.eval``).

    Args:
        icbm152 (bool): evaluate on nilearn's ICBM152 2009a T1 with CSF/GM/WM labels (tissue label set only).
        volumes (list[EvalVolumeConfig]): further (image, label) pairs.
        every_s (float): seconds of training between evaluations (an evaluation also runs at the end).
    """

    icbm152: bool = True
    volumes: list[EvalVolumeConfig] = dataclasses.field(default_factory=list)
    every_s: float = 60.0

    def validate(self, key: str) -> None:
        _check(self.every_s > 0, f"{key}.every_s", "expected a number > 0")
        names = [v.name for v in self.volumes] + (["icbm152"] if self.icbm152 else [])
        _check(len(set(names)) == len(names), f"{key}.volumes", f"volume names must be unique, got {names}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The trainer (section ``train:``).

    Args:
        mode ("coupled" | "wirehead"): ``coupled`` calls the brain generator inline (the paper's baseline);
            ``wirehead`` reads samples from the cache through `WireheadDataset`.
        budget_s (float): wall-clock training budget in seconds.
        output_dir (str): where CSVs, the checkpoint and the summary go.
        model ("meshnet" | "unet"): architecture.
        channels (int): MeshNet channels (a multiple of 8 is much faster on CPU with oneDNN).
        dilations (list[int]): MeshNet dilation schedule.
        norm ("batch" | "instance" | "group" | "none"): normalisation layer.
        activation ("relu" | "elu" | "gelu"): activation.
        unet_features (int): U-Net base features (doubled per level).
        unet_levels (int): U-Net resolution levels.
        batch_size (int): samples per step.
        patch (int): train on random P³ crops that keep the brain's centre inside (0 = the whole grid); the
            network is fully convolutional, so evaluation still runs on the whole grid.
        lr (float): peak Adam learning rate.
        lr_schedule ("constant" | "cosine" | "warmup_cosine"): learning rate over the wall-clock budget.
        warmup_frac (float): fraction of the budget used for linear warm-up (``warmup_cosine``).
        min_lr_frac (float): final learning rate as a fraction of ``lr`` (cosine schedules).
        weight_decay (float): Adam weight decay.
        loss ("ce" | "dice" | "dice_ce"): training loss.
        normalise_quantiles (list[float]): lower/upper quantile clipped and scaled to [0, 1], in training and
            evaluation alike.
        amp ("auto" | "on" | "off"): mixed precision; ``auto`` = on when training on CUDA.
        device (str): training device (``auto`` = cuda when available).
        threads (int): torch intra-op threads (0 = leave torch's default).
        channels_last (bool): channels-last 3-D memory layout for model and input (about 2x faster convolutions
            with oneDNN on CPU).
        num_workers (int): DataLoader workers in wirehead mode.
        seed (int): seed of model initialisation and of the coupled generator.
        log_every_steps (int): step CSV rows are written every this many steps.
        progress (bool): show a tqdm progress bar on stderr.
        eval (EvalConfig): evaluation data and cadence.
    """

    mode: Literal["coupled", "wirehead"] = "coupled"
    budget_s: float = 600.0
    output_dir: str = "results/train"
    model: Literal["meshnet", "unet"] = "meshnet"
    channels: int = 16
    dilations: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 4, 8, 16, 8, 4, 2, 1])
    norm: Literal["batch", "instance", "group", "none"] = "batch"
    activation: Literal["relu", "elu", "gelu"] = "relu"
    unet_features: int = 24
    unet_levels: int = 5
    batch_size: int = 1
    patch: int = 0
    lr: float = 3e-3
    lr_schedule: Literal["constant", "cosine", "warmup_cosine"] = "warmup_cosine"
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.05
    weight_decay: float = 0.0
    loss: Literal["ce", "dice", "dice_ce"] = "dice_ce"
    normalise_quantiles: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.999])
    amp: Literal["auto", "on", "off"] = "auto"
    device: str = "auto"
    threads: int = 0
    channels_last: bool = True
    num_workers: int = 0
    seed: int = 0
    log_every_steps: int = 1
    progress: bool = True
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)

    def validate(self, key: str) -> None:
        k = key or "train"
        _check(self.budget_s > 0, f"{k}.budget_s", "expected a number of seconds > 0")
        _check(bool(self.output_dir), f"{k}.output_dir", "expected a directory path")
        _check(self.channels >= 1, f"{k}.channels", "expected an integer >= 1")
        _check(len(self.dilations) >= 1 and all(d >= 1 for d in self.dilations), f"{k}.dilations",
               "expected a non-empty list of integers >= 1")
        _check(self.unet_features >= 1, f"{k}.unet_features", "expected an integer >= 1")
        _check(1 <= self.unet_levels <= 7, f"{k}.unet_levels", "expected an integer in [1, 7]")
        _check(self.batch_size >= 1, f"{k}.batch_size", "expected an integer >= 1")
        _check(self.patch >= 0, f"{k}.patch", "expected an integer >= 0 (0 = whole grid)")
        _check(self.lr > 0, f"{k}.lr", "expected a number > 0")
        _check(0.0 <= self.warmup_frac < 1.0, f"{k}.warmup_frac", "expected a number in [0, 1)")
        _check(0.0 <= self.min_lr_frac <= 1.0, f"{k}.min_lr_frac", "expected a number in [0, 1]")
        _check(self.weight_decay >= 0, f"{k}.weight_decay", "expected a number >= 0")
        q = self.normalise_quantiles
        _check(len(q) == 2 and 0.0 <= q[0] < q[1] <= 1.0, f"{k}.normalise_quantiles",
               f"expected [low, high] with 0 <= low < high <= 1, got {q!r}")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith(("cuda", "mps", "xpu")),
               f"{k}.device", f"expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        _check(self.threads >= 0, f"{k}.threads", "expected an integer >= 0")
        _check(self.num_workers >= 0, f"{k}.num_workers", "expected an integer >= 0")
        _check(self.log_every_steps >= 1, f"{k}.log_every_steps", "expected an integer >= 1")


def brain_config(config: Any) -> BrainConfig:
    """The ``brain:`` section of a `Config` (or a `BrainConfig` itself, or None), defaults when absent."""
    if isinstance(config, BrainConfig):
        return config
    section = config.section("brain") if config is not None else None
    return section if section is not None else BrainConfig()


def train_config(config: Any) -> TrainConfig:
    """The ``train:`` section of a `Config` (or a `TrainConfig` itself), defaults when absent."""
    if isinstance(config, TrainConfig):
        return config
    section = config.section("train") if config is not None else None
    return section if section is not None else TrainConfig()


register_section("brain", BrainConfig)
register_section("train", TrainConfig)
