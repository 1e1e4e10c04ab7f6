"""Embeddings computed in this process with the ``sentence-transformers`` library."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveInt, PrivateAttr

from alambic.embeddings.base import Embeddings
from alambic.errors import ModelNotAvailableError
from alambic.runtime_parameters import RuntimeParameter
from alambic.utils.imports import require


class SentenceTransformerEmbeddings(Embeddings):
    """A ``sentence-transformers`` model (Reimers & Gurevych, 2019, "Sentence-BERT").

    ``model`` is a local folder or a Hugging Face hub id. With ``normalize_embeddings`` (the
    default) every vector has unit norm, so an inner product is the cosine similarity: the
    form :class:`~alambic.steps.FaissNearestNeighbour` and the dedup/diversity filters expect.
    Models trained with instructions (E5, BGE, GTE...) take ``prompts`` such as
    ``{"query": "query: "}``; ``prompt_name`` picks the one prepended to every text.

    Runs on the CPU unless ``device`` says otherwise (``"cuda"``, ``"mps"``...). ``encode`` may
    be called from several threads: calls are serialized on one lock.
    """

    model: str = Field(description="Local folder or Hugging Face hub id.")
    revision: str | None = None
    device: str | None = "cpu"
    prompts: dict[str, str] | None = Field(
        default=None, description="Named prefixes, e.g. {'query': 'query: '}."
    )
    default_prompt_name: str | None = Field(
        default=None, description="Key of `prompts` used when `prompt_name` is not set."
    )
    prompt_name: RuntimeParameter[str] = Field(
        default=None, description="Key of `prompts` prepended to every text."
    )
    normalize_embeddings: RuntimeParameter[bool] = Field(
        default=True, description="Scale every embedding to unit length (cosine = dot product)."
    )
    batch_size: RuntimeParameter[PositiveInt] = Field(
        default=32, description="Texts embedded together in one forward pass."
    )
    truncate_dim: PositiveInt | None = Field(
        default=None, description="Keep only the first dimensions (Matryoshka models)."
    )
    trust_remote_code: bool = False
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    _model: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def model_name(self) -> str:
        return self.model

    @property
    def dimensions(self) -> int:
        """Length of every embedding (the model must be loaded)."""
        model = self._require_model()
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        return int(get_dim())

    def load(self) -> None:
        if self._model is not None:
            return
        st = require(
            "sentence_transformers",
            feature="SentenceTransformerEmbeddings",
            extra="sentence-transformers",
            package="sentence-transformers",
        )
        is_local = Path(self.model).expanduser().exists()
        try:
            model = st.SentenceTransformer(
                str(Path(self.model).expanduser()) if is_local else self.model,
                device=self.device,
                prompts=self.prompts,
                default_prompt_name=self.default_prompt_name,
                revision=self.revision,
                trust_remote_code=self.trust_remote_code,
                truncate_dim=self.truncate_dim,
                model_kwargs=self.model_kwargs or None,
            )
        except OSError as exc:
            if is_local:
                raise ModelNotAvailableError(
                    f"Could not load the sentence-transformers model in {self.model!r}: {exc}"
                ) from exc
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            raise ModelNotAvailableError(
                f"Could not download the embedding model {self.model!r} from the Hugging Face "
                "Hub"
                + (" (HF_HUB_OFFLINE=1 is set)" if offline else " (no network, or no access)")
                + ". Download it where the Hub is reachable (`hf download "
                f"{self.model} --local-dir ./embedder`) and pass the folder instead."
            ) from exc
        model.eval()
        self._model = model
        super().load()

    def unload(self) -> None:
        self._model = None
        super().unload()

    def encode(self, inputs: list[str]) -> list[list[float]]:
        model = self._require_model()
        if not inputs:
            return []
        if self.prompt_name is not None:
            self._check_prompt_name(model, self.prompt_name)
        with self._lock:
            vectors = model.encode(
                list(inputs),
                prompt_name=self.prompt_name,
                batch_size=self.batch_size or 32,
                normalize_embeddings=bool(self.normalize_embeddings),
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        result: list[list[float]] = vectors.astype("float32").tolist()
        return result

    def _require_model(self) -> Any:
        if self._model is None:
            raise RuntimeError(
                f"SentenceTransformerEmbeddings({self.model!r}) is not loaded: call load() first "
                "(a pipeline does it for you)."
            )
        return self._model

    def _check_prompt_name(self, model: Any, name: str) -> None:
        known = sorted(getattr(model, "prompts", None) or {})
        if name not in known:
            raise ValueError(
                f"SentenceTransformerEmbeddings({self.model!r}): prompt_name={name!r} is not one "
                f"of the model's prompts {known or '(it has none)'}. Pass "
                f"prompts={{{name!r}: '<prefix>'}} or pick a known name."
            )


__all__ = ["SentenceTransformerEmbeddings"]
