"""LlamaCppLLM on a real GGUF: the tiny test model written by ``alambic.testing.tiny_gguf``
(fixture ``tiny_gguf_path``), run in this process by llama-cpp-python, and served by
llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) for OpenAILLM.

llama-cpp-python compiles llama.cpp when pip installs it (6 to 20 minutes on a CPU), so it is
an optional extra: CI installs it (``.ci/run``); elsewhere these tests skip with the reason.
The model is random, so replies are gibberish, but real: the checks are on shapes, token
counts, templates and grammars, which gibberish cannot satisfy by chance."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from alambic.errors import MissingDependencyError, ModelNotAvailableError
from alambic.llms.llamacpp import LlamaCppLLM, llamacpp_kwargs
from alambic.llms.typing import GenerateOutput
from alambic.testing.processes import free_port, serve_process
from alambic.testing.tiny_model import CHATML_TEMPLATE

NO_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is None
SKIP_REASON = (
    'llama-cpp-python is not installed (pip install "alambic[llama-cpp]"; it compiles '
    "llama.cpp for minutes, CI installs it)"
)
needs_llama_cpp = pytest.mark.skipif(NO_LLAMA_CPP, reason=SKIP_REASON)

HELLO = [{"role": "user", "content": "hello"}]
SEA = [
    {"role": "system", "content": "You are a poet."},
    {"role": "user", "content": "Write a haiku about the sea."},
]
# Every value is bounded (enums, boolean, short string), so a grammar-constrained random
# model always finishes the object within the token budget. Not "minimum"/"maximum":
# llama-cpp-python's schema-to-grammar conversion ignores them (alambic's validation then
# rejects the reply; see test_numeric_bounds_are_not_enforced_by_the_grammar).
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["good", "bad"]},
        "ok": {"type": "boolean"},
        "score": {"type": "integer", "enum": [0, 1, 2, 3]},
        "note": {"type": "string", "maxLength": 5},
    },
    "required": ["label", "ok", "score", "note"],
    "additionalProperties": False,
}


def _chatml(messages: list[dict[str, str]]) -> str:
    """The prompt the GGUF's chat template must produce (rendered here independently)."""
    import jinja2

    return jinja2.Template(CHATML_TEMPLATE).render(messages=messages, add_generation_prompt=True)


def _validates(text: str | None) -> dict[str, Any]:
    """Parse a reply and check it against SCHEMA field by field (no validator package)."""
    assert text is not None
    value: dict[str, Any] = json.loads(text)
    assert set(value) == {"label", "ok", "score", "note"}, value
    assert value["label"] in ("good", "bad")
    assert isinstance(value["ok"], bool)
    assert value["score"] in (0, 1, 2, 3)
    assert type(value["score"]) is int
    assert isinstance(value["note"], str), value
    assert len(value["note"]) <= 5, value
    return value


# --------------------------------------------------------------------------- everywhere


def test_settings_are_renamed_and_checked() -> None:
    assert llamacpp_kwargs({"max_new_tokens": 3, "repetition_penalty": 1.1, "stop": "x"}) == {
        "max_tokens": 3,
        "repeat_penalty": 1.1,
        "stop": ["x"],
    }
    assert llamacpp_kwargs({"do_sample": False}) == {"temperature": 0.0, "max_tokens": 128}
    with pytest.raises(ValueError, match=r"unknown generation settings \['num_beams'\]"):
        llamacpp_kwargs({"num_beams": 2})


def test_missing_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "alambic\[llama-cpp\]"'):
        LlamaCppLLM(model_path=str(model)).load()


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ModelNotAvailableError, match=r"nowhere/model\.gguf.*is not a file"):
        LlamaCppLLM(model_path=str(missing)).load()
    with pytest.raises(ModelNotAvailableError, match=r"is not a file.*repo_id"):
        LlamaCppLLM(model_path=str(tmp_path)).load()  # a folder is not a GGUF either


def test_model_name_is_the_file() -> None:
    assert LlamaCppLLM(model_path="/models/x.gguf").model_name == "/models/x.gguf"


# --------------------------------------------------------------------------- in this process


@pytest.fixture(scope="module")
def llm(tiny_gguf_path: Path) -> Iterator[LlamaCppLLM]:
    if NO_LLAMA_CPP:
        pytest.skip(SKIP_REASON)
    model = LlamaCppLLM(model_path=str(tiny_gguf_path), n_ctx=512, structured_output_retries=0)
    model.load()
    yield model
    model.unload()


def _prompt_tokens(llm: LlamaCppLLM, text: str) -> int:
    return len(llm._llama.tokenize(text.encode(), add_bos=False, special=True))


