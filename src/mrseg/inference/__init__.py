"""Whole-slide inference, in the order of the data's trip (MONAI's ``PatchInferer`` split into its parts).

- :mod:`.settings`: :class:`~.settings.PredictSettings` (torch-free: the CLI reuses its defaults)
- :mod:`.splitter`: the tile grid over the tissue (pure geometry)
- :mod:`.reader`: loader threads reading the tiles' concentric patches chunk by chunk
- :mod:`.predictor`: pre-processing, the model, post-processing (the class rule)
- :mod:`.merger`: the :class:`~.merger.Merger` interface and the on-disk merger
- :mod:`.inferer`: :func:`~.inferer.predict_slide`, the above for one slide
- :mod:`.writers`: one :class:`~.writers.base.Writer` per output (TIFF maps, label map, overlay, GeoJSON, record)
- :mod:`.runner`: :func:`~.runner.run_slide`, one slide predicted and written, resumably and atomically
- :mod:`.cluster`: :func:`~.cluster.predict_slides`, many slides locally or on Dask
"""
