"""Real evaluation data on the generator's grid: nilearn's ICBM152 2009a T1 and users' (image, label) pairs.

The ICBM152 files ship inside the nilearn wheel and are read directly with nibabel (no fetcher, no download). Its
labels are derived from the template's own tissue maps: GM and WM probabilities, CSF = brain mask − GM − WM, and
background = 1 − mask; the maps are averaged onto the output voxels and the most probable class wins. Every volume is
resampled to the N³ RAS grid of `wirehead_core.brain.grid_affine`, so predictions and labels line up with what the
generator produces. None of these files may feed training (`evaluation_paths` lists them for the generator's guard).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from wirehead_core._brain_grid import FOV_MM, read_volume, sampling_grid, world_to_normalised
from wirehead_core._brain_labels import canonical_aseg, map_labels
from wirehead_core.errors import ConfigError
from wirehead_core.paper_config import EvalVolumeConfig, TrainConfig

__all__ = [
    "EvalVolume",
    "icbm152_paths",
    "evaluation_paths",
    "resample_to_grid",
    "load_icbm152",
    "load_volume_pair",
    "evaluation_volumes",
]

logger = logging.getLogger(__name__)

_ICBM_FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}


@dataclass(frozen=True)
class EvalVolume:
    """One evaluation volume on the training grid.

    Attributes:
        name: short name (CSV column prefix).
        image: (N, N, N) float32 intensities, not normalised.
        label: (N, N, N) uint8 classes of the training label set.
    """

    name: str
    image: np.ndarray
    label: np.ndarray


def icbm152_paths() -> dict[str, Path]:
    """Paths of the ICBM152 2009a T1, GM and WM files inside the installed nilearn (empty when not installed)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        return {}
    base = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return {k: base / name for k, name in _ICBM_FILES.items()}


def evaluation_paths(train: Optional[TrainConfig] = None) -> list[Path]:
    """Every evaluation file (ICBM152 and the configured volumes): the generator refuses them as label maps."""
    paths = list(icbm152_paths().values())
    if train is not None:
        for vol in train.eval.volumes:
            paths += [Path(vol.image), Path(vol.label)]
    return paths


def resample_to_grid(data: np.ndarray, affine: np.ndarray, grid: int, mode: str = "average") -> np.ndarray:
    """Resample volume(s) onto the N³ training grid.

    Args:
        data: (X, Y, Z) or (C, X, Y, Z) array in voxel space of `affine`.
        affine: voxel-to-world affine of `data`.
        grid: output size N.
        mode: ``average`` = trilinear sampling on a grid about as fine as the input, then averaged over each output
            voxel (intensities, probabilities); ``nearest`` = nearest input voxel at each output voxel centre.
    """
    import torch
    import torch.nn.functional as F

    squeeze = data.ndim == 3
    vol = torch.as_tensor(np.ascontiguousarray(data if not squeeze else data[None]), dtype=torch.float32)[None]
    in_vox = float(np.abs(affine[:3, :3]).sum(0).min())
    factor = max(1, int(math.ceil((FOV_MM / grid) / in_vox - 1e-6))) if mode == "average" else 1
    n = grid * factor
    sample_grid = sampling_grid(n, world_to_normalised(vol.shape, affine), torch.device("cpu"))
    out = F.grid_sample(vol, sample_grid, mode="bilinear" if mode == "average" else "nearest",
                        padding_mode="zeros", align_corners=True)
    if factor > 1:
        out = F.avg_pool3d(out, factor)
    out = out[0].numpy()
    return out[0] if squeeze else out


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_volume(path, "train.eval")


def load_icbm152(grid: int) -> EvalVolume:
    """The ICBM152 2009a T1 (skull-stripped, background 0) with CSF/GM/WM labels on the N³ grid (tissue set)."""
    from scipy import ndimage

    paths = icbm152_paths()
    if not paths:
        raise ConfigError("train.eval.icbm152: nilearn is not installed (pip install nilearn==0.14.1)")
    t1, affine = _read(paths["t1"])
    gm = _read(paths["gm"])[0].astype(np.float32) / 255.0
    wm = _read(paths["wm"])[0].astype(np.float32) / 255.0
    mask = ndimage.binary_fill_holes(t1 > 0).astype(np.float32)
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    probs = np.stack([1.0 - mask, csf, np.minimum(gm, mask), np.minimum(wm, mask)])
    image = resample_to_grid(t1.astype(np.float32), affine, grid, "average")
    label = resample_to_grid(probs, affine, grid, "average").argmax(0).astype(np.uint8)
    return EvalVolume("icbm152", image.astype(np.float32), label)


def load_volume_pair(vol: EvalVolumeConfig, grid: int, labels: str) -> EvalVolume:
    """A user (image, label) pair on the N³ grid, its labels mapped to label set `labels`.

    The image is averaged onto the output voxels; labels are taken nearest-neighbour at the voxel centres (as the
    generator takes its labels). ``mapping: aseg`` reads FreeSurfer aseg / aparc+aseg ids; ``mapping: tissue``
    reads 0..3 tissue classes (only with the ``tissue`` label set).
    """
    image, img_aff = _read(Path(vol.image))
    lab, lab_aff = _read(Path(vol.label))
    if vol.mapping == "tissue":
        if labels != "tissue":
            raise ConfigError(f"train.eval.volumes[{vol.name}].mapping: tissue labels need brain.labels: tissue")
        if lab.max() > 3 or lab.min() < 0:
            raise ConfigError(f"train.eval.volumes[{vol.name}]: tissue labels must be 0..3")
        mapped = lab.astype(np.uint8)
    else:
        mapped = map_labels(canonical_aseg(lab, "aseg"), labels)
    out_img = resample_to_grid(image.astype(np.float32), img_aff, grid, "average")
    out_lab = resample_to_grid(mapped.astype(np.float32), lab_aff, grid, "nearest")
    return EvalVolume(vol.name, out_img.astype(np.float32), np.rint(out_lab).astype(np.uint8))


def evaluation_volumes(train: TrainConfig, grid: int, labels: str) -> list[EvalVolume]:
    """All evaluation volumes of ``train.eval`` on the N³ grid; ICBM152 only with the ``tissue`` label set."""
    out: list[EvalVolume] = []
    if train.eval.icbm152:
        if labels == "tissue":
            out.append(load_icbm152(grid))
        else:
            logger.warning("train.eval.icbm152 skipped: its labels are CSF/GM/WM only, the label set is %s", labels)
    out += [load_volume_pair(v, grid, labels) for v in train.eval.volumes]
    return out
