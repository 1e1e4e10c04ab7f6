from __future__ import annotations

import math

import pytest

from alambic.embeddings import Embeddings, SentenceTransformerEmbeddings
from alambic.errors import ColumnTypeError
from alambic.steps.embeddings import EmbeddingGeneration


class _LengthEmbeddings(Embeddings):
    calls: int = 0

    @property
    def model_name(self) -> str:
        return "length"

    def encode(self, inputs: list[str]) -> list[list[float]]:
        self.calls += 1
        return [[float(len(t)), 1.0] for t in inputs]


def test_columns_and_order_with_a_none_text() -> None:
    step = EmbeddingGeneration(embeddings=_LengthEmbeddings())
    assert step.inputs == ["text"]
    assert step.outputs == ["embedding", "model_name"]
    step.load()
    rows = [{"text": "abc", "id": 0}, {"text": None, "id": 1}, {"text": "hello", "id": 2}]
    (batch,) = list(step.process(rows))
    assert batch == [
        {"text": "abc", "id": 0, "embedding": [3.0, 1.0], "model_name": "length"},
        {"text": None, "id": 1, "embedding": None, "model_name": "length"},
        {"text": "hello", "id": 2, "embedding": [5.0, 1.0], "model_name": "length"},
    ]


def test_all_none_texts_do_not_call_the_model() -> None:
    model = _LengthEmbeddings()
    step = EmbeddingGeneration(embeddings=model)
    step.load()
    (batch,) = list(step.process([{"text": None}]))
    assert batch[0]["embedding"] is None
    assert model.calls == 0


def test_non_string_text_names_the_fix() -> None:
    step = EmbeddingGeneration(name="embed", embeddings=_LengthEmbeddings())
    step.load()
    with pytest.raises(ColumnTypeError, match=r"'embed'.*got list \['a'\]"):
        next(step.process([{"text": ["a"]}]))


def test_input_mappings_and_nested_runtime_parameters() -> None:
    step = EmbeddingGeneration(
        embeddings=SentenceTransformerEmbeddings(model="m"),
        input_mappings={"text": "instruction"},
    )
    assert step.runtime_parameters_names["embeddings"] == {
        "prompt_name": False,
        "normalize_embeddings": False,
        "batch_size": False,
    }
    step.set_runtime_parameters({"embeddings": {"batch_size": 3}})
    assert step.embeddings.batch_size == 3
    assert step.mapped_inputs() == {"instruction": True}


@pytest.mark.slow
def test_minilm_rows(minilm: SentenceTransformerEmbeddings) -> None:
    step = EmbeddingGeneration(embeddings=minilm)
    step.load()
    texts = [
        "How do I bake bread at home?",
        "What is the way to make bread in my kitchen?",
        "Explain the rules of cricket.",
    ]
    (batch,) = list(step.process([{"text": t} for t in texts]))
    vectors = [row["embedding"] for row in batch]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(math.isclose(math.hypot(*v), 1.0, abs_tol=1e-5) for v in vectors)

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(vectors[0], vectors[1]) > dot(vectors[0], vectors[2]) + 0.3
    assert {row["model_name"] for row in batch} == {minilm.model_name}
