"""The embedded data set: synthetic lymph-node-like H&E slides whose labels need context.

``generate(out_dir, n_slides, seed)`` writes pyramidal slides, ASAP annotations, label masks and a
manifest (see :mod:`mrseg.synth.writer`); geometry is drawn in microns by :mod:`mrseg.synth.layout`
and rendered by :mod:`mrseg.synth.render`; :mod:`mrseg.synth.labels` draws the labels (binary:
tumour 1, the rest 0; or multi-class: tumour 1, lymphoid 2, other tissue 3, glass 0). Tumour nests
and mimics look alike inside; only a wider field of view shows the mantle ring around mimics. See
``docs/synthetic.md``.
"""

from __future__ import annotations

from mrseg.synth.asap import write_asap_xml
from mrseg.synth.labels import LABEL_SCHEMES, MULTICLASS_CLASSES, LabelScheme, annotation_groups, label_mask
from mrseg.synth.layout import Lesion, SlideLayout, make_layout
from mrseg.synth.params import SynthParams
from mrseg.synth.render import class_raster, render, sample_stain
from mrseg.synth.writer import assign_splits, generate, generate_slide, parse_split

__all__ = [
    "LABEL_SCHEMES",
    "MULTICLASS_CLASSES",
    "LabelScheme",
    "Lesion",
    "SlideLayout",
    "SynthParams",
    "annotation_groups",
    "assign_splits",
    "class_raster",
    "generate",
    "generate_slide",
    "label_mask",
    "make_layout",
    "parse_split",
    "render",
    "sample_stain",
    "write_asap_xml",
]
