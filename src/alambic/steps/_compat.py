"""Parts of distilabel's public ``Step`` API that alambic keeps for code written against it:
``is_generator`` / ``is_global`` / ``is_normal``, ``verify_inputs_mappings()`` /
``verify_outputs_mappings()``, ``get_runtime_parameters_info()`` and ``save_artifact()``.

Mixed into every step by ``alambic.steps.base._Step``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alambic.errors import MappingError
from alambic.runtime_parameters import RuntimeParameterDefaults, runtime_parameter_names

logger = logging.getLogger("alambic")

ARTIFACTS_FOLDER = "artifacts"
"""Under a pipeline's folder: ``artifacts/<step name>/<artifact name>/``."""


class StepCompatMixin(RuntimeParameterDefaults):
    """distilabel's step introspection, on top of alambic's ``_Step`` (no annotations here:
    pydantic would read them as fields of every step)."""

    @property
    def is_generator(self) -> bool:
        """A step with no predecessors that produces rows (``GeneratorStep``)."""
        return bool(getattr(type(self), "_is_generator", False))

    @property
    def is_global(self) -> bool:
        """A step that receives all its input rows in one batch (``GlobalStep``)."""
        return bool(getattr(type(self), "_is_global", False))

    @property
    def is_normal(self) -> bool:
        """Neither a generator nor a global step."""
        return not (self.is_generator or self.is_global)

    def verify_inputs_mappings(self) -> None:
        """Raise ``MappingError`` if ``input_mappings`` names a column the step lacks."""
        mapping: dict[str, str] = getattr(self, "input_mappings", {})
        self._verify_mapping("input_mappings", mapping, self._declared("inputs"))

    def verify_outputs_mappings(self) -> None:
        """Raise ``MappingError`` if ``output_mappings`` names a column the step lacks."""
        mapping: dict[str, str] = getattr(self, "output_mappings", {})
        self._verify_mapping("output_mappings", mapping, self._declared("outputs"))

    def _declared(self, which: str) -> list[str]:
        getter = "own_inputs" if which == "inputs" else "own_outputs"
        return list(getattr(self, getter)())  # a dict of column -> required

    def _verify_mapping(self, label: str, mapping: dict[str, str], columns: list[str]) -> None:
        unknown = [key for key in mapping if key not in columns]
        if unknown:
            raise MappingError(
                f"Step {getattr(self, 'name', None)!r} ({type(self).__name__}): {label} keys "
                f"{unknown} are not "
                f"among its columns {columns}."
            )

    def get_runtime_parameters_info(self) -> list[dict[str, Any]]:
        """The runtime parameters, as distilabel lists them: ``{"name", "optional",
        "description"}`` each, and ``{"name", "runtime_parameters_info": [...]}`` for a
        component such as the LLM."""
        assert isinstance(self, BaseModel)
        return runtime_parameters_info(self)

    def artifacts_directory(self) -> Path | None:
        """Where this step's artifacts go (``None`` outside a pipeline)."""
        folder = getattr(getattr(self, "pipeline", None), "artifacts_directory", None)
        if folder is None:
            return None
        path: Path = Path(folder) / str(getattr(self, "name", None))
        return path

    def save_artifact(
        self,
        name: str,
        write_function: Callable[[Path], None],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Save a file artifact (a plot, a model, an index) that ships with the Distiset.

        ``write_function(path)`` writes whatever it wants into the folder ``path``
        (``<artifacts>/<step>/<name>/artifacts``); ``metadata`` is saved beside it as
        ``metadata.json``. The Distiset of the run carries the folder
        (``distiset.artifacts_path``) and ``save_to_disk`` copies it. Outside a pipeline
        nothing is saved and a warning says so.
        """
        base = self.artifacts_directory()
        if base is None:
            logger.warning(
                "Step %r is not part of a pipeline with a run folder: artifact %r is not saved.",
                getattr(self, "name", None),
                name,
            )
            return
        folder = base / name
        target = folder / "artifacts"
        target.mkdir(parents=True, exist_ok=True)
        write_function(target)
        (folder / "metadata.json").write_text(
            json.dumps(metadata or {}, indent=2, default=str), encoding="utf-8"
        )


def runtime_parameters_info(model: BaseModel) -> list[dict[str, Any]]:
    """distilabel's ``get_runtime_parameters_info()`` list for any step or LLM."""
    info: list[dict[str, Any]] = []
    fields = type(model).model_fields
    for name, required in runtime_parameter_names(model).items():
        if isinstance(required, dict):
            nested = getattr(model, name)
            info.append({"name": name, "runtime_parameters_info": runtime_parameters_info(nested)})
            continue
        entry: dict[str, Any] = {"name": name, "optional": not required}
        description = fields[name].description
        if description:
            entry["description"] = description
        info.append(entry)
    return info


__all__ = ["ARTIFACTS_FOLDER", "StepCompatMixin", "runtime_parameters_info"]
