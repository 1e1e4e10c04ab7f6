"""``MinHashDedup``: mark rows whose text nearly repeats an earlier row's, with MinHash LSH."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, PositiveInt

from alambic.errors import ColumnTypeError
from alambic.runtime_parameters import RuntimeParameter
from alambic.steps.base import GlobalStep
from alambic.steps.typing import StepColumns, StepInput, StepOutput
from alambic.utils.imports import require

_WORD = re.compile(r"\w+", re.UNICODE)
_SPACES = re.compile(r"\s+")


def shingles(text: str, *, tokenizer: Literal["words", "ngrams"], n: int) -> set[str]:
    """The set of shingles MinHashDedup compares (lowercased).

    ``"words"``: runs of ``n`` consecutive words (``\\w+``); ``"ngrams"``: runs of ``n``
    characters, whitespace collapsed. A text shorter than one shingle is one shingle.
    """
    if tokenizer == "words":
        words = _WORD.findall(text.lower())
        if len(words) <= n:
            return {" ".join(words)} if words else set()
        return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}
    chars = _SPACES.sub(" ", text.lower()).strip()
    if len(chars) <= n:
        return {chars} if chars else set()
    return {chars[i : i + n] for i in range(len(chars) - n + 1)}


class MinHashDedup(GlobalStep):
    """Near-duplicate text detection with MinHash and locality-sensitive hashing.

    MinHash (Broder, 1997, "On the resemblance and containment of documents") estimates the
    Jaccard similarity of two texts' shingle sets from ``num_perm`` hash minima; LSH bands
    them so that only likely pairs are compared (Leskovec, Rajaraman & Ullman, "Mining of
    Massive Datasets", ch. 3). Texts are lowercased and cut into shingles by ``tokenizer``:
    ``"words"`` (``n`` words per shingle, default 1: a bag of words) or ``"ngrams"`` (``n``
    characters, default 5), see :func:`shingles`.

    Rows are visited in order; a row gets ``keep_row_after_minhash_filtering=False`` when an
    earlier *kept* row is an LSH candidate whose estimated Jaccard similarity is at least
    ``threshold``. The first occurrence always survives. Hashing uses a fixed ``seed``, so the
    same rows always give the same marks. A row whose ``text`` is ``None`` is kept and never
    compared. Rows are marked, not removed. The LSH banding favours recall (a pair at the
    threshold is a candidate about 80-95% of the time, well above it nearly always) and each
    candidate is confirmed on its full signature, so false positives are rare. MinHash is an
    estimate: pairs close to ``threshold`` may fall on either side (more ``num_perm``, less
    variance).
    """

    threshold: RuntimeParameter[float] = Field(
        default=0.9, gt=0.0, lt=1.0, description="Jaccard similarity of a near-duplicate."
    )
    num_perm: PositiveInt = Field(default=128, description="Hash functions per signature.")
    tokenizer: Literal["words", "ngrams"] = Field(
        default="words", description="Word shingles ('words') or character n-grams ('ngrams')."
    )
    n: PositiveInt | None = Field(
        default=None, description="Shingle size: 1 word or 5 characters when None."
    )
    seed: int = Field(default=1, description="Seed of the hash permutations.")

    @property
    def inputs(self) -> StepColumns:
        return ["text"]

    @property
    def outputs(self) -> StepColumns:
        return ["keep_row_after_minhash_filtering"]

    def load(self) -> None:
        require("datasketch", feature="MinHashDedup", extra="minhash")
        super().load()

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        datasketch = require("datasketch", feature="MinHashDedup", extra="minhash")
        n = self.n or (1 if self.tokenizer == "words" else 5)
        threshold = 0.9 if self.threshold is None else self.threshold
        positions: list[int] = []
        shingle_sets: list[list[bytes]] = []
        for i, row in enumerate(inputs):
            text: Any = row.get("text")
            if text is None:
                continue
            if not isinstance(text, str):
                raise ColumnTypeError(
                    f"Step {self.name!r} (MinHashDedup): column 'text' must hold strings, got "
                    f"{type(text).__name__} {text!r:.100} in row {i}. Map a text column with "
                    "input_mappings={'text': '<column>'}."
                )
            positions.append(i)
            found = shingles(text, tokenizer=self.tokenizer, n=n)
            shingle_sets.append([s.encode("utf-8") for s in sorted(found)])
        signatures = datasketch.MinHash.bulk(shingle_sets, num_perm=self.num_perm, seed=self.seed)
        # Banding tuned to miss few true pairs; each candidate is confirmed on the full signature.
        lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=self.num_perm, weights=(0.1, 0.9))
        keep = [True] * len(inputs)
        for key, (position, signature) in enumerate(zip(positions, signatures, strict=True)):
            duplicate = any(
                signatures[candidate].jaccard(signature) >= threshold
                for candidate in lsh.query(signature)
            )
            if duplicate:
                keep[position] = False
            else:
                lsh.insert(key, signature)
        yield [
            {**row, "keep_row_after_minhash_filtering": k}
            for row, k in zip(inputs, keep, strict=True)
        ]


__all__ = ["MinHashDedup", "shingles"]
