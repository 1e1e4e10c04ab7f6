"""TextClustering: name each cluster of texts with an LLM.

The last step of a topic-discovery pipeline in the manner of BERTopic (Grootendorst, 2022,
"BERTopic: Neural topic modeling with a class-based TF-IDF procedure",
https://arxiv.org/abs/2203.05794), with the class-based keywords replaced by an LLM that reads
a sample of each cluster's texts, as in Wan et al., 2024, "TnT-LLM: Text Mining at Scale with
Large Language Models" (https://arxiv.org/abs/2403.12173). Embeddings come from
``EmbeddingGeneration``, ``UMAP`` projects them and ``DBSCAN`` finds the clusters.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from typing import Any, ClassVar

from pydantic import Field, PositiveInt, model_validator
from typing_extensions import Self

from alambic.errors import METADATA_COLUMN, ColumnTypeError
from alambic.llms.typing import ChatType, GenerateOutput
from alambic.steps.checks import require_text
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._parsing import ReplyParseError, extract_json_object, preview
from alambic.steps.tasks.base import Task
from alambic.steps.tasks.text_classification import check_default_label, classification_values
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput


class TextClustering(LenientFormatOutput, Task):
    """Write ``summary_label``: an LLM-written label for the cluster each row belongs to.

    A global task: it sees every row, groups them by ``cluster_label``, shows the LLM up to
    ``samples_per_cluster`` texts of each cluster (drawn with ``seed``) and asks for a short
    label (``n`` > 1: a list of up to ``n`` labels), one request per cluster. As in
    distilabel, ``summary_label`` holds the labels as JSON text: ``'"Cooking"'`` (``n`` = 1)
    or ``'["Cooking", "Baking"]'``; ``json.loads`` gives the label or the list back. Rows of
    the noise cluster (``-1``) get ``default_label`` (as JSON text, whatever ``n``: a string
    default gives ``'"Unclassified"'``, a list default its list) without a request. A cluster
    whose reply cannot be read leaves ``summary_label`` ``None`` on its rows, with the reason
    in ``alambic_metadata``. ``projection`` is read when present (kept for plots), not needed.

    The prompt is ``templates/text_clustering/user.jinja2``, which ``load()`` puts in the
    task's ``_template``; a template a subclass assigns there in ``load()`` replaces it and is
    rendered with :class:`TextClassification`'s variables (distilabel's TextClustering renders
    that template: ``text`` holds the cluster's sampled texts, numbered), plus ``texts`` (the
    list) and ``n``.
    """

    n: PositiveInt = Field(default=1, description="Labels per cluster (1: a single string).")
    samples_per_cluster: PositiveInt = Field(default=10, description="Texts shown per cluster.")
    context: str = Field(default="", description="What the texts are, shown to the model.")
    query_title: str = Field(default="Text", description="What a text is called in the prompt.")
    default_label: str | list[str] = Field(
        default="Unclassified",
        description="Label of the noise cluster (-1); n > 1: may be a list of up to n labels.",
    )
    seed: int = Field(default=42, description="Seed of the texts drawn per cluster.")
    system_prompt: str | None = Field(default=None, description="Optional system message.")

    _is_global: ClassVar[bool] = True
    _template_file: ClassVar[tuple[str, str] | None] = ("text_clustering", "user")

    @model_validator(mode="after")
    def _default_label_fits_n(self) -> Self:
        check_default_label(self.default_label, self.n, owner=type(self).__name__)
        return self

    @property
    def inputs(self) -> StepColumns:
        return {"text": True, "projection": False, "cluster_label": True}

    @property
    def outputs(self) -> StepColumns:
        return ["summary_label", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        """The request for one cluster: ``input`` is ``{"texts": [...]}``."""
        texts = input.get("texts")
        if not isinstance(texts, list) or not texts:
            raise ColumnTypeError(
                f"Step {self.name!r} (TextClustering): a cluster needs a non-empty list of "
                f"texts, got {texts!r:.80}."
            )
        values = classification_values(
            text="\n\n".join(f"{self.query_title} {i}:\n{t}" for i, t in enumerate(texts, start=1)),
            n=self.n,
            labels=None,
            context=self.context,
            examples=None,
            default_label=self.default_label,
            query_title=self.query_title,
        )
        prompt = self.render_prompt("text_clustering", "user", texts=texts, **values)
        messages: ChatType = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": prompt})
        return messages

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        data = extract_json_object(output)
        raw = data.get("labels", data.get("label"))
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise ReplyParseError(
                f"the reply's JSON has no 'labels' list (keys: {sorted(data)}): {preview(output)!r}"
            )
        labels = [str(item).strip() for item in raw if str(item).strip()][: self.n]
        if not labels:
            raise ReplyParseError(f"the reply's labels are empty: {preview(output)!r}")
        return {"summary_label": json.dumps(labels[0] if self.n == 1 else labels)}

    def _cluster_of(self, index: int, row: Row) -> int:
        label = row.get("cluster_label")
        if isinstance(label, bool) or not isinstance(label, int):
            raise ColumnTypeError(
                f"Step {self.name!r} (TextClustering): row {index} column 'cluster_label' must "
                f"be an int (DBSCAN writes one), got {type(label).__name__} {label!r:.40}."
            )
        require_text(self.name, "text", row.get("text"), kind="TextClustering")
        return label

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows = list(inputs)
        members: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            members[self._cluster_of(i, row)].append(i)
        clusters = sorted(label for label in members if label != -1)
        rng = random.Random(self.seed)
        prompts: dict[int, ChatType] = {}
        for label in clusters:
            picked = members[label]
            if len(picked) > self.samples_per_cluster:
                picked = sorted(rng.sample(picked, self.samples_per_cluster))
            prompts[label] = self.format_input({"texts": [rows[i]["text"] for i in picked]})
        outputs: dict[int, GenerateOutput] = {}
        if clusters:
            generated = self.llm.generate([prompts[c] for c in clusters], num_generations=1)
            outputs = dict(zip(clusters, generated, strict=True))
        result: list[Row] = []
        for row in rows:
            label = row["cluster_label"]
            if label == -1:
                noise: Row = {k: v for k, v in row.items() if k != METADATA_COLUMN}
                noise["summary_label"] = json.dumps(self.default_label)
                noise[METADATA_COLUMN] = row.get(METADATA_COLUMN) or {}
                noise["model_name"] = self.llm.model_name
                result.append(noise)
                continue
            result.extend(self.build_rows([row], [prompts[label]], [outputs[label]]))
        yield result


__all__ = ["TextClustering"]
