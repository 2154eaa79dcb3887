"""Label-id tables of the brain generator: FreeSurfer-aseg ids, the output label sets and the generation classes.

Everything works on a canonical id space: FreeSurfer aseg ids in 0..255. Label maps in other schemes are mapped into
it once, when they are read (`canonical_aseg`, `NEUROMORPHOMETRICS_TO_ASEG`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "NEUROMORPHOMETRICS_TO_ASEG",
    "canonical_aseg",
    "output_lut",
    "generation_lut",
    "map_labels",
]

#: Output class names per label set, index = class id.
CLASS_NAMES = {
    "tissue": ["background", "csf", "gm", "wm"],
    "paper18": [
        "background", "cerebral_wm", "cerebral_cortex", "lateral_ventricle", "inf_lat_ventricle",
        "cerebellum_wm", "cerebellum_cortex", "thalamus", "caudate", "putamen", "pallidum", "3rd_ventricle",
        "4th_ventricle", "brainstem", "hippocampus", "amygdala", "accumbens", "ventral_dc",
    ],
}

# paper18: the Wirehead paper's SynthSeg label map with left/right homologs merged; CSF (24) is background.
_PAPER18 = {
    2: 1, 41: 1, 25: 1, 57: 1, 3: 2, 42: 2, 4: 3, 43: 3, 5: 4, 44: 4, 7: 5, 46: 5, 8: 6, 47: 6, 10: 7, 49: 7,
    11: 8, 50: 8, 12: 9, 51: 9, 13: 10, 52: 10, 14: 11, 15: 12, 16: 13, 17: 14, 53: 14, 18: 15, 54: 15,
    26: 16, 58: 16, 28: 17, 60: 17,
}
_CSF_IDS = (4, 5, 14, 15, 24, 31, 43, 44, 63, 72)
_GM_IDS = (3, 42, 8, 47, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 26, 58, 80)
_WM_IDS = (2, 41, 7, 46, 16, 28, 60, 25, 57, 77, 85, 251, 252, 253, 254, 255)
_TISSUE = {**{i: 1 for i in _CSF_IDS}, **{i: 2 for i in _GM_IDS}, **{i: 3 for i in _WM_IDS}}

# SynthSeg-like generation classes: homologs share one Gaussian, and so do all CSF-like labels.
_SYNTHSEG_GROUPS = [
    (2, 41, 25, 57, 77, 85, 251, 252, 253, 254, 255), (3, 42), _CSF_IDS, (7, 46), (8, 47), (10, 49), (11, 50),
    (12, 51), (13, 52), (16,), (17, 53), (18, 54), (26, 58), (28, 60), (80,),
]


def _neuromorphometrics_table() -> dict[int, int]:
    table = {
        4: 14, 11: 15, 23: 58, 30: 26, 31: 54, 32: 18, 35: 16, 36: 50, 37: 11, 38: 47, 39: 8, 40: 46, 41: 7,
        44: 41, 45: 2, 46: 24, 47: 53, 48: 17, 49: 44, 50: 5, 51: 43, 52: 4, 55: 52, 56: 13, 57: 51, 58: 12,
        59: 49, 60: 10, 61: 60, 62: 28,
        69: 2,  # optic chiasm: a white-matter tract on the midline
        71: 8, 72: 8, 73: 8,  # cerebellar vermis lobules: cerebellar cortex
        75: 26, 76: 58,  # basal forebrain (deep grey matter next to the accumbens)
    }
    for roi in range(100, 208):  # cortical parcels: even ids are right hemisphere, odd ids left
        table[roi] = 42 if roi % 2 == 0 else 3
    return table


#: Neuromorphometrics (MICCAI 2012) ids -> aseg ids; cortical parcels collapse to cerebral cortex.
NEUROMORPHOMETRICS_TO_ASEG = _neuromorphometrics_table()


def canonical_aseg(labels: np.ndarray, scheme: str = "aseg") -> np.ndarray:
    """Label ids of `labels` mapped to aseg ids in 0..255 (uint8).

    Args:
        labels: integer label volume.
        scheme: ``aseg`` (FreeSurfer aseg or aparc+aseg: cortical parcels 1000-1999 / 11100-11199 become left
            cortex 3, 2000-2999 / 12100-12199 right cortex 42, ids above 255 otherwise background) or
            ``neuromorphometrics``.
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        if not np.allclose(rounded, labels):
            raise ValueError("label volume holds non-integer values")
        labels = rounded.astype(np.int64)
    ids = np.unique(labels)
    if ids.size and ids.min() < 0:
        raise ValueError(f"label volume holds negative ids (min {int(ids.min())})")
    table: dict[int, int] = {}
    for i in ids.tolist():
        if scheme == "neuromorphometrics":
            table[i] = NEUROMORPHOMETRICS_TO_ASEG.get(i, 0)
        elif scheme == "aseg":
            if i <= 255:
                table[i] = i
            elif 1000 <= i < 2000 or 11100 <= i < 11200:
                table[i] = 3
            elif 2000 <= i < 3000 or 12100 <= i < 12200:
                table[i] = 42
            else:
                table[i] = 0
        else:
            raise ValueError(f"unknown label scheme {scheme!r} (expected aseg or neuromorphometrics)")
    keys = np.asarray(sorted(table), dtype=np.int64)
    values = np.asarray([table[k] for k in keys], dtype=np.uint8)
    return values[np.searchsorted(keys, labels.astype(np.int64))] if keys.size else labels.astype(np.uint8)


def output_lut(labels: str) -> np.ndarray:
    """256-entry table aseg id -> output class of label set `labels` (``paper18`` or ``tissue``)."""
    table = {"paper18": _PAPER18, "tissue": _TISSUE}.get(labels)
    if table is None:
        raise ValueError(f"unknown label set {labels!r} (expected {', '.join(CLASS_NAMES)})")
    lut = np.zeros(256, dtype=np.uint8)
    for k, v in table.items():
        lut[k] = v
    return lut


def generation_lut(kind: str) -> tuple[np.ndarray, int]:
    """256-entry table aseg id -> generation class, and the number of classes; class 0 is background.

    Ids that no group names get a class of their own (``synthseg``, ``label``) or background (``tissue``).
    """
    lut = np.zeros(256, dtype=np.int64)
    if kind == "label":
        lut[:] = np.arange(256)
        return lut, 256
    if kind == "tissue":
        return output_lut("tissue").astype(np.int64), 4
    if kind != "synthseg":
        raise ValueError(f"unknown generation classes {kind!r} (expected synthseg, label or tissue)")
    lut[:] = -1
    lut[0] = 0
    for g, ids in enumerate(_SYNTHSEG_GROUPS, start=1):
        lut[list(ids)] = g
    free = np.flatnonzero(lut < 0)
    lut[free] = np.arange(len(_SYNTHSEG_GROUPS) + 1, len(_SYNTHSEG_GROUPS) + 1 + free.size)
    return lut, int(lut.max()) + 1


def map_labels(aseg: np.ndarray, labels: str) -> np.ndarray:
    """Aseg ids (0..255) mapped to the classes of label set `labels` (uint8)."""
    aseg = np.asarray(aseg)
    if aseg.dtype != np.uint8:
        aseg = canonical_aseg(aseg)
    return output_lut(labels)[aseg]
