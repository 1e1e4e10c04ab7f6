"""Clustering of embeddings: ``UMAP`` projects them, ``DBSCAN`` groups the projections, and
``alambic.steps.tasks.TextClustering`` names each group with an LLM.

umap-learn and scikit-learn are optional: ``pip install "alambic[clustering]"``. They are
imported when a step loads, never by ``import alambic``.
"""

from __future__ import annotations

from alambic.steps.clustering.dbscan import DBSCAN
from alambic.steps.clustering.umap import UMAP

__all__ = ["DBSCAN", "UMAP"]
