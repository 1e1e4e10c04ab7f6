"""The base class of embedding models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from alambic.runtime_parameters import RuntimeParameters
from alambic.utils.serialization import dump_component


class Embeddings(RuntimeParameters, BaseModel, ABC):
    """A model that maps each text to a fixed-size vector of floats.

    A backend implements ``model_name`` and ``encode``, and loads its weights in ``load`` (not
    in the constructor), so a pipeline can be built, validated and serialized without loading
    any model. ``encode`` returns plain lists of floats, one per input and in the same order,
    which is what a dataset column can hold.
    """

    model_config = ConfigDict(
        arbitrary_types_allowed=True,
        validate_assignment=True,
        extra="forbid",
        protected_namespaces=(),
    )

    _loaded: bool = PrivateAttr(default=False)

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The model's name, written into every row this model embeds."""

    def load(self) -> None:
        """Load the weights. Idempotent."""
        self._loaded = True

    def unload(self) -> None:
        """Release what ``load`` took."""
        self._loaded = False

    @abstractmethod
    def encode(self, inputs: list[str]) -> list[list[float]]:
        """One embedding per text of ``inputs``, in order."""

    def dump(self) -> dict[str, Any]:
        """Plain data describing the model, for YAML and signatures."""
        return dump_component(self)


__all__ = ["Embeddings"]
