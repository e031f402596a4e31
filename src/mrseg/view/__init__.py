"""``mrseg view``: slides, probability maps and annotations in the browser, model beside model.

The trip's last stop: it reads what the others wrote (slides through :mod:`mrseg.wsi`, prediction
records through :mod:`mrseg.core.prediction_record`, maps as TIFFs, annotations through
:mod:`mrseg.wsi.annotations`) and never writes. Modules:

- :mod:`~mrseg.view.catalog`: the slides, predictions and truth served, by id, checked at start-up;
- :mod:`~mrseg.view.deepzoom`: the Deep Zoom pyramid (pure geometry on the read grid);
- :mod:`~mrseg.view.maps`: probability maps laid over their slide, read on any grid;
- :mod:`~mrseg.view.render`: slide tiles (JPEG) and overlays (colormap, threshold; PNG);
- :mod:`~mrseg.view.outlines`: ground-truth outlines and predicted contours;
- :mod:`~mrseg.view.pool`: handle pools and the bounded tile cache;
- :mod:`~mrseg.view.service`: the answers by id; :mod:`~mrseg.view.app`: their routes (Starlette);
- :mod:`~mrseg.view.server`: binding and serving (uvicorn); :mod:`~mrseg.view.assets`: the front end;
- :mod:`~mrseg.view.browser`: headless Chromium driving the viewer (tests, screenshots; needs selenium);
- :mod:`~mrseg.view.settings`: the defaults (host, port, cache), light enough for the CLI.

Example
-------
>>> from mrseg.view.catalog import build_catalog                                  # doctest: +SKIP
>>> from mrseg.view.server import ViewServer                                      # doctest: +SKIP
>>> catalog = build_catalog("slides/", {"mrn": "preds/mrn"}, "annotations/")  # doctest: +SKIP
>>> server = ViewServer(catalog, port=0); print(server.url); server.serve()      # doctest: +SKIP
"""
