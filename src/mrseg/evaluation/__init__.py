"""Evaluation: prediction records + ground truth -> pixel-level metrics, ``metrics.json``/``.csv``, figures.

The modules, in the order an evaluation uses them:

- :mod:`~mrseg.evaluation.settings`: :class:`EvaluateSettings` (evaluation mpp, pixels that count, bins);
- :mod:`~mrseg.evaluation.truth`: finding the ground truth of each slide and reading it with the label spec;
- :mod:`~mrseg.evaluation.plan`: the checked plan (slide sets, one label spec, panels);
- :mod:`~mrseg.evaluation.maps`: sampling the prediction maps (foreground, classes, labels) onto a grid;
- :mod:`~mrseg.evaluation.metrics`: streaming histograms (ROC/AUC), confusion matrices, per-class scores;
- :mod:`~mrseg.evaluation.scores`: what one model accumulates per slide and pooled;
- :mod:`~mrseg.evaluation.evaluate`: :func:`evaluate`, the strip loop over each slide's evaluation grid;
- :mod:`~mrseg.evaluation.report`, :mod:`~mrseg.evaluation.plots`, :mod:`~mrseg.evaluation.panel`: outputs.

See ``docs/evaluation.md``.
"""