@contextmanager
def _sampled_tokens(llm: LlamaCppLLM, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Record every token llama-cpp-python samples (``Llama.sample``), end-of-turn excluded."""
    sampled: list[int] = []
    sample = llm._llama.sample

    def recording(*args: Any, **kwargs: Any) -> int:
        token: int = sample(*args, **kwargs)
        if token != llm._llama.token_eos():
            sampled.append(token)
        return token

    with monkeypatch.context() as patch:
        patch.setattr(llm._llama, "sample", recording)
        yield sampled
    assert sampled, "llama-cpp-python no longer samples through Llama.sample: update this test"


def _check_output_tokens(outs: list[GenerateOutput], sampled: list[int]) -> None:
    """``output_tokens`` counts exactly the generated tokens. Not always <= max_new_tokens:
    llama-cpp-python goes on past the limit while the text ends inside a multi-byte UTF-8
    character (a random byte-level model starts many), then drops an unfinished one."""
    counts = [n for out in outs for n in out["statistics"]["output_tokens"]]
    texts = [t for out in outs for t in out["generations"]]
    assert all(isinstance(n, int) for n in counts), counts
    assert sum(n or 0 for n in counts) == len(sampled), (counts, len(sampled))
    for text, n in zip(texts, counts, strict=True):
        assert isinstance(text, str)
        assert n is not None
        assert n >= (1 if text else 0), (text, n)


@pytest.mark.llamacpp
@needs_llama_cpp
def test_generations_have_the_asked_shape_and_token_counts(
    llm: LlamaCppLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _sampled_tokens(llm, monkeypatch) as sampled:
        outs = llm.generate([HELLO, SEA], num_generations=3, max_new_tokens=5)
    assert [len(o["generations"]) for o in outs] == [3, 3]
    for out, messages in zip(outs, [HELLO, SEA], strict=True):
        # The prompt is the ChatML rendering of the conversation: the template was applied.
        assert out["statistics"]["input_tokens"] == [_prompt_tokens(llm, _chatml(messages))] * 3
    _check_output_tokens(outs, sampled)
    # Generations of one prompt are sampled with different seeds, so they differ.
    assert len(set(outs[1]["generations"])) > 1, outs[1]["generations"]


@pytest.mark.llamacpp
@needs_llama_cpp
def test_a_seed_makes_generations_reproducible(llm: LlamaCppLLM) -> None:
    first = llm.generate([SEA], num_generations=2, max_new_tokens=6, seed=11, temperature=1.0)
    again = llm.generate([SEA], num_generations=2, max_new_tokens=6, seed=11, temperature=1.0)
    assert first[0]["generations"] == again[0]["generations"]


@pytest.mark.llamacpp
@needs_llama_cpp
def test_chat_is_the_raw_completion_of_the_chat_template(llm: LlamaCppLLM) -> None:
    [chat] = llm.generate([SEA], max_new_tokens=8, do_sample=False)
    [raw] = llm.complete([_chatml(SEA)], max_new_tokens=8, do_sample=False)
    assert chat["generations"] == raw["generations"]
    assert chat["statistics"] == raw["statistics"]


@pytest.mark.llamacpp
@needs_llama_cpp
def test_raw_completion_continues_the_prompt_as_is(
    llm: LlamaCppLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = "def main(argv):\n    "
    with _sampled_tokens(llm, monkeypatch) as sampled:
        [out] = llm.complete([prompt], num_generations=2, max_new_tokens=4, seed=3)
    assert len(out["generations"]) == 2
    assert out["statistics"]["input_tokens"] == [_prompt_tokens(llm, prompt)] * 2
    _check_output_tokens([out], sampled)


@pytest.mark.llamacpp
@needs_llama_cpp
def test_json_schema_output_validates(llm: LlamaCppLLM) -> None:
    # No re-asks (structured_output_retries=0): a random model writes valid JSON only
    # because llama.cpp's grammar constrains it.
    [out] = llm.generate([(SEA, {"schema": SCHEMA})], num_generations=2, max_new_tokens=80)
    assert "errors" not in out or not any(out["errors"]), out
    for text in out["generations"]:
        _validates(text)
    assert all(n and n > 8 for n in out["statistics"]["output_tokens"])


@pytest.mark.llamacpp
@needs_llama_cpp
def test_numeric_bounds_are_not_enforced_by_the_grammar(llm: LlamaCppLLM) -> None:
    # Pins a llama-cpp-python limitation the docs state: its grammar lets any integer through
    # "maximum", and alambic's validation of the reply is what rejects it.
    bounded = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 0}}}
    bounded["required"] = ["n"]
    request = (SEA, {"name": "bounded", "schema": bounded})
    [raw] = llm._generate([request], 4, max_new_tokens=40, seed=5)  # no validation here
    values = [json.loads(text or "")["n"] for text in raw["generations"]]
    assert any(n > 0 for n in values), values
    [checked] = llm.generate([request], num_generations=4, max_new_tokens=40, seed=5)
    errors = checked.get("errors") or [None] * 4
    assert any(errors), checked
    for text, error in zip(checked["generations"], errors, strict=True):
        if error is None:
            assert json.loads(text or "")["n"] <= 0
        else:
            assert text is None
            assert "maximum of 0" in error["message"]


@pytest.mark.slow
@pytest.mark.llamacpp
@needs_llama_cpp
def test_a_loaded_model_left_open_exits_cleanly(tiny_gguf_path: Path) -> None:
    # With torch imported, llama-cpp-python's Llama.__del__ at interpreter exit used to print
    # "Exception ignored ... 'NoneType' object is not callable"; load() now closes at exit.
    script = (
        "import torch\n"
        "from alambic.llms.llamacpp import LlamaCppLLM\n"
        f"llm = LlamaCppLLM(model_path={str(tiny_gguf_path)!r}, n_ctx=256)\n"
        "llm.load()\n"
        "print(llm.generate([[{'role': 'user', 'content': 'hi'}]], max_new_tokens=2)[0])\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")  # alambic even if not installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "'generations'" in done.stdout
    assert "Exception ignored" not in done.stderr, done.stderr


# --------------------------------------------------------------------------- llama_cpp.server


@pytest.fixture(scope="module")
def llamacpp_server(
    tiny_gguf_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``python -m llama_cpp.server`` on the tiny GGUF; yields ``http://127.0.0.1:P/v1``.
    The model answers to the name ``tiny``."""
    if NO_LLAMA_CPP:
        pytest.skip(SKIP_REASON)
    for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context"):
        pytest.importorskip(module, reason=f'llama_cpp.server needs {module} ("[server]" extra)')
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf_path)]
    cmd += ["--model_alias", "tiny", "--n_ctx", "512", "--host", "127.0.0.1"]
    cmd += ["--port", str(port)]
    root = f"http://127.0.0.1:{port}"
    with serve_process(
        cmd,
        f"{root}/v1/models",
        name="llama_cpp.server",
        log_path=tmp_path_factory.mktemp("llamacpp-server") / "server.log",
    ):
        yield f"{root}/v1"


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


