"""H&E-like rendering of a :class:`~mrseg.synth.layout.SlideLayout` into level-0 RGB pixels.

Model: every pixel gets a haematoxylin and an eosin concentration; the colour is Beer-Lambert,
``rgb = white * exp(-(H * h_od + E * e_od))``, with per-slide stain vectors, intensities, white
level and scanner blur (the stain and scanner variation).

- A **class raster** (glass, parenchyma, mantle, lesion, void, vessel wall, vessel lumen) is drawn
  once at level 0 from the layout's polygons (pixel-centre rule, :mod:`mrseg.synth.raster`).
- **Background stain** per class, modulated by smooth fields and a wavy collagen-fibre texture.
- **Nuclei** are drawn from jittered, randomly rotated cell grids ("layers"): each grid cell holds
  at most one nucleus with its own offset, radius, elongation, orientation and intensity, present
  with a probability that depends on the class at the nucleus centre. Every pixel only looks up the
  nucleus of its own cell, so rendering is a fixed number of vectorised array operations per pixel.
  Tumour nests and mimics use the *same* lesion layer: their interiors share nucleus size, density
  and colour statistics by construction.

Rendering runs in horizontal strips (with a margin for the blur) so memory stays bounded.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mrseg.synth.layout import SlideLayout
from mrseg.synth.params import SynthParams
from mrseg.synth.raster import paint

GLASS, PARENCHYMA, MANTLE, LESION, VOID, WALL, LUMEN = range(7)
CLASS_NAMES = ("glass", "parenchyma", "mantle", "lesion", "void", "vessel_wall", "vessel_lumen")

#                          glass parenchyma mantle lesion void  wall  lumen
_E_BASE = np.array([0.00, 0.42, 0.22, 0.40, 0.04, 0.70, 0.10], dtype=np.float32)
_H_BASE = np.array([0.00, 0.05, 0.10, 0.12, 0.00, 0.04, 0.00], dtype=np.float32)
_FIBRE = np.array([0.00, 0.30, 0.03, 0.00, 0.00, 0.40, 0.00], dtype=np.float32)

_FIELD_UM = 8.0  # grid step of the smooth fields, microns
_STRIP_ROWS = 512
_BLUR_TRUNCATE = 2.5  # Gaussian kernel radius in sigmas (>98 % of the weight)


@dataclass(frozen=True)
class Stain:
    """Per-slide stain and scanner appearance."""

    h_od: tuple[float, float, float]
    e_od: tuple[float, float, float]
    h_scale: float
    e_scale: float
    white: tuple[float, float, float]
    blur_um: float
    fibre_angle: float


def sample_stain(rng: np.random.Generator, params: SynthParams) -> Stain:
    """Draw one slide's stain vectors (OD per unit concentration), intensities, white level and blur."""
    h = np.array([0.65, 0.70, 0.29]) + rng.normal(scale=params.stain_jitter, size=3)
    e = np.array([0.14, 0.92, 0.32]) + rng.normal(scale=params.stain_jitter, size=3)
    h = np.clip(h, 0.05, None)
    e = np.clip(e, 0.02, None)
    j = params.intensity_jitter
    white = rng.uniform(238.0, 252.0) + rng.uniform(-3.0, 3.0, size=3)
    return Stain(
        h_od=tuple(float(v) for v in h / np.linalg.norm(h)),  # type: ignore[arg-type]
        e_od=tuple(float(v) for v in e / np.linalg.norm(e)),  # type: ignore[arg-type]
        h_scale=float(rng.uniform(1 - j, 1 + j)),
        e_scale=float(rng.uniform(1 - j, 1 + j)),
        white=tuple(float(v) for v in white),  # type: ignore[arg-type]
        blur_um=float(rng.uniform(*params.blur_um)),
        fibre_angle=float(rng.uniform(0, np.pi)),
    )


