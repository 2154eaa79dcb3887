"""The common voxel grid of generated and evaluation volumes, and reading NIfTI volumes onto it.

Every volume lives on an N³ RAS grid covering a 256 mm cube centred on the world origin (MNI space), so the
generator's samples and the evaluation volumes line up voxel for voxel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from wirehead_core.errors import ConfigError

__all__ = ["FOV_MM", "grid_affine", "read_volume", "world_to_normalised", "sampling_grid"]

#: Edge of the cubic field of view of every generated and evaluation grid, in mm.
FOV_MM = 256.0


def grid_affine(grid: int) -> np.ndarray:
    """Voxel-to-world (RAS mm) affine of the N³ grid covering `FOV_MM` centred on the world origin."""
    vox = FOV_MM / grid
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = -(grid - 1) / 2.0 * vox
    return aff


def read_volume(path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D NIfTI volume and its affine; `key` names the config entry in error messages."""
    import nibabel as nib

    if not Path(path).is_file():
        raise ConfigError(f"{key}: {path} does not exist")
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ConfigError(f"{key}: {path} is not a 3-D volume (shape {data.shape})")
    return data, np.asarray(img.affine, dtype=np.float64)


def world_to_normalised(shape: tuple[int, ...], affine: np.ndarray) -> torch.Tensor:
    """4x4 (float64) map from world mm to grid_sample's normalised coordinates (align_corners=True) of a volume."""
    sizes = torch.tensor(shape[-3:], dtype=torch.float64)
    to_norm = torch.diag(torch.cat([2.0 / (sizes - 1), torch.ones(1, dtype=torch.float64)]))
    to_norm[:3, 3] = -1.0
    return to_norm @ torch.linalg.inv(torch.as_tensor(affine, dtype=torch.float64))


def sampling_grid(n: int, to_norm: torch.Tensor, device: torch.device,
                  displacement: Optional[torch.Tensor] = None) -> torch.Tensor:
    """grid_sample grid (1, n, n, n, 3) of the n³ output grid mapped by `to_norm` (output world -> normalised),
    plus an optional displacement (3, n, n, n) already in normalised units."""
    axis = (torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2.0) * (FOV_MM / n)
    g = to_norm.to(device=device, dtype=torch.float32)
    coords = []
    for row in range(3):
        c = (g[row, 0] * axis[:, None, None] + g[row, 1] * axis[None, :, None]
             + g[row, 2] * axis[None, None, :] + g[row, 3])
        if displacement is not None:
            c = c + displacement[row]
        coords.append(c)
    # grid_sample's last dimension indexes (W, H, D) = volume axes (2, 1, 0).
    return torch.stack(coords[::-1], dim=-1)[None]