@pytest.mark.slow
@pytest.mark.llamacpp
@needs_llama_cpp
def test_openai_llm_chats_with_llamacpp_server(llamacpp_server: str, llm: LlamaCppLLM) -> None:
    from alambic.llms.openai import OpenAILLM

    client = OpenAILLM(model="tiny", base_url=llamacpp_server)
    [out] = client.generate([SEA], max_new_tokens=4)
    assert "errors" not in out, out
    assert isinstance(out["generations"][0], str)
    # The server applies the GGUF's chat template too: same prompt as in-process.
    assert out["statistics"]["input_tokens"] == [_prompt_tokens(llm, _chatml(SEA))]
    assert isinstance(out["statistics"]["output_tokens"][0], int)


@pytest.mark.slow
@pytest.mark.llamacpp
@needs_llama_cpp
def test_openai_llm_fans_out_because_the_server_ignores_n(llamacpp_server: str) -> None:
    from alambic.llms.openai import OpenAILLM

    asked = {"model": "tiny", "messages": HELLO, "max_tokens": 2, "n": 3}
    assert len(_post(f"{llamacpp_server}/chat/completions", asked)["choices"]) == 1
    client = OpenAILLM(model="tiny", base_url=llamacpp_server)
    [out] = client.generate([HELLO], num_generations=3, max_new_tokens=4, temperature=1.0)
    assert "errors" not in out, out
    assert len(out["generations"]) == 3
    assert all(isinstance(t, str) for t in out["generations"])
    assert len(out["statistics"]["output_tokens"]) == 3
    [raw] = client.complete(["<|im_start|>user\n"], num_generations=2, max_new_tokens=3)
    assert "errors" not in raw, raw
    assert len(raw["generations"]) == 2


@pytest.mark.slow
@pytest.mark.llamacpp
@needs_llama_cpp
def test_openai_llm_structured_output_on_llamacpp_server(llamacpp_server: str) -> None:
    from alambic.llms.openai import OpenAILLM

    # llama-cpp-python's server takes a schema as {"type": "json_object", "schema": ...}
    # only: its request model rejects OpenAI's "json_schema" type with a 500. OpenAILLM
    # switches to that form on the first such refusal, without a retry or a failed row.
    client = OpenAILLM(
        model="tiny",
        base_url=llamacpp_server,
        structured_output_retries=0,
        generation_kwargs={"max_new_tokens": 80},
    )
    [out] = client.generate([(SEA, {"schema": SCHEMA})], num_generations=2)
    assert "errors" not in out or not any(out["errors"]), out
    assert len(out["generations"]) == 2
    for text in out["generations"]:
        _validates(text)
    assert client._schema_as_json_object is True
    assert client.scheduler.counters.retries == 0
    # the form can also be given outright
    explicit = OpenAILLM(
        model="tiny",
        base_url=llamacpp_server,
        structured_output_retries=0,
        generation_kwargs={
            "max_new_tokens": 80,
            "response_format": {"type": "json_object", "schema": SCHEMA},
        },
    )
    [out] = explicit.generate([(SEA, {"schema": SCHEMA})])
    assert "errors" not in out, out["errors"][0]["message"]
    _validates(out["generations"][0])
    assert explicit._schema_as_json_object is False