def class_raster(layout: SlideLayout, size_px: tuple[int, int], mpp: float) -> np.ndarray:
    """Rasterise the layout's structures into a ``uint8 (H, W)`` class map at level 0 (``mpp`` um/px)."""
    width, height = size_px
    out = np.zeros((height, width), dtype=np.uint8)
    paint(out, layout.tissue, PARENCHYMA, mpp)
    for follicle in layout.follicles:
        paint(out, follicle, MANTLE, mpp)
    for lesion in layout.lesions:
        if lesion.ring is not None:
            paint(out, lesion.ring, MANTLE, mpp)
    for lesion in layout.lesions:
        paint(out, lesion.polygon, LESION, mpp)
        if lesion.lumen is not None:
            paint(out, lesion.lumen, VOID, mpp)
    for cells in layout.fat_cells:
        paint(out, cells, VOID, mpp)
    for wall in layout.vessel_walls:
        paint(out, wall, WALL, mpp)
    for lumen in layout.vessel_lumens:
        paint(out, lumen, LUMEN, mpp)
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_um: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field on the ``_FIELD_UM`` grid."""
    noise = rng.standard_normal(shape).astype(np.float32)
    field = ndimage.gaussian_filter(noise, sigma_um / _FIELD_UM, mode="wrap")
    return ((field - field.mean()) / max(float(field.std()), 1e-6)).astype(np.float32)


def _sample_rows(field: np.ndarray, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
    """Bilinear samples of a ``_FIELD_UM`` grid field on the pixel grid ``ys_um x xs_um`` -> (len(ys), len(xs))."""

    def weights(coord: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        f = np.clip(coord / _FIELD_UM - 0.5, 0, n - 1.001)
        i = f.astype(np.int64)
        return i, (f - i).astype(np.float32)

    iy, wy = weights(ys_um, field.shape[0])
    rows = field[iy] * (1 - wy)[:, None] + field[iy + 1] * wy[:, None]
    ix, wx = weights(xs_um, field.shape[1])
    return rows[:, ix] * (1 - wx) + rows[:, ix + 1] * wx


def _sample_points(field: np.ndarray, x_um: np.ndarray, y_um: np.ndarray) -> np.ndarray:
    coords = np.stack([y_um / _FIELD_UM - 0.5, x_um / _FIELD_UM - 0.5])
    return ndimage.map_coordinates(field, coords, order=1, mode="nearest")


@dataclass(frozen=True)
class _LayerSpec:
    spacing_um: float
    radius_um: tuple[float, float]
    aspect: tuple[float, float]
    presence: tuple[float, ...]  # per class; parenchyma may be scaled by the lymph field
    h: float
    e: float
    vesicular: bool = False
    lymph_field: bool = False
    grids: int = 1  # interleaved grids (each its own rotation) to break the lattice


class _NucleusLayer:
    """One jittered, rotated grid of nuclei with per-cell parameters (microns)."""

    def __init__(
        self,
        spec: _LayerSpec,
        rng: np.random.Generator,
        classes: np.ndarray,
        mpp: float,
        lymph: np.ndarray,
    ) -> None:
        self.spec = spec
        height, width = classes.shape
        w_um, h_um = width * mpp, height * mpp
        angle = rng.uniform(0, np.pi / 2)
        self.c, self.s = math.cos(angle), math.sin(angle)
        corners = np.array([[0, 0], [w_um, 0], [0, h_um], [w_um, h_um]])
        u = corners[:, 0] * self.c + corners[:, 1] * self.s
        v = -corners[:, 0] * self.s + corners[:, 1] * self.c
        sp = spec.spacing_um
        self.u0 = math.floor(u.min() / sp)
        self.v0 = math.floor(v.min() / sp)
        self.nu = math.floor(u.max() / sp) - self.u0 + 1
        nv = math.floor(v.max() / sp) - self.v0 + 1
        n = self.nu * nv
        radius = rng.uniform(*spec.radius_um, size=n)
        aspect = rng.uniform(*spec.aspect, size=n)
        rx, ry = radius * aspect, radius / aspect
        slack = np.maximum(sp / 2 - np.maximum(rx, ry), 0.0)
        ju = rng.uniform(-1, 1, size=n) * slack
        jv = rng.uniform(-1, 1, size=n) * slack
        theta = rng.uniform(0, np.pi, size=n)
        amp = rng.uniform(0.85, 1.15, size=n)
        draw = rng.random(size=n)
        iu, iv = np.meshgrid(np.arange(self.nu) + self.u0, np.arange(nv) + self.v0)
        cu = (iu.ravel() + 0.5) * sp + ju
        cv = (iv.ravel() + 0.5) * sp + jv
        cx = cu * self.c - cv * self.s
        cy = cu * self.s + cv * self.c
        col = np.clip((cx / mpp).astype(np.int64), 0, width - 1)
        row = np.clip((cy / mpp).astype(np.int64), 0, height - 1)
        inside = (cx >= 0) & (cy >= 0) & (cx < w_um) & (cy < h_um)
        cls = np.where(inside, classes[row, col], GLASS)
        prob = np.asarray(spec.presence, dtype=np.float64)[cls]
        if spec.lymph_field:
            prob = np.where(cls == PARENCHYMA, _sample_points(lymph, cx, cy), prob)
        self.strength = np.where(draw < prob, amp, 0.0).astype(np.float32)
        self.ju, self.jv = ju.astype(np.float32), jv.astype(np.float32)
        self.irx, self.iry = (1 / rx).astype(np.float32), (1 / ry).astype(np.float32)
        self.ca, self.sa = np.cos(theta).astype(np.float32), np.sin(theta).astype(np.float32)
        self.sharp = (radius / 0.35).astype(np.float32)  # edge ramp of ~0.35 um

    def draw(self, xs_um: np.ndarray, ys_um: np.ndarray) -> np.ndarray:
        """Nucleus intensity in [0, ~1.15] for the pixel grid ``ys_um x xs_um`` -> float32 (rows, cols)."""
        sp = self.spec.spacing_um
        u = xs_um[None, :] * self.c + ys_um[:, None] * self.s
        v = ys_um[:, None] * self.c - xs_um[None, :] * self.s
        iu = np.floor(u / sp)
        iv = np.floor(v / sp)
        du = u - (iu + 0.5) * sp
        dv = v - (iv + 0.5) * sp
        cell = (iv.astype(np.int64) - self.v0) * self.nu + (iu.astype(np.int64) - self.u0)
        strength = self.strength[cell]
        out = np.zeros(u.shape, dtype=np.float32)
        keep = np.flatnonzero(strength)
        if keep.size == 0:
            return out
        if keep.size < 0.6 * strength.size:  # sparse layer: work on the cells that hold a nucleus
            cell, strength, du, dv = cell.ravel()[keep], strength.ravel()[keep], du.ravel()[keep], dv.ravel()[keep]
        else:
            keep = None  # type: ignore[assignment]
        du -= self.ju[cell]
        dv -= self.jv[cell]
        ca, sa = self.ca[cell], self.sa[cell]
        a = (du * ca + dv * sa) * self.irx[cell]
        b = (dv * ca - du * sa) * self.iry[cell]
        d = np.sqrt(a * a + b * b)
        profile = np.clip((1 - d) * self.sharp[cell], 0, 1)
        if self.spec.vesicular:
            # vesicular nucleus: dark membrane, pale chromatin, small central nucleolus
            rim = np.clip((d - 0.55) / 0.3, 0, 1)
            nucleolus = np.clip((0.22 - d) / 0.08, 0, 1)
            profile *= 0.4 + 0.6 * np.maximum(rim, nucleolus)
        if keep is None:
            return (profile * strength).astype(np.float32)
        out.reshape(-1)[keep] = profile * strength
        return out


def _layer_specs(p: SynthParams) -> list[_LayerSpec]:
    #             glass parenchyma mantle lesion void wall lumen
    mantle = (0.0, 0.0, 0.7, 0.0, 0.0, 0.0, 0.0)
    lesion = (0.0, 0.0, 0.0, 0.85, 0.0, 0.0, 0.0)
    spindle = (0.0, 0.35, 0.0, 0.0, 0.0, 0.7, 0.0)
    blood = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.55)
    return [
        _LayerSpec(
            p.lymph_spacing_um, p.lymph_radius_um, (1.0, 1.15), mantle, h=1.25, e=0.0, lymph_field=True, grids=2
        ),
        _LayerSpec(
            p.lesion_spacing_um, p.lesion_radius_nucleus_um, (1.0, 1.3), lesion, h=1.1, e=0.0, vesicular=True, grids=2
        ),
        _LayerSpec(p.stroma_spacing_um, (2.0, 2.5), (2.2, 3.5), spindle, h=0.9, e=0.0),
        _LayerSpec(7.5, (3.0, 3.5), (1.0, 1.15), blood, h=0.0, e=0.9),
    ]


def render(
    layout: SlideLayout,
    classes: np.ndarray,
    mpp: float,
    stain: Stain,
    params: SynthParams,
    seed: tuple[int, ...],
    threads: int = 1,
) -> np.ndarray:
    """Render level 0 of a slide as ``uint8 (H, W, 3)`` RGB.

    Parameters
    ----------
    layout
        The slide's geometry (microns).
    classes
        Its class raster at level 0 (:func:`class_raster`).
    mpp
        Microns per level-0 pixel.
    stain
        Per-slide appearance (:func:`sample_stain`).
    params
        Generator parameters.
    seed
        Entropy for this slide's texture (e.g. ``(seed, index)``); each strip's pixel noise is
        seeded from ``(*seed, strip)`` so the output does not depend on the strip order.
    threads
        Strips rendered concurrently (the output is identical for any value).
    """
    height, width = classes.shape
    rng = np.random.default_rng([*seed, 7919])
    field_shape = (math.ceil(height * mpp / _FIELD_UM) + 2, math.ceil(width * mpp / _FIELD_UM) + 2)
    lo, hi = params.parenchyma_lymph_density
    # lymphocyte presence per grid (two grids): a smooth field mapped into [lo, hi] / 2 each
    lymph = (lo + (hi - lo) / (1 + np.exp(-1.5 * _smooth_field(rng, field_shape, 60.0)))) / 2
    e_mod = _smooth_field(rng, field_shape, 30.0)
    warp = _smooth_field(rng, field_shape, 25.0)
    fibre_amp = 1 / (1 + np.exp(-2 * _smooth_field(rng, field_shape, 80.0)))
    layers = [
        (spec, _NucleusLayer(spec, rng, classes, mpp, lymph))
        for spec in _layer_specs(params)
        for _grid in range(spec.grids)
    ]
    h_od = np.asarray(stain.h_od, dtype=np.float32) * stain.h_scale
    e_od = np.asarray(stain.e_od, dtype=np.float32) * stain.e_scale
    white = np.asarray(stain.white, dtype=np.float32)
    blur_px = stain.blur_um / mpp
    margin = math.ceil(_BLUR_TRUNCATE * blur_px) if blur_px > 0.3 else 0
    ca, sa = math.cos(stain.fibre_angle), math.sin(stain.fibre_angle)
    xs_um = ((np.arange(width) + 0.5) * mpp).astype(np.float32)
    out = np.empty((height, width, 3), dtype=np.uint8)

    def render_strip(strip: int) -> None:
        y0 = strip * _STRIP_ROWS
        y1 = min(height, y0 + _STRIP_ROWS)
        r0, r1 = max(0, y0 - margin), min(height, y1 + margin)
        ys_um = ((np.arange(r0, r1) + 0.5) * mpp).astype(np.float32)
        cls = classes[r0:r1]
        noise_rng = np.random.default_rng([*seed, 104729, strip])
        n_h = noise_rng.standard_normal(cls.shape, dtype=np.float32)
        n_e = noise_rng.standard_normal(cls.shape, dtype=np.float32)
        psi = xs_um[None, :] * ca + ys_um[:, None] * sa + 20.0 * _sample_rows(warp, xs_um, ys_um)
        fibres = 0.5 + 0.5 * np.sin(psi * (2 * np.pi / params.fibre_wavelength_um))
        fibres *= fibres
        fibres *= fibres
        # break fibres into bundles of finite length along their direction
        along = ys_um[:, None] * ca - xs_um[None, :] * sa + 30.0 * _sample_rows(e_mod, xs_um, ys_um)
        fibres *= 0.45 + 0.55 * np.sin(along * (2 * np.pi / (9 * params.fibre_wavelength_um))) ** 2
        fibres -= 0.15
        fibres *= _FIBRE[cls] * _sample_rows(fibre_amp, xs_um, ys_um)
        e_conc = (_E_BASE[cls] + fibres) * (1 + 0.12 * _sample_rows(e_mod, xs_um, ys_um)) + 0.02 * n_e
        nuc_h = np.zeros(cls.shape, dtype=np.float32)
        for spec, layer in layers:
            value = layer.draw(xs_um, ys_um)
            if spec.h:
                np.maximum(nuc_h, value * spec.h, out=nuc_h)
            if spec.e:
                e_conc += value * spec.e
        h_conc = _H_BASE[cls] + nuc_h * (1 + 0.2 * n_h) + 0.01 * n_h
        tissue = cls != GLASS
        h_conc *= tissue
        e_conc *= tissue
        for c in range(3):
            od = h_conc * h_od[c] + e_conc * e_od[c]
            channel = white[c] * np.exp(-np.maximum(od, -0.02))
            if margin:
                channel = ndimage.gaussian_filter(channel, blur_px, mode="nearest", truncate=_BLUR_TRUNCATE)
            out[y0:y1, :, c] = np.clip(np.rint(channel[y0 - r0 : y1 - r0]), 0, 255).astype(np.uint8)

    n_strips = math.ceil(height / _STRIP_ROWS)
    if threads > 1:  # numpy and scipy release the GIL in the heavy array operations
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(render_strip, range(n_strips)))
    else:
        for strip in range(n_strips):
            render_strip(strip)
    return out
