"""APIGen: the generator's and the judge's parsers, the tool formats, and the execution
checker's sandbox (timeouts and side effects are contained in the subprocess)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from alambic.llms.fake import FakeLLM
from alambic.steps.tasks import APIGenExecutionChecker, APIGenGenerator, APIGenSemanticChecker
from alambic.steps.tasks._parsing import ReplyParseError
from alambic.steps.tasks.apigen_utils import (
    anthropic_tools,
    calls_to_anthropic,
    calls_to_hermes,
    calls_to_openai,
    describe_functions,
    function_rows,
    hermes_tools,
)

LIBRARY = '''
import os
import time


def add(a: int, b: int = 0) -> int:
    """Add two integers.

    Args:
        a: the first number.
        b: the second number.
    """
    return a + b


def shout(text: str) -> str:
    """Upper-case a text."""
    print("printing is captured, not mixed into the result")
    return text.upper()


def spin(seconds: float) -> None:
    """Never returns."""
    while True:
        pass


def sleepy(seconds: float) -> None:
    """Sleeps without using CPU."""
    time.sleep(seconds)


def escape(path: str) -> int:
    """Tries to run a shell command."""
    return os.system("touch " + path)


def scribble(path: str) -> str:
    """Tries to write a file."""
    with open(path, "w") as handle:
        handle.write("x")
    return "written"


def _private() -> None:
    pass
'''


@pytest.fixture
def library(tmp_path: Path) -> Path:
    path = tmp_path / "tools.py"
    path.write_text(LIBRARY)
    return path


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


# ----------------------------------------------------------------------- generator


def generator(**kw: Any) -> APIGenGenerator:
    return APIGenGenerator(name="gen", llm=FakeLLM(), **kw)


ROW = {"examples": "QUERY: add 1 and 2\nANSWER: ...", "func_name": "add", "func_desc": "Adds."}


def test_generator_prompt_holds_function_examples_and_tools() -> None:
    messages = generator(number=3, is_parallel=True).format_input({**ROW, "tools": '[{"x": 1}]'})
    assert messages[0]["role"] == "system"  # type: ignore[index]
    prompt = messages[-1]["content"]  # type: ignore[index]
    assert "Write 3 different requests for the function `add`" in prompt
    assert "QUERY: add 1 and 2" in prompt
    assert "several functions" in prompt
    assert '[{"x": 1}]' in prompt
    assert (
        "tools available"
        not in generator(use_tools=False).format_input({**ROW, "tools": "T"})[-1]["content"]
    )  # type: ignore[index]


def test_generator_structured_output_sends_a_schema() -> None:
    _messages, extra = generator(use_default_structured_output=True, number=2).format_input(ROW)  # type: ignore[misc]
    assert extra["schema"]["properties"]["pairs"]["minItems"] == 2


@pytest.mark.parametrize(
    "reply",
    [
        '[{"query": "What is 2 plus 3?", "answers": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}]',
        'Here you go:\n```json\n[{"query": "What is 2 plus 3?", "answers": '
        '[{"name": "add", "arguments": {"a": 2, "b": 3}}]}]\n```\nHope this helps!',
        '{"pairs": [{"query": "What is 2 plus 3?", "answers": '
        '[{"name": "add", "arguments": "{\\"a\\": 2, \\"b\\": 3}"}]}]}',
    ],
)
def test_generator_reads_well_formed_and_prosy_replies(reply: str) -> None:
    out = generator().format_output(reply, ROW)
    assert out["query"] == "What is 2 plus 3?"
    assert json.loads(out["answers"]) == [call("add", a=2, b=3)]


def test_generator_with_number_gives_lists() -> None:
    pairs = [{"query": f"q{i}", "answers": [call("add", a=i)]} for i in range(3)]
    out = generator(number=2).format_output(json.dumps(pairs), ROW)
    assert out["query"] == ["q0", "q1"]
    assert [json.loads(a) for a in out["answers"]] == [[call("add", a=0)], [call("add", a=1)]]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('[{"query": "What is 2 plus 3?", "answers": [{"name": "add", "argu', "JSON"),
        ("I cannot help with that.", "JSON"),
        ('[{"query": "", "answers": []}]', "no 'query'"),
        ('[{"query": "q", "answers": [{"arguments": {}}]}]', "no 'name'"),
        ('[{"query": "q", "answers": []}]', "no function call"),
        ("[1, 2]", "not an object"),
    ],
)
def test_generator_rejects_truncated_and_garbage_replies(reply: str, reason: str) -> None:
    with pytest.raises(ReplyParseError, match=reason):
        generator().parse_output(reply, ROW)


def test_generator_too_few_pairs_is_a_failure() -> None:
    with pytest.raises(ReplyParseError, match="asked for 2"):
        generator(number=2).parse_output('[{"query": "q", "answers": [{"name": "a"}]}]', ROW)


# ----------------------------------------------------------------------- semantic checker


def checker() -> APIGenSemanticChecker:
    return APIGenSemanticChecker(name="judge", llm=FakeLLM())


def test_semantic_prompt_holds_every_part() -> None:
    messages = checker().format_input(
        {
            "func_desc": "Adds.",
            "query": "2+3?",
            "answers": '[{"name": "add"}]',
            "execution_result": ["5"],
        }
    )
    prompt = messages[-1]["content"]  # type: ignore[index]
    for part in ("Adds.", "2+3?", '[{"name": "add"}]', "5"):
        assert part in prompt


@pytest.mark.parametrize(
    ("reply", "keep", "thought"),
    [
        ('{"thought": "", "passes": "yes"}', True, ""),
        (
            'Let me check.\n```json\n{"thought": "wrong args", "passes": "No"}\n```',
            False,
            "wrong args",
        ),
        ('{"thought": "fine", "pass": true}', True, "fine"),
        ("The call matches the query.\nPasses: yes", True, ""),
    ],
)
def test_semantic_checker_reads_verdicts(reply: str, keep: bool, thought: str) -> None:
    assert checker().format_output(reply) == {
        "keep_row_after_semantic_check": keep,
        "thought": thought,
    }


@pytest.mark.parametrize(
    "reply", ['{"thought": "hmm", "pas', "%%%", '{"thought": "x", "passes": "maybe"}']
)
def test_semantic_checker_rejects_truncated_and_garbage(reply: str) -> None:
    with pytest.raises(ReplyParseError, match="verdict"):
        checker().parse_output(reply)


# ----------------------------------------------------------------------- tool formats


def test_describe_functions_reads_the_library_without_running_it(
    library: Path, tmp_path: Path
) -> None:
    specs = {s["function"]["name"]: s["function"] for s in describe_functions(library)}
    assert sorted(specs) == ["add", "escape", "scribble", "shout", "sleepy", "spin"]
    add = specs["add"]
    assert add["description"] == "Add two integers."
    assert add["parameters"] == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "the first number."},
            "b": {"type": "integer", "description": "the second number.", "default": 0},
        },
        "required": ["a"],
    }
    assert "tools" not in sys.modules
    rows = function_rows(library)
    assert rows[0]["func_name"] == "add"
    assert json.loads(rows[0]["tools"])[0]["function"]["name"] == "add"
    with pytest.raises(FileNotFoundError, match="no Python file"):
        describe_functions(tmp_path / "missing.py")


def test_tool_formats() -> None:
    specs = [
        {
            "type": "function",
            "function": {"name": "add", "description": "Adds.", "parameters": {"type": "object"}},
        }
    ]
    assert anthropic_tools(specs) == [
        {"name": "add", "description": "Adds.", "input_schema": {"type": "object"}}
    ]
    assert hermes_tools(specs).startswith("<tools>\n{")
    answers = json.dumps([call("add", a=1)])
    assert calls_to_openai(answers) == [
        {"id": "call_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
    ]
    assert calls_to_anthropic(answers) == [
        {"type": "tool_use", "id": "toolu_0", "name": "add", "input": {"a": 1}}
    ]
    assert (
        calls_to_hermes(answers)
        == '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'
    )


# ----------------------------------------------------------------------- execution checker


def execute(library: Path, rows: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    kw.setdefault("timeout", 30)  # generous: a busy CI machine starts Python slowly
    step = APIGenExecutionChecker(name="exec", libpath=str(library), **kw)
    step.load()
    return next(step.process(rows))


def test_execution_runs_calls_and_reports_results(library: Path) -> None:
    rows = execute(
        library,
        [
            {"answers": json.dumps([call("add", a=2, b=3), call("shout", text="hi")])},
            {"answers": [call("add", a=1, c=2)]},
            {"answers": [call("nope")]},
            {"answers": "not json"},
            {"answers": None},
        ],
    )
    assert rows[0]["keep_row_after_execution_check"] is True
    assert rows[0]["execution_result"] == ["5", "HI"]
    assert rows[1]["keep_row_after_execution_check"] is False
    assert "unexpected keyword argument 'c'" in rows[1]["execution_result"][0]
    assert "no function 'nope'" in rows[2]["execution_result"][0]
    assert "not valid JSON" in rows[3]["execution_result"][0]
    assert rows[4]["keep_row_after_execution_check"] is False
    # the library was never imported into this process
    assert not any("apigen_lib" in name for name in sys.modules)


def test_an_infinite_loop_is_killed_at_the_timeout(library: Path) -> None:
    start = time.monotonic()
    rows = execute(
        library,
        [{"answers": [call("spin", seconds=1)]}, {"answers": [call("sleepy", seconds=60)]}],
        timeout=1.5,
    )
    assert time.monotonic() - start < 10
    for row in rows:
        assert row["keep_row_after_execution_check"] is False
        assert row["execution_result"] == ["timed out after 1.5 s"]


def test_os_system_and_file_writes_are_contained(library: Path, tmp_path: Path) -> None:
    touched = tmp_path / "touched"
    written = tmp_path / "written"
    rows = execute(
        library,
        [
            {"answers": [call("escape", path=str(touched))]},
            {"answers": [call("scribble", path=str(written))]},
        ],
    )
    assert not touched.exists()
    assert not written.exists()
    assert rows[0]["keep_row_after_execution_check"] is False
    assert "os.system is not allowed" in rows[0]["execution_result"][0]
    assert "for writing" in rows[1]["execution_result"][0]


def test_library_folder_with_one_file_per_function(tmp_path: Path) -> None:
    (tmp_path / "double.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "triple.py").write_text("def triple(x):\n    return 3 * x\n")
    rows = execute(tmp_path, [{"answers": [call("double", x=2), call("triple", x=2)]}])
    assert rows[0]["execution_result"] == ["4", "6"]


def test_missing_library_is_an_error_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        APIGenExecutionChecker(libpath=str(tmp_path / "nope.py"))


def test_the_runner_does_not_inherit_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    lib = tmp_path / "env.py"
    lib.write_text(
        "import os\n\ndef env():\n    return os.environ.get('OPENAI_API_KEY', 'unset')\n"
    )
    assert execute(lib, [{"answers": [call("env")]}])[0]["execution_result"] == ["unset"]
    assert os.environ["OPENAI_API_KEY"] == "sk-secret"
