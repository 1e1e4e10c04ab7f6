from __future__ import annotations

import math
import subprocess
import sys

import pytest

from alambic.embeddings import Embeddings, SentenceTransformerEmbeddings
from alambic.errors import ModelNotAvailableError


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


class _CountingEmbeddings(Embeddings):
    """A tiny backend: proves the base contract (order, lengths) without any model."""

    @property
    def model_name(self) -> str:
        return "counting"

    def encode(self, inputs: list[str]) -> list[list[float]]:
        return [[float(len(text)), float(text.count(" "))] for text in inputs]


def test_base_contract_and_dump() -> None:
    model = _CountingEmbeddings()
    model.load()
    assert model.encode(["a b", "abcd"]) == [[3.0, 1.0], [4.0, 0.0]]
    assert model.dump()["type_info"]["name"] == "_CountingEmbeddings"


def test_import_alambic_embeddings_does_not_import_sentence_transformers() -> None:
    code = (
        "import sys, alambic.embeddings, alambic.steps.embeddings, alambic.steps.filtering;"
        "print(any(m in sys.modules for m in ('sentence_transformers', 'torch', 'faiss',"
        " 'datasketch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_runtime_parameters_and_dump_round_trip() -> None:
    from alambic.utils.serialization import load_component

    model = SentenceTransformerEmbeddings(model="some/model", batch_size=8)
    assert model.runtime_parameters_names == {
        "prompt_name": False,
        "normalize_embeddings": False,
        "batch_size": False,
    }
    model.set_runtime_parameters({"batch_size": 4})
    assert model.batch_size == 4
    rebuilt = load_component(model.dump())
    assert isinstance(rebuilt, SentenceTransformerEmbeddings)
    assert rebuilt.model == "some/model"
    assert rebuilt.batch_size == 4


def test_encode_before_load_says_how_to_fix() -> None:
    with pytest.raises(RuntimeError, match=r"call load\(\) first"):
        SentenceTransformerEmbeddings(model="x").encode(["hi"])


@pytest.mark.slow  # imports sentence-transformers (several seconds)
def test_missing_model_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="not-a-real-model"):
        SentenceTransformerEmbeddings(model="alambic-tests/not-a-real-model").load()


@pytest.mark.slow
def test_minilm_embeddings_are_384_dims_unit_norm(minilm: SentenceTransformerEmbeddings) -> None:
    vectors = minilm.encode(["A cat sits on the mat.", "Stock prices fell sharply."])
    assert minilm.dimensions == 384
    assert [len(v) for v in vectors] == [384, 384]
    for vector in vectors:
        assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-5)
    assert all(isinstance(x, float) for x in vectors[0])
    assert minilm.encode([]) == []


@pytest.mark.slow
def test_minilm_paraphrases_are_closer_than_unrelated(
    minilm: SentenceTransformerEmbeddings,
) -> None:
    eating, bread, market = minilm.encode(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The stock market crashed today.",
        ]
    )
    assert _cosine(eating, bread) > 0.7
    assert abs(_cosine(eating, market)) < 0.1
    assert minilm.model_name.endswith("model")


@pytest.mark.slow
def test_minilm_unnormalized_and_prompts(minilm_path: str) -> None:
    model = SentenceTransformerEmbeddings(
        model=minilm_path,
        normalize_embeddings=False,
        prompts={"query": "query: "},
    )
    model.load()
    raw = model.encode(["hello there"])[0]
    # MiniLM ends with a Normalize module, so even the raw output has unit norm ...
    assert math.sqrt(sum(x * x for x in raw)) == pytest.approx(1.0, abs=1e-4)
    model.prompt_name = "query"
    prompted = model.encode(["hello there"])[0]
    # ... and a prompt is really prepended: the vector is the one of the prefixed text.
    model.prompt_name = None
    assert prompted == pytest.approx(model.encode(["query: hello there"])[0], abs=1e-5)
    assert prompted != pytest.approx(raw, abs=1e-3)
    model.prompt_name = "pasage"
    with pytest.raises(ValueError, match=r"'pasage' is not one of the model's prompts"):
        model.encode(["x"])
