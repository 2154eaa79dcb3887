"""A SynthSeg-style synthetic brain generator in pure PyTorch (the same code on CPU and GPU).

From a label map (FreeSurfer-aseg ids) each sample draws: a random affine (rotation, scaling, shear, translation)
and a smooth elastic displacement; a CSF layer of random thickness around the brain; one random Gaussian per
generation class (contrast-agnostic: nothing is fitted to real images); a multiplicative bias field; blur and a
low-resolution simulation; noise; a gamma curve. It returns ``(image float32, label uint8)`` on a cubic N³ grid that
covers a 256 mm RAS field of view centred on the world origin (see `grid_affine`; the evaluation data use the same
grid). Labels are resampled nearest-neighbour and mapped to the configured label set.

Default inputs are the label maps shipped in the ``deepmriprep`` wheel (``ibsr``, ``neuromorphometrics``); they are
read with nibabel without importing deepmriprep. A label map that is one of the evaluation files is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from wirehead_core._brain_grid import FOV_MM, grid_affine, read_volume, sampling_grid, world_to_normalised
from wirehead_core._brain_labels import CLASS_NAMES, canonical_aseg, generation_lut, map_labels, output_lut
from wirehead_core.errors import ConfigError, WireheadError
from wirehead_core.paper_config import BrainConfig, brain_config

__all__ = [
    "FOV_MM",
    "CLASS_NAMES",
    "LabelMap",
    "BrainGenerator",
    "builtin_label_map_path",
    "load_label_map",
    "grid_affine",
    "map_labels",
    "source",
]

logger = logging.getLogger(__name__)

_BUILTIN = {"ibsr": "ibsr.nii.gz", "neuromorphometrics": "neuromorphometrics.nii.gz"}


class LeakageError(WireheadError, ValueError):
    """A generator input is one of the evaluation files."""


def builtin_label_map_path(name: str) -> Path:
    """Path of a label map shipped in the deepmriprep wheel (``ibsr`` or ``neuromorphometrics``)."""
    if name not in _BUILTIN:
        raise ConfigError(f"brain.label_maps: unknown built-in label map {name!r} (known: {', '.join(_BUILTIN)})")
    spec = importlib.util.find_spec("deepmriprep")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"brain.label_maps: {name!r} ships with deepmriprep, which is not installed "
            "(pip install --no-deps deepmriprep==0.3.0)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "templates" / _BUILTIN[name]
    if not path.is_file():
        raise ConfigError(f"brain.label_maps: {path} is missing from the deepmriprep installation")
    return path


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_not_evaluation(path: Path, forbidden: Sequence[Path]) -> None:
    """Raise `LeakageError` when `path` is (a copy of) one of the `forbidden` evaluation files."""
    real = os.path.realpath(path)
    digest: Optional[str] = None
    for other in forbidden:
        other = Path(other)
        if not other.exists():
            continue
        if os.path.realpath(other) == real or os.path.samefile(other, path):
            raise LeakageError(f"brain.label_maps: {path} is an evaluation file; it must never feed training")
        if other.stat().st_size == path.stat().st_size:
            digest = digest or _file_digest(path)
            if _file_digest(other) == digest:
                raise LeakageError(
                    f"brain.label_maps: {path} has the same content as evaluation file {other}; "
                    "it must never feed training")


@dataclass(frozen=True)
class LabelMap:
    """A label map ready for sampling.

    Attributes:
        name: where it came from (built-in name or path).
        aseg: aseg ids (uint8 volume).
        affine: voxel-to-world (RAS mm) affine.
    """

    name: str
    aseg: np.ndarray
    affine: np.ndarray


def load_label_map(name_or_path: str, forbidden: Sequence[Path] = ()) -> LabelMap:
    """Read a label map: a built-in name (``ibsr``, ``neuromorphometrics``) or a NIfTI path with aseg ids.

    Args:
        name_or_path: built-in name or path.
        forbidden: evaluation files; a label map that is one of them raises `LeakageError`.
    """
    if name_or_path in _BUILTIN:
        path = builtin_label_map_path(name_or_path)
        scheme = "neuromorphometrics" if name_or_path == "neuromorphometrics" else "aseg"
    else:
        path, scheme = Path(name_or_path), "aseg"
        if not path.is_file():
            raise ConfigError(f"brain.label_maps: {path} does not exist")
    _check_not_evaluation(path, forbidden)
    data, affine = read_volume(path, "brain.label_maps")
    aseg = canonical_aseg(data, scheme)
    if not aseg.any():
        raise ConfigError(f"brain.label_maps: {path} holds no brain labels")
    return LabelMap(name=str(name_or_path), aseg=aseg, affine=affine)


def _shell_distance(mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Chessboard distance (in voxels, capped at `steps` + 1) of every voxel to the brain `mask` (0 inside)."""
    dist = torch.full(mask.shape, steps + 1, dtype=torch.uint8, device=mask.device)
    grown = mask.float()[None, None]
    dist[mask] = 0
    for step in range(1, steps + 1):
        grown = F.max_pool3d(grown, 3, stride=1, padding=1)
        ring = (grown[0, 0] > 0) & (dist > step)
        dist[ring] = step
    return dist


