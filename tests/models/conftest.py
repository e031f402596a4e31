"""Model tests never reach a network: Hugging Face lookups stay in the local cache."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
