"""The base class of embedding models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr

from alambic.runtime_parameters import (
    runtime_parameter_names,
    set_runtime_parameters,
    unknown_policy,
)
from alambic.utils.serialization import dump_component


class Embeddings(BaseModel, ABC):
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

    @property
    def runtime_parameters_names(self) -> dict[str, Any]:
        return runtime_parameter_names(self)

    def set_runtime_parameters(self, params: dict[str, Any], *, strict: bool = False) -> None:
        """Set runtime parameters; an unknown name warns with a did-you-mean (as distilabel
        does), or raises ``RuntimeParameterError`` with ``strict=True``."""
        set_runtime_parameters(
            self,
            params,
            owner=type(self).__name__,
            unknown=unknown_policy(strict, None),
            stacklevel=3,
        )

    def dump(self) -> dict[str, Any]:
        """Plain data describing the model, for YAML and signatures."""
        return dump_component(self)


__all__ = ["Embeddings"]
