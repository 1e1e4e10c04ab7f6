"""APIGenExecutionChecker: run generated function calls against real Python functions.

The second stage of APIGen's verification (Liu et al., 2024, "APIGen: Automated Pipeline for
Generating Verifiable and Diverse Function-Calling Datasets", https://arxiv.org/abs/2406.18518):
a call that does not execute (unknown function, wrong arguments, an exception) is filtered
out before the semantic check.

The functions are the user's code and the calls are an LLM's, so neither runs in the
pipeline's process: each row's calls run in a fresh ``python -I`` subprocess (the script
``_apigen_runner.py``, standard library only) with a wall-clock timeout (the process group is
killed), CPU-time and memory limits, no file-size budget, and, with ``check_is_dangerous``
(default), an audit hook that refuses process creation, network access and file writes or
deletions. This contains mistakes and ordinary misbehaviour; it is not a security boundary
against deliberately hostile native code (run such libraries in a container).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

from alambic.errors import ColumnTypeError
from alambic.steps.base import Step
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput

_RUNNER = Path(__file__).with_name("_apigen_runner.py")


def parse_calls(value: Any) -> list[dict[str, Any]]:
    """The calls of an ``answers`` value: a JSON string or a list of ``{"name", "arguments"}``.

    OpenAI-style calls (``{"function": {"name", "arguments": "<json>"}}``) are accepted too.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"answers is not valid JSON ({exc.msg}): {value[:120]!r}") from exc
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"answers must be a list of calls, got {type(value).__name__}")
    calls: list[dict[str, Any]] = []
    for i, call in enumerate(value):
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            call = call["function"]
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"call {i} has no 'name': {call!r:.120}")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"call {i} arguments are not valid JSON ({exc.msg})") from exc
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ValueError(f"call {i} arguments must be an object, got {arguments!r:.80}")
        calls.append({"name": call["name"], "arguments": arguments})
    return calls


class APIGenExecutionChecker(Step):
    """Execute each row's ``answers`` against the functions in ``libpath``.

    ``libpath`` is a Python file holding the functions, or a folder with one file per
    function (``<name>.py`` defining ``<name>``; other files are searched if it is missing).
    Output columns: ``keep_row_after_execution_check`` (every call ran without error) and
    ``execution_result`` (one text per call: the returned value, or the error). A row whose
    ``answers`` cannot be read, or whose calls time out, is kept with ``False`` and the reason.
    """

    libpath: str = Field(description="A Python file, or a folder of files, with the functions.")
    check_is_dangerous: bool = Field(
        default=True,
        description="Refuse process creation, network access and file writes in the functions.",
    )
    timeout: PositiveFloat = Field(default=5.0, description="Seconds for one row's calls.")
    memory_limit_mb: PositiveInt = Field(default=2048, description="Address-space limit (MiB).")
    num_workers: PositiveInt = Field(default=2, description="Rows checked in parallel.")

    @field_validator("libpath")
    @classmethod
    def _existing(cls, value: str) -> str:
        path = Path(value)
        if not path.exists():
            raise ValueError(
                f"libpath {value!r} does not exist; give a .py file with the functions or a "
                "folder of <function_name>.py files."
            )
        return str(path.resolve())

    @property
    def inputs(self) -> StepColumns:
        return ["answers"]

    @property
    def outputs(self) -> StepColumns:
        return ["keep_row_after_execution_check", "execution_result"]

    def execute(self, calls: list[dict[str, Any]]) -> tuple[bool, list[str]]:
        """Run ``calls`` in a restricted subprocess: ``(all succeeded, one text per call)``."""
        if not calls:
            return False, ["no function call to execute"]
        request = {
            "libpath": self.libpath,
            "calls": calls,
            "block": self.check_is_dangerous,
            "cpu_seconds": int(self.timeout) + 1,
            "memory_bytes": self.memory_limit_mb * 1024 * 1024,
        }
        with tempfile.TemporaryDirectory(prefix="alambic-apigen-") as workdir:
            process = subprocess.Popen(
                [sys.executable, "-I", "-B", str(_RUNNER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env={"PATH": os.environ.get("PATH", ""), "HOME": workdir, "LANG": "C.UTF-8"},
                start_new_session=True,
                text=True,
            )
            try:
                stdout, stderr = process.communicate(json.dumps(request), timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                process.communicate()
                return False, [f"timed out after {self.timeout:g} s"] * len(calls)
        if process.returncode != 0 or not stdout.strip():
            reason = _describe_exit(process.returncode, stderr)
            return False, [reason] * len(calls)
        results = json.loads(stdout.strip().splitlines()[-1])["results"]
        return all(r["ok"] for r in results), [str(r["value"]) for r in results]

    def _check_row(self, row: Row) -> Row:
        try:
            calls = parse_calls(row.get("answers"))
        except ValueError as exc:
            return {**row, "keep_row_after_execution_check": False, "execution_result": [str(exc)]}
        keep, results = self.execute(calls)
        return {**row, "keep_row_after_execution_check": keep, "execution_result": results}

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows = list(inputs)
        for i, row in enumerate(rows):
            if row.get("answers") is None:
                continue
            if not isinstance(row["answers"], (str, list, dict)):
                raise ColumnTypeError(
                    f"Step {self.name!r} (APIGenExecutionChecker): row {i} column 'answers' "
                    f"must be a JSON string or a list of calls, got "
                    f"{type(row['answers']).__name__}."
                )
        with ThreadPoolExecutor(max_workers=self.num_workers) as pool:
            yield list(pool.map(self._check_row, rows))


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _describe_exit(code: int | None, stderr: str) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (CPU time limit)" if name == "SIGXCPU" else ""
        return f"the function process was killed by {name}{hint}"
    tail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    return f"the function process failed (exit {code}): {tail[:300]}"


__all__ = ["APIGenExecutionChecker", "parse_calls"]
