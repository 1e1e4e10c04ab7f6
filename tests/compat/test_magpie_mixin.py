"""``MagpieChatTemplateMixin``: an LLM written for distilabel's Magpie runs alambic's (issue 15).

The custom LLM below is written the way distilabel users write one: it subclasses ``LLM`` and
the mixin, renders each conversation with its tokenizer's chat template, lets
``apply_magpie_pre_query_template`` add the text that opens a user turn, and generates with
the tiny local model (real tokenizer, real weights, real ``generate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import PrivateAttr

from alambic.llms import LLM, MagpieChatTemplateMixin
from alambic.llms.magpie import MAGPIE_PRE_QUERY_TEMPLATES
from alambic.llms.typing import ChatType, FormattedInput, GenerateOutput
from alambic.pipeline import Pipeline
from alambic.steps import LoadDataFromDicts
from alambic.steps.tasks import Magpie, MagpieGenerator

pytest.importorskip("transformers")

CHATML_USER = "<|im_start|>user\n"


class LocalMagpieLLM(LLM, MagpieChatTemplateMixin):
    """distilabel style: ``model_name``, ``load``, ``prepare_input`` and ``generate``."""

    path: str
    _tokenizer: Any = PrivateAttr(default=None)
    _model: Any = PrivateAttr(default=None)
    _prompts: list[str] = PrivateAttr(default_factory=list)

    @property
    def model_name(self) -> str:
        return "local-magpie"

    def load(self) -> None:
        super().load()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(self.path)
        self._model = AutoModelForCausalLM.from_pretrained(self.path)

    def prepare_input(self, input: ChatType) -> str:
        ends_with_user = bool(input) and input[-1]["role"] == "user"
        prompt = (
            self._tokenizer.apply_chat_template(
                input, tokenize=False, add_generation_prompt=ends_with_user
            )
            if input
            else ""
        )
        return self.apply_magpie_pre_query_template(prompt, input)

    def generate(  # type: ignore[override]
        self, inputs: list[FormattedInput], num_generations: int = 1, **kwargs: Any
    ) -> list[GenerateOutput]:
        import torch

        outputs: list[GenerateOutput] = []
        for conversation in inputs:
            prompt = self.prepare_input(conversation)  # type: ignore[arg-type]
            self._prompts.append(prompt)
            encoded = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            torch.manual_seed(0)
            tokens = self._model.generate(
                **encoded,
                do_sample=True,
                max_new_tokens=6,
                min_new_tokens=6,
                num_return_sequences=num_generations,
                pad_token_id=self._tokenizer.pad_token_id,
            )
            new = tokens[:, encoded["input_ids"].shape[1] :]
            texts = self._tokenizer.batch_decode(new, skip_special_tokens=False)
            outputs.append({"generations": [f"word {t}" for t in texts]})  # never empty
        return outputs


def test_mixin_presets_and_switch() -> None:
    llm = LocalMagpieLLM(path="unused", magpie_pre_query_template="qwen2")
    assert llm.use_magpie_template is True  # giving a template switches it on
    assert MAGPIE_PRE_QUERY_TEMPLATES["qwen2"] == CHATML_USER
    system: ChatType = [{"role": "system", "content": "S"}]
    assert llm.apply_magpie_pre_query_template("P", system) == "P" + CHATML_USER
    asked: ChatType = [*system, {"role": "user", "content": "Q"}]
    assert llm.apply_magpie_pre_query_template("P", asked) == "P"  # answering: unchanged
    assert (
        LocalMagpieLLM(path="unused", magpie_pre_query_template="llama3")
        .apply_magpie_pre_query_template("", [])
        .startswith("<|begin_of_text|><|start_header_id|>user")
    )
    off = LocalMagpieLLM(
        path="unused", magpie_pre_query_template="qwen2", use_magpie_template=False
    )
    assert off.apply_magpie_pre_query_template("P", system) == "P"
    with pytest.raises(
        ValueError, match=r"use_magpie_template=True needs magpie_pre_query_template"
    ):
        LocalMagpieLLM(path="unused", use_magpie_template=True)


def test_magpie_with_a_users_mixin_llm_on_the_tiny_model(tiny_model_path: Path) -> None:
    llm = LocalMagpieLLM(path=str(tiny_model_path), magpie_pre_query_template="qwen2")
    with Pipeline(name="magpie-mixin") as pipeline:
        load = LoadDataFromDicts(data=[{"system_prompt": "You help with maths."}, {}])
        magpie = Magpie(
            name="magpie",
            llm=llm,
            n_turns=2,
            include_system_prompt=True,
            multi_turn_system_prompt=False,
        )
        load >> magpie
    rows = pipeline.run(use_cache=False, show_progress=False)["default"]["train"].to_list()
    assert len(rows) == 2
    for row in rows:
        assert "error_magpie" not in (row["alambic_metadata"] or {}), row["alambic_metadata"]
        roles = [m["role"] for m in row["conversation"]]
        assert roles[-4:] == ["user", "assistant", "user", "assistant"]
        assert all(m["content"].startswith("word") for m in row["conversation"][-4:])
    assert rows[0]["conversation"][0] == {"role": "system", "content": "You help with maths."}
    prompts = magpie.llm._prompts  # type: ignore[attr-defined]
    user_turns = [p for p in prompts if p.endswith(CHATML_USER)]
    answers = [p for p in prompts if p.endswith("<|im_start|>assistant\n")]
    # two rows x two turns, each asked once as a user turn and once as an answer
    assert (len(user_turns), len(answers)) == (4, 4)
    assert CHATML_USER in user_turns  # the row without a system prompt starts from nothing
    assert any(
        p.startswith("<|im_start|>system\nYou help with maths.<|im_end|>\n") for p in user_turns
    )


def test_magpie_generator_with_a_users_mixin_llm(tiny_model_path: Path) -> None:
    llm = LocalMagpieLLM(path=str(tiny_model_path), magpie_pre_query_template="chatml")
    gen = MagpieGenerator(name="gen", llm=llm, num_rows=3, only_instruction=True)
    gen.load()
    rows = [row for batch, _ in gen.process() for row in batch]
    assert len(rows) == 3
    assert all(r["instruction"].startswith("word") for r in rows)
    assert all(r["model_name"] == "local-magpie" for r in rows)


def test_transformers_llm_takes_the_template_from_the_mixin_fields(tiny_model_path: Path) -> None:
    from alambic.llms import TransformersLLM

    llm = TransformersLLM(model=str(tiny_model_path), magpie_pre_query_template="chatml")
    llm.load()
    # distilabel's behaviour of generate(): a conversation not ending with a user turn
    assert llm.prepare_prompt([{"role": "system", "content": "S"}]) == (
        "<|im_start|>system\nS<|im_end|>\n" + CHATML_USER
    )
    assert llm.prepare_prompt([{"role": "user", "content": "Q"}]).endswith(
        "<|im_start|>assistant\n"
    )
    # the task left at its default template uses the LLM's (ChatML here, not llama3)
    gen = MagpieGenerator(name="gen", llm=llm, num_rows=2, only_instruction=True)
    assert gen.template().user_header == CHATML_USER
    gen.load()
    rows = [row for batch, _ in gen.process() for row in batch]
    assert len(rows) == 2
    raw = rows[0]["alambic_metadata"]["raw_input_gen"]
    assert raw == CHATML_USER
    # an explicit pre_query_template on the task still wins
    assert (
        MagpieGenerator(name="g2", llm=llm, num_rows=1, pre_query_template="llama3")
        .template()
        .prefix
        == "<|begin_of_text|>"
    )
