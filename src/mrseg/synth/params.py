"""Parameters of the synthetic slide generator, all lengths in microns.

Because every scale is physical, the same seed and the same physical slide size (``size_px * mpp``)
give the same tissue at any ``mpp``: only the pixel grid changes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mrseg.core.errors import ConfigError

Range = tuple[float, float]


@dataclass(frozen=True)
class SynthParams:
    """Geometry, texture and variation parameters (lengths in microns, densities per mm^2 of tissue).

    Attributes
    ----------
    tissue_fraction
        Target fraction of the slide area covered by tissue islands.
    island_density_per_mm2
        Expected number of extra tissue islands per mm^2 of slide (at least one island always).
    lesion_radius_um
        Log-uniform range of the mean radius of tumour nests and of mimics (the same range for both,
        so size alone does not tell them apart).
    lesion_irregularity
        Relative amplitude of the radial harmonics of tumour-nest and mimic outlines.
    tumour_area_fraction, mimic_area_fraction
        Target fractions of the tissue area covered by tumour nests and by mimics.
    p_tumour_free
        Probability that a slide has no tumour at all (it still has mimics).
    focus_radius_um, focus_density_per_mm2, focus_irregularity
        Small tumour foci: radius range, density per mm^2 of tissue and outline irregularity.
    p_lumen
        Probability that a lesion (tumour or mimic alike) has a central lumen; a tumour lumen is an
        exclusion region (ASAP group ``_2``).
    mantle_gap_um, mantle_width_um
        Mimic context: the mantle ring of dense small lymphocytes starts ``gap`` microns beyond the
        mimic edge and is ``width`` microns wide. Tumour nests have no ring.
    follicle_radius_um, follicle_density_per_mm2
        Primary follicles: dense lymphocyte clusters without a lesion (decoys for the ring cue).
    fat_lobule_radius_um, fat_cell_radius_um, fat_density_per_mm2
        Fat lobules made of polygonal white adipocytes.
    vessel_radius_um, vessel_length_um, vessel_wall_um, vessel_density_per_mm2
        Vessels: curved tubes with a pink wall and a lumen with red blood cells.
    lymph_spacing_um, lymph_radius_um
        Lymphocyte nuclei: spacing of each of the two interleaved grids, and radius range.
    lesion_spacing_um, lesion_radius_nucleus_um
        Lesion (tumour and mimic) nuclei: spacing of each of the two interleaved grids, and radius
        range (large, vesicular).
    stroma_spacing_um
        Spindle (fibroblast) nuclei grid spacing.
    parenchyma_lymph_density
        Range of the smooth field giving the lymphocyte presence in ordinary tissue.
    fibre_wavelength_um
        Period of the collagen-fibre texture.
    blur_um
        Range of the per-slide scanner blur (Gaussian sigma).
    stain_jitter, intensity_jitter
        Per-slide perturbation of the stain OD vectors and relative range of stain intensities.
    """

    tissue_fraction: float = 0.6
    island_density_per_mm2: float = 0.15
    lesion_radius_um: Range = (40.0, 160.0)
    lesion_irregularity: float = 0.12
    tumour_area_fraction: float = 0.08
    mimic_area_fraction: float = 0.08
    p_tumour_free: float = 0.2
    focus_radius_um: Range = (12.0, 35.0)
    focus_density_per_mm2: float = 3.0
    focus_irregularity: float = 0.25
    p_lumen: float = 0.3
    mantle_gap_um: Range = (8.0, 25.0)
    mantle_width_um: Range = (35.0, 70.0)
    follicle_radius_um: Range = (50.0, 180.0)
    follicle_density_per_mm2: float = 1.0
    fat_lobule_radius_um: Range = (80.0, 250.0)
    fat_cell_radius_um: Range = (15.0, 35.0)
    fat_density_per_mm2: float = 0.6
    vessel_radius_um: Range = (6.0, 25.0)
    vessel_length_um: Range = (150.0, 600.0)
    vessel_wall_um: Range = (4.0, 12.0)
    vessel_density_per_mm2: float = 2.0
    lymph_spacing_um: float = 8.5
    lymph_radius_um: Range = (2.5, 3.3)
    lesion_spacing_um: float = 17.0
    lesion_radius_nucleus_um: Range = (3.8, 5.4)
    stroma_spacing_um: float = 22.0
    parenchyma_lymph_density: Range = (0.05, 0.5)
    fibre_wavelength_um: float = 5.0
    blur_um: Range = (0.1, 0.45)
    stain_jitter: float = 0.06
    intensity_jitter: float = 0.2

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                lo, hi = value
                if not (0 < lo <= hi):
                    raise ConfigError(f"SynthParams.{field.name} must satisfy 0 < low <= high, got {value}")
            elif field.name.startswith(("p_", "tissue_", "tumour_area", "mimic_area")):
                if not (0 <= value <= 1):
                    raise ConfigError(f"SynthParams.{field.name} must be in [0, 1], got {value}")
            elif value < 0:
                raise ConfigError(f"SynthParams.{field.name} must be >= 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthParams:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown SynthParams fields: {', '.join(unknown)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)
