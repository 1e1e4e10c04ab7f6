from __future__ import annotations

import pytest

from alambic.errors import ColumnTypeError
from alambic.steps.filtering import MinHashDedup
from alambic.steps.filtering.minhash import shingles

WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
]


def _marks(step: MinHashDedup, texts: list[str | None]) -> list[bool]:
    step.load()
    (batch,) = list(step.process([{"text": t, "i": i} for i, t in enumerate(texts)]))
    assert [row["i"] for row in batch] == list(range(len(texts)))
    return [row["keep_row_after_minhash_filtering"] for row in batch]


def _jaccard(a: str, b: str) -> float:
    sa, sb = set(a.split()), set(b.split())
    return len(sa & sb) / len(sa | sb)


def test_shingles() -> None:
    assert shingles("The cat, the CAT!", tokenizer="words", n=1) == {"the", "cat"}
    assert shingles("a b c", tokenizer="words", n=2) == {"a b", "b c"}
    assert shingles("a b", tokenizer="words", n=5) == {"a b"}
    assert shingles("Ab  cd", tokenizer="ngrams", n=3) == {"ab ", "b c", " cd"}
    assert shingles("   ", tokenizer="ngrams", n=3) == set()


def test_near_duplicate_above_a_known_threshold_is_dropped() -> None:
    original = " ".join(WORDS)
    one_changed = " ".join([*WORDS[:-1], "uniform"])  # Jaccard 19/21 = 0.905
    half_changed = " ".join([*WORDS[:10], *(w + "x" for w in WORDS[10:])])  # 10/30 = 0.333
    assert _jaccard(original, one_changed) == pytest.approx(19 / 21)
    texts = [original, half_changed, one_changed]
    assert _marks(MinHashDedup(threshold=0.8, num_perm=256), texts) == [True, True, False]
    # 0.905 is well under 0.98: the same pair is not a duplicate at a stricter threshold.
    assert _marks(MinHashDedup(threshold=0.98, num_perm=256), texts) == [True, True, True]
    # and 0.333 is far over 0.2, so everything collapses to the first row.
    assert _marks(MinHashDedup(threshold=0.2, num_perm=256), texts) == [True, False, False]


def test_first_occurrence_kept_for_exact_copies_and_none() -> None:
    texts: list[str | None] = ["Hello world again", None, "hello, WORLD again!", None, "other"]
    assert _marks(MinHashDedup(), texts) == [True, True, False, True, True]


def test_word_order_matters_only_with_longer_shingles() -> None:
    a = " ".join(WORDS)
    b = " ".join(reversed(WORDS))
    assert _marks(MinHashDedup(threshold=0.9), [a, b]) == [True, False]
    assert _marks(MinHashDedup(threshold=0.9, n=3), [a, b]) == [True, True]


def test_character_ngrams_catch_typos() -> None:
    a = "The quick brown fox jumps over the lazy dog near the riverbank today"
    typo = "The quick brown fox jumps over the lazy dog near the riverbank todya"
    assert _marks(MinHashDedup(tokenizer="ngrams", threshold=0.8), [a, typo]) == [True, False]
    assert _marks(MinHashDedup(tokenizer="words", threshold=0.95), [a, typo]) == [True, True]


def test_sliding_windows_keep_every_other_and_are_deterministic() -> None:
    # 10-word windows every 2 words: Jaccard 8/12 = 0.67 with the next, 6/14 = 0.43 with the
    # one after, so at 0.55 each kept window hides only its successor.
    texts = [" ".join(WORDS[i : i + 10]) for i in range(0, 11, 2)]
    marks = _marks(MinHashDedup(threshold=0.55), texts)
    assert marks == [True, False, True, False, True, False]
    assert marks == _marks(MinHashDedup(threshold=0.55), texts)


def test_non_string_text_and_bad_threshold() -> None:
    with pytest.raises(ColumnTypeError, match=r"got int 3 in row 0"):
        _marks(MinHashDedup(), [3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="threshold"):
        MinHashDedup(threshold=1.5)