def _gaussian_blur_1d(x: torch.Tensor, sigma: float, axis: int) -> torch.Tensor:
    """Blur a (1, 1, X, Y, Z) volume along spatial `axis` (0..2) with a Gaussian of `sigma` voxels."""
    if sigma < 0.1:
        return x
    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    shape = [1, 1, 1, 1, 1]
    shape[2 + axis] = k.numel()
    pad = [0, 0, 0, 0, 0, 0]
    pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
    return F.conv3d(F.pad(x, pad, mode="replicate"), k.view(shape))


class BrainGenerator:
    """Draws synthetic (image, label) brains from label maps.

    Args:
        config (BrainConfig, optional): generator settings (defaults when None).
        seed (int, optional): seed of this generator's random stream; None = ``config.seed``, else fresh entropy.
        device (str, optional): overrides ``config.device``.
        forbidden (Sequence[Path]): evaluation files that must not be used as label maps; the ICBM152 evaluation
            files are always forbidden.
        label_maps (Sequence[LabelMap], optional): already loaded label maps (instead of ``config.label_maps``).

    Attributes:
        last_params (dict): the random draws of the latest sample (``means``, ``stds`` per generation class,
            ``zero_background``, ``shell_mm``, ``label_map``), for inspection and tests.
    """

    def __init__(self, config: Optional[BrainConfig] = None, *, seed: Optional[int] = None,
                 device: Optional[str] = None, forbidden: Sequence[Path] = (),
                 label_maps: Optional[Sequence[LabelMap]] = None) -> None:
        from wirehead_core.evaldata import icbm152_paths

        self.config = config if config is not None else BrainConfig()
        self.device = torch.device(device or self.config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"brain.device: {self.device} requested but CUDA is not available")
        seed = self.config.seed if seed is None else seed
        self._gen = torch.Generator(device=self.device)
        if seed is None:
            self._gen.seed()
        else:
            self._gen.manual_seed(int(seed))
        forbidden = list(forbidden) + list(icbm152_paths().values())
        maps = list(label_maps) if label_maps is not None else [
            load_label_map(name, forbidden) for name in self.config.label_maps]
        if not maps:
            raise ConfigError("brain.label_maps: expected at least one label map")
        self._out_lut = torch.as_tensor(output_lut(self.config.labels), device=self.device).long()
        gen_lut, self._n_gen = generation_lut(self.config.generation_classes)
        self._gen_lut = torch.as_tensor(gen_lut, device=self.device)
        # tissue (0 none, 1 CSF, 2 GM, 3 WM) of each generation class, for the ordered ``t1`` contrast
        tissue = np.zeros(self._n_gen, dtype=np.int64)
        for aseg_id, t in enumerate(output_lut("tissue")):
            if aseg_id and t and not tissue[gen_lut[aseg_id]]:
                tissue[gen_lut[aseg_id]] = t
        self._gen_tissue = torch.as_tensor(tissue, device=self.device)
        shell_vox = [int(math.ceil(self.config.csf_shell_mm[1] / float(min(np.abs(m.affine[:3, :3]).sum(0)))))
                     for m in maps]
        self._maps = [self._prepare(m, steps) for m, steps in zip(maps, shell_vox)]
        self.last_params: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------------------------------
    def _prepare(self, lm: LabelMap, shell_steps: int) -> dict[str, Any]:
        aseg = torch.as_tensor(lm.aseg.astype(np.float32), device=self.device)
        if shell_steps > 0:
            dist = _shell_distance(aseg > 0, shell_steps).float()
        else:
            dist = torch.where(aseg > 0, 0.0, 1e6)
        vol = torch.stack([aseg, dist])[None]  # (1, 2, X, Y, Z): aseg ids and distance to the brain
        world_to_norm = world_to_normalised(lm.aseg.shape, lm.affine)
        vox_mm = float(np.abs(lm.affine[:3, :3]).sum(0).min())
        return {"name": lm.name, "vol": vol, "world_to_norm": world_to_norm, "vox_mm": vox_mm}

    def _uniform(self, lo: float, hi: float, n: int = 1) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=self._gen, device=self.device, dtype=torch.float64)

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self._gen, device=self.device)

    def _spatial_matrix(self) -> torch.Tensor:
        """Random output-world -> source-world affine (4x4, float64)."""
        c = self.config
        ang = torch.deg2rad(self._uniform(-c.rotation_deg, c.rotation_deg, 3))
        scale = 1.0 + self._uniform(-c.scaling, c.scaling, 3)
        shear = self._uniform(-c.shear, c.shear, 6)
        trans = self._uniform(-c.translation_mm, c.translation_mm, 3)
        cx, cy, cz = torch.cos(ang).tolist()
        sx, sy, sz = torch.sin(ang).tolist()
        rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
        ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
        rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
        sh = torch.eye(3, dtype=torch.float64)
        sh[0, 1], sh[0, 2], sh[1, 0], sh[1, 2], sh[2, 0], sh[2, 1] = shear.tolist()
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = (rx @ ry @ rz @ sh @ torch.diag(scale.cpu())).to(torch.float64)
        m[:3, 3] = trans.cpu()
        return m

    # ---------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One synthetic brain: ``(image (N, N, N) float32 in [0, 1], label (N, N, N) uint8)`` on the device."""
        c = self.config
        n, s = c.grid, c.supersample
        fine = n * s
        pick = int(torch.randint(len(self._maps), (1,), generator=self._gen, device=self.device).item())
        lm = self._maps[pick]

        # Spatial transform: output world -> source world -> source normalised coordinates.
        to_norm = lm["world_to_norm"] @ self._spatial_matrix()
        disp = None
        if c.elastic_mm > 0:
            sd = float(self._uniform(0.0, c.elastic_mm).item())
            coarse = self._randn(1, 3, c.elastic_grid, c.elastic_grid, c.elastic_grid) * sd
            # displacement in mm -> normalised coordinates (linear part only), then a smooth upsampling.
            lin = to_norm[:3, :3].to(device=self.device, dtype=torch.float32)
            coarse = torch.einsum("ij,bjxyz->bixyz", lin, coarse)
            disp = F.interpolate(coarse, size=(fine, fine, fine), mode="trilinear", align_corners=True)[0]
        grid = sampling_grid(fine, to_norm, self.device, disp)
        sampled = F.grid_sample(lm["vol"], grid, mode="nearest", padding_mode="zeros", align_corners=True)
        if s > 1:
            grid_n = F.avg_pool3d(grid.permute(0, 4, 1, 2, 3), s).permute(0, 2, 3, 4, 1)
            sampled_n = F.grid_sample(lm["vol"], grid_n, mode="nearest", padding_mode="zeros", align_corners=True)
        else:
            sampled_n = sampled

        # Extracerebral (and sulcal) CSF of random thickness.
        shell_mm = float(self._uniform(*c.csf_shell_mm).item())

        def with_shell(vol: torch.Tensor) -> torch.Tensor:
            aseg = vol[0, 0]
            if shell_mm <= 0:
                return aseg.long()
            dist_mm = vol[0, 1] * lm["vox_mm"]
            # outside the source volume (padding) dist is 0 and aseg 0: keep it background.
            shell = (aseg == 0) & (dist_mm > 0) & (dist_mm <= shell_mm)
            return torch.where(shell, 24.0, aseg).long()

        aseg_fine = with_shell(sampled)
        aseg_n = with_shell(sampled_n) if s > 1 else aseg_fine

        # Gaussian mixture: one random mean and std per generation class.
        means = self._uniform(*c.mean_range, self._n_gen).float()
        stds = self._uniform(*c.std_range, self._n_gen).float()
        if c.contrast == "t1":  # random, but CSF < GM < WM
            ordered = torch.sort(self._uniform(*c.mean_range, 3).float()).values
            has = self._gen_tissue > 0
            means[has] = ordered[self._gen_tissue[has] - 1]
        zero_bg = bool(torch.rand(1, generator=self._gen, device=self.device).item() < c.p_zero_background)
        if zero_bg:
            means[0] = 0.0
            stds[0] = 0.0
        id_means, id_stds = means[self._gen_lut], stds[self._gen_lut]
        if c.mean_jitter > 0:  # labels of one generation class differ a little (e.g. deep GM vs cortex)
            id_means = id_means + c.mean_jitter * (2 * self._uniform(0.0, 1.0, 256).float() - 1)
            id_means[0] = means[0]
        img = id_means[aseg_fine] + id_stds[aseg_fine] * self._randn(fine, fine, fine)
        img = img.clamp_min(0.0)[None, None]

        if c.bias_std > 0:
            sd = float(self._uniform(0.0, c.bias_std).item())
            field = self._randn(1, 1, c.bias_grid, c.bias_grid, c.bias_grid) * sd
            img = img * torch.exp(F.interpolate(field, size=(fine, fine, fine), mode="trilinear",
                                                align_corners=True))
        if s > 1:
            img = F.avg_pool3d(img, s)  # partial-volume effect of the coarser output voxels

        vox = FOV_MM / n
        fwhm = self._uniform(*c.blur_mm, 3).tolist()
        for axis in range(3):
            img = _gaussian_blur_1d(img, fwhm[axis] / 2.3548 / vox, axis)
        factors = self._uniform(*c.lowres_factor, 3).tolist()
        low = [max(2, int(round(n / f))) for f in factors]
        if any(size < n for size in low):
            img = F.interpolate(F.interpolate(img, size=low, mode="area"), size=(n, n, n), mode="trilinear",
                                align_corners=False)
        if c.noise_std > 0:
            img = img + self._randn(n, n, n) * float(self._uniform(0.0, c.noise_std).item())
        img = img[0, 0].clamp_min(0.0)
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo).clamp_min(1e-6)
        if c.gamma_std > 0:
            img = img.pow(float(torch.exp(self._randn(1) * c.gamma_std).item()))
        if zero_bg:
            img = img * (aseg_n > 0)  # skull-stripped look: exactly zero outside brain and CSF

        label = self._out_lut[aseg_n].to(torch.uint8)
        self.last_params = {
            "label_map": lm["name"], "means": means, "stds": stds, "zero_background": zero_bg,
            "shell_mm": shell_mm, "generation_classes": self._gen_lut[aseg_fine] if s == 1 else None,
            "aseg": aseg_n,
        }
        return img.float().contiguous(), label.contiguous()

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.sample()


def source(config: Any, seed: Optional[int] = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Infinite stream of ``(image float32, label uint8)`` numpy arrays for ``wirehead generate``.

    Args:
        config: the wirehead `Config`; its ``brain:`` section (defaults when absent) sets the generator, and the
            volumes of its ``train.eval`` section are refused as label maps.
        seed: seed of this generator process (None = ``brain.seed`` or fresh entropy).
    """
    from wirehead_core.evaldata import evaluation_paths

    cfg = brain_config(config)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train = config.section("train") if hasattr(config, "section") else None
    generator = BrainGenerator(cfg, seed=seed, forbidden=evaluation_paths(train))
    logger.info("brain source: %d^3 grid, %s labels, maps %s on %s", cfg.grid, cfg.labels,
                ", ".join(cfg.label_maps), generator.device)
    for image, label in generator:
        yield image.cpu().numpy(), label.cpu().numpy()
