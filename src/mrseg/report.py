"""``python -m mrseg.report DIR [DIR ...]``: aggregate the ``results.json`` of several demo runs.

The implementation is :mod:`mrseg.demo.seeds`; this module only keeps the documented command short.
"""

from __future__ import annotations

import sys

from mrseg.demo.seeds import main

if __name__ == "__main__":
    sys.exit(main())
