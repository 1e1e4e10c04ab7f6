"""alambic: build datasets with and for LLMs, fast and crash-safe.

``import alambic`` is cheap: LLM SDKs, torch, transformers and datasets are imported only by
the parts that use them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
