"""UMAP, DBSCAN and TextClustering: on small deterministic vectors, then on real texts embedded
by all-MiniLM-L6-v2 in a pipeline, with the fake LLM and the tiny local model naming clusters."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import ColumnTypeError
from alambic.llms.fake import FakeLLM
from alambic.llms.typing import ChatType
from alambic.pipeline import Pipeline
from alambic.steps import DBSCAN, UMAP, LoadDataFromDicts
from alambic.steps.tasks import TextClustering
from alambic.steps.tasks._parsing import ReplyParseError

pytest.importorskip("umap", reason="pip install 'alambic[clustering]'")
pytest.importorskip("sklearn", reason="pip install 'alambic[clustering]'")


def blobs(n: int = 12, dim: int = 8) -> list[dict[str, Any]]:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        centre = 0.0 if i % 2 == 0 else 10.0
        rows.append({"embedding": [centre + rng.random() * 0.1 for _ in range(dim)], "i": i})
    return rows


def test_umap_projects_every_row_reproducibly() -> None:
    step = UMAP(name="umap", n_components=2, random_state=0)
    step.load()
    rows = next(step.process(blobs()))
    again = next(UMAP(name="u2", n_components=2, random_state=0).process(blobs()))
    assert [len(r["projection"]) for r in rows] == [2] * 12
    assert [r["projection"] for r in rows] == [r["projection"] for r in again]
    assert [r["i"] for r in rows] == list(range(12))


def test_dbscan_finds_the_two_groups() -> None:
    rows = [{"projection": [float(i % 2) * 10 + 0.01 * i, 0.0]} for i in range(12)]
    out = next(DBSCAN(name="db", eps=1.0, min_samples=3).process(rows))
    labels = [r["cluster_label"] for r in out]
    assert labels[0::2] == [labels[0]] * 6
    assert labels[1::2] == [labels[1]] * 6
    assert labels[0] != labels[1]
    lonely = next(
        DBSCAN(name="db", eps=1.0, min_samples=3).process([*rows, {"projection": [99.0, 99.0]}])
    )
    assert lonely[-1]["cluster_label"] == -1


def test_vectors_of_different_lengths_are_an_error() -> None:
    with pytest.raises(ColumnTypeError, match="row 1 column 'projection' has 3 values"):
        next(DBSCAN(name="db").process([{"projection": [1.0, 2.0]}, {"projection": [1, 2, 3]}]))
    with pytest.raises(ColumnTypeError, match="non-empty list"):
        next(UMAP(name="u").process([{"embedding": None}] * 5))


def make_clustering(**kw: Any) -> TextClustering:
    return TextClustering(name="clusters", llm=kw.pop("llm", FakeLLM()), **kw)


@pytest.mark.parametrize(
    ("reply", "summary"),
    [
        ('{"labels": ["Cooking"]}', '"Cooking"'),
        ('Sure! These are about food.\n```json\n{"labels": ["Cooking"]}\n```', '"Cooking"'),
        ('{"label": " Cooking "}', '"Cooking"'),
    ],
)
def test_parser_reads_well_formed_and_prosy_replies(reply: str, summary: str) -> None:
    # distilabel's column name and form: the label as JSON text
    assert make_clustering().format_output(reply) == {"summary_label": summary}
    assert json.loads(summary) == "Cooking"


def test_parser_keeps_up_to_n_labels() -> None:
    out = make_clustering(n=2).format_output('{"labels": ["a", "b", "c"]}')
    assert out == {"summary_label": '["a", "b"]'}
    assert make_clustering(n=2).format_output("no json") == {"summary_label": None}


@pytest.mark.parametrize(
    "reply", ['{"labels": ["Cook', "no json here at all", '{"labels": []}', '{"topic": 3}']
)
def test_parser_rejects_truncated_and_garbage_replies(reply: str) -> None:
    with pytest.raises(ReplyParseError):
        make_clustering().parse_output(reply)


def name_cluster(messages: ChatType, index: int) -> str:
    prompt = messages[-1]["content"]
    topic = "Cooking" if "oven" in prompt or "soup" in prompt or "bread" in prompt else "Sport"
    return json.dumps({"labels": [topic]})


TEXTS = [
    "Bake the bread in a hot oven for forty minutes.",
    "Simmer the vegetable soup slowly with garlic and onions.",
    "Knead the bread dough and let it rise before baking.",
    "Season the tomato soup with basil and a pinch of salt.",
    "Preheat the oven and roast the potatoes until golden.",
    "Stir the mushroom soup and serve it hot with bread.",
    "The striker scored two goals in the football final.",
    "The tennis player won the match in straight sets.",
    "Our team trained hard for the basketball championship.",
    "The goalkeeper saved a penalty in the last minute of the match.",
    "The marathon runner crossed the finish line first.",
    "The cyclist won the sprint stage of the race.",
]


def clustering_pipeline(minilm_path: str, llm: Any, name: str) -> Pipeline:
    from alambic.embeddings.sentence_transformers import SentenceTransformerEmbeddings
    from alambic.steps import EmbeddingGeneration

    with Pipeline(name=name) as pipeline:
        load = LoadDataFromDicts(data=[{"text": t} for t in TEXTS])
        embed = EmbeddingGeneration(embeddings=SentenceTransformerEmbeddings(model=minilm_path))
        umap = UMAP(n_components=2, n_neighbors=5, random_state=0)
        dbscan = DBSCAN(eps=2.0, min_samples=3)
        clusters = TextClustering(name="clusters", llm=llm, samples_per_cluster=4)
        load >> embed >> umap >> dbscan >> clusters
    return pipeline


@pytest.mark.slow
def test_real_texts_are_clustered_and_named_by_the_llm(minilm_path: str) -> None:
    llm = FakeLLM(reply_fn=name_cluster)
    pipeline = clustering_pipeline(minilm_path, llm, "clustering-fake")
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert [r["text"] for r in rows] == TEXTS
    assert all(len(r["projection"]) == 2 for r in rows)
    labels = [r["cluster_label"] for r in rows]
    # the embedding model separates cooking from sport: two clusters, no overlap
    assert len(set(labels[:6])) == 1
    assert len(set(labels[6:])) == 1
    assert labels[0] != labels[6]
    assert [r["summary_label"] for r in rows] == ['"Cooking"'] * 6 + ['"Sport"'] * 6
    assert "summary" not in rows[0]
    # one request per cluster, at most samples_per_cluster texts each
    assert len(llm.history) == 2
    for request in llm.history:
        assert request["messages"][-1]["content"].count("Text ") <= 4 + 1
    assert "raw_output_clusters" in rows[0]["alambic_metadata"]


@pytest.mark.slow
def test_clusters_named_by_the_tiny_local_model(minilm_path: str, tiny_model_path: Path) -> None:
    from alambic.llms.transformers import TransformersLLM

    llm = TransformersLLM(
        model=str(tiny_model_path),
        generation_kwargs={"max_new_tokens": 8, "min_new_tokens": 2, "seed": 0},
    )
    # torch models must not load concurrently ("Cannot copy out of meta tensor"): load the LLM
    # first, so the pipeline only loads the embedding model (load() is a no-op once loaded)
    llm.load()
    pipeline = clustering_pipeline(minilm_path, llm, "clustering-tiny")
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert len(rows) == 12
    for row in rows:
        meta = row["alambic_metadata"]
        if row["cluster_label"] == -1:
            assert row["summary_label"] == '"Unclassified"'  # distilabel's default label
        elif meta.get("error_clusters") is None:
            assert isinstance(json.loads(row["summary_label"]), str)
        else:  # an untrained model writes gibberish: the row says why it has no summary
            assert row["summary_label"] is None
            assert meta["error_clusters"]["message"]
        assert row["model_name"] == str(tiny_model_path)


def test_noise_rows_get_the_default_label_without_a_request() -> None:
    llm = FakeLLM(reply_fn=name_cluster)
    task = make_clustering(llm=llm, default_label="Other")
    task.load()
    rows = next(
        task.process(
            [
                {"text": "soup", "cluster_label": 0},
                {"text": "noise", "cluster_label": -1},
                {"text": "more soup", "cluster_label": 0},
            ]
        )
    )
    assert [r["summary_label"] for r in rows] == ['"Cooking"', '"Other"', '"Cooking"']
    assert len(llm.history) == 1
    with pytest.raises(ColumnTypeError, match="'cluster_label' must be an int"):
        next(task.process([{"text": "x", "cluster_label": "0"}]))


def three_rows() -> list[dict[str, Any]]:
    return [
        {"text": "soup", "cluster_label": 0},
        {"text": "noise", "cluster_label": -1},
        {"text": "more soup", "cluster_label": 0},
    ]


def test_multi_label_clusters_and_list_default_are_json_lists() -> None:
    llm = FakeLLM(reply_fn=lambda messages, i: '{"labels": ["Cooking", "Soup", "Food"]}')
    task = make_clustering(llm=llm, n=2, default_label=["Other", "Misc"])
    task.load()
    rows = next(task.process(three_rows()))
    assert [r["summary_label"] for r in rows] == [
        '["Cooking", "Soup"]',
        '["Other", "Misc"]',
        '["Cooking", "Soup"]',
    ]
    assert [json.loads(r["summary_label"]) for r in rows][1] == ["Other", "Misc"]
    assert task.outputs == ["summary_label", "model_name"]


def test_noise_label_is_the_default_as_json_whatever_n() -> None:
    # distilabel writes json.dumps(default_label) for noise rows: a string default stays a
    # JSON string even when clusters get lists; its default label is "Unclassified"
    task = make_clustering(llm=FakeLLM(reply_fn=name_cluster), n=3)
    assert task.default_label == "Unclassified"
    task.load()
    rows = next(task.process(three_rows()))
    assert [r["summary_label"] for r in rows] == ['["Cooking"]', '"Unclassified"', '["Cooking"]']


def test_a_list_default_longer_than_n_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"has 2 labels but n=1.*set n=2"):
        make_clustering(default_label=["Other", "Misc"])
    with pytest.raises(ValidationError, match="at least one non-empty label"):
        make_clustering(n=2, default_label=[])
