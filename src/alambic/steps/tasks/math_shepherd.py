"""Math-Shepherd: process-reward data for math, labelled without human annotation.

Wang et al., 2024, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human
Annotations" (https://arxiv.org/abs/2312.08935). A generator writes step-by-step solutions;
for every step, a completer samples ``N`` continuations from that step on; a step is good
("hard estimation") when at least one continuation reaches the golden answer. The labelled
steps train a process reward model (PRM); :class:`~alambic.steps.tasks.FormatPRM` writes them
in the layouts PRM trainers read.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt

from alambic.errors import METADATA_COLUMN, ColumnTypeError, ErrorKind, error_entry
from alambic.llms.typing import ChatType, GenerateOutput, GenerationError
from alambic.steps.checks import require_text
from alambic.steps.tasks._lenient import LenientFormatOutput
from alambic.steps.tasks._math_answers import final_answer, same_answer, split_steps
from alambic.steps.tasks._parsing import ReplyParseError, preview
from alambic.steps.tasks._templates import render
from alambic.steps.tasks.base import Task
from alambic.steps.typing import Row, StepColumns, StepInput, StepOutput

FEW_SHOTS = """Problem: A baker makes 12 rolls per tray and bakes 5 trays. She sells 47 rolls. How many are left?
Step 1: The baker makes 12 * 5 = 60 rolls.
Step 2: After selling 47, 60 - 47 = 13 rolls are left.
The answer is: 13

Problem: A train travels 180 km in 2 hours, then 90 km in 1 hour. What is its average speed in km/h?
Step 1: The total distance is 180 + 90 = 270 km.
Step 2: The total time is 2 + 1 = 3 hours.
Step 3: The average speed is 270 / 3 = 90 km/h.
The answer is: 90"""
"""Two worked examples in the expected format (our own problems)."""


def _system(extra_rules: str | None, few_shots: str | None) -> str:
    return render("math_shepherd", "system_generator", extra_rules=extra_rules, few_shots=few_shots)


class MathShepherdGenerator(LenientFormatOutput, Task):
    """Solve ``instruction`` step by step.

    With ``M`` unset, writes ``golden_solution``: one solution as a list of steps, ending
    with ``"The answer is: X"`` (use a strong model; it is the reference). With ``M`` set,
    writes ``solutions``: ``M`` different solutions, each such a list (use the model whose
    steps the PRM will judge). ``few_shots`` (default: two worked examples) and
    ``extra_rules`` are added to the system prompt. A reply whose solutions have no steps or
    no answer line (truncated), or fewer than ``M`` solutions, is a failed row.
    """

    M: PositiveInt | None = Field(default=None, description="Solutions per problem (None: golden).")
    extra_rules: str | None = Field(default=None, description="More rules for the solver.")
    few_shots: str | None = Field(default=FEW_SHOTS, description="Worked examples shown.")
    system_prompt: str | None = Field(
        default=None, description="Replaces the built-in system prompt when set."
    )

    @property
    def inputs(self) -> StepColumns:
        return ["instruction"]

    @property
    def outputs(self) -> StepColumns:
        return ["golden_solution" if self.M is None else "solutions", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        instruction = require_text(self.name, "instruction", input.get("instruction"))
        system = self.system_prompt or _system(self.extra_rules, self.few_shots)
        user = render("math_shepherd", "generator", instruction=instruction, M=self.M)
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if output is None:
            raise ReplyParseError("the LLM returned no text")
        if self.M is None:
            return {"golden_solution": split_steps(output)}
        parts = [p for p in _split_solutions(output) if p.strip()]
        solutions: list[list[str]] = []
        for part in parts:
            try:
                solutions.append(split_steps(part))
            except ReplyParseError:
                continue
        if len(solutions) < self.M:
            raise ReplyParseError(
                f"asked for {self.M} solutions, {len(solutions)} have steps and an answer: "
                f"{preview(output)!r}"
            )
        return {"solutions": solutions[: self.M]}


def _steps_of(solution: list[str]) -> list[str]:
    return [x for x in solution if not x.strip().lower().startswith("the answer is")]


def _split_solutions(text: str) -> list[str]:
    chunks: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip() in {"---", "***", "___"} or line.strip().startswith("---"):
            chunks.append([])
        else:
            chunks[-1].append(line)
    if len(chunks) == 1:  # no separators: one solution per answer line
        chunks = [[]]
        for line in text.splitlines():
            chunks[-1].append(line)
            if final_answer(line) is not None:
                chunks.append([])
    return ["\n".join(c) for c in chunks]


class MathShepherdCompleter(LenientFormatOutput, Task):
    """Label each step of ``solutions`` by completing the solution from it ``N`` times.

    Inputs: ``instruction``, ``solutions`` (from :class:`MathShepherdGenerator` with ``M``)
    and ``golden_solution`` (its last item holds the reference answer). For each solution and
    each step before the answer line, the LLM continues from that step ``N`` times; the step
    gets the good tag (``tags[0]``, ``"+"``) when a continuation reaches the golden answer,
    else the bad tag (``tags[1]``, ``"-"``). The solution's own answer decides its last step.
    Output: ``solutions`` with the tag appended to each step (``"Step 1: ... +"``), the answer
    line dropped. Every request of a row goes out in one batch; a row whose requests failed
    keeps ``solutions`` ``None`` with the reason in ``alambic_metadata``. The row's metadata
    holds ``statistics_<name>`` (its tokens, all requests together) and, as distilabel's
    keys, ``raw_output_<name>`` (the texts of its continuations, ``N`` per request, in order)
    and ``raw_input_<name>`` (the requests' messages), each a list over the row's requests.
    """

    N: PositiveInt = Field(default=4, description="Completions per step.")
    tags: list[str] = Field(default_factory=lambda: ["+", "-"], min_length=2, max_length=2)
    system_prompt: str | None = Field(
        default=None, description="Replaces the built-in system prompt when set."
    )
    few_shots: str | None = Field(default=FEW_SHOTS, description="Worked examples shown.")

    @property
    def inputs(self) -> StepColumns:
        return ["instruction", "solutions", "golden_solution"]

    @property
    def outputs(self) -> StepColumns:
        return ["solutions", "model_name"]

    def format_input(self, input: dict[str, Any]) -> ChatType:
        """The request to continue ``input["steps"]`` (a solution cut after one step)."""
        system = self.system_prompt or _system(None, self.few_shots)
        user = render(
            "math_shepherd",
            "completer",
            instruction=require_text(self.name, "instruction", input.get("instruction")),
            steps=input.get("steps", []),
        )
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def parse_output(
        self, output: str | None, input: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The answer a continuation reached (``None`` when it has none)."""
        return {"answer": final_answer(output or "")}

    def _solutions(self, index: int, row: Row) -> tuple[list[list[str]], str | None]:
        solutions = row.get("solutions")
        golden = row.get("golden_solution")
        if not isinstance(solutions, list) or not all(
            isinstance(s, list) and all(isinstance(x, str) for x in s) for s in solutions
        ):
            raise ColumnTypeError(
                f"Step {self.name!r} (MathShepherdCompleter): row {index} column 'solutions' "
                f"must be a list of solutions, each a list of step texts; got {solutions!r:.80}."
            )
        if not isinstance(golden, list) or not golden or not isinstance(golden[-1], str):
            raise ColumnTypeError(
                f"Step {self.name!r} (MathShepherdCompleter): row {index} column "
                f"'golden_solution' must be a list of steps ending with 'The answer is: ...'; "
                f"got {golden!r:.80}."
            )
        return solutions, final_answer(golden[-1])

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        rows = list(inputs)
        plans: list[tuple[list[list[str]], str | None]] = []
        prompts: list[ChatType] = []
        owners: list[tuple[int, int, int]] = []  # (row, solution, step)
        for r, row in enumerate(rows):
            if row.get("solutions") is None or row.get("golden_solution") is None:
                plans.append(([], None))
                continue
            solutions, golden = self._solutions(r, row)
            plans.append((solutions, golden))
            for s, solution in enumerate(solutions):
                steps = _steps_of(solution)
                for k in range(max(0, len(steps) - 1)):
                    prompts.append(self.format_input({**row, "steps": steps[: k + 1]}))
                    owners.append((r, s, k))
        outputs: list[GenerateOutput] = (
            self.llm.generate(prompts, num_generations=self.N) if prompts else []
        )
        reached: dict[tuple[int, int, int], bool] = {}
        failed: dict[int, str] = {}
        tokens: dict[int, list[int]] = {}
        raw_outputs: dict[int, list[str | None]] = {}
        raw_inputs: dict[int, list[ChatType]] = {}
        for owner, prompt, out in zip(owners, prompts, outputs, strict=True):
            r = owner[0]
            raw_outputs.setdefault(r, []).extend(out["generations"])
            raw_inputs.setdefault(r, []).append(prompt)
            errors = [e for e in (out.get("errors") or []) if e]
            if errors and all(g is None for g in out["generations"]):
                failed.setdefault(r, f"{errors[0]['type']}: {errors[0]['message']}")
            golden = plans[r][1]
            reached[owner] = any(
                same_answer(final_answer(g or ""), golden) for g in out["generations"]
            )
            stats = tokens.setdefault(r, [0, 0])
            stats[0] += sum(t or 0 for t in out["statistics"]["input_tokens"])
            stats[1] += sum(t or 0 for t in out["statistics"]["output_tokens"])
        good, bad = self.tags[0], self.tags[1]
        result: list[Row] = []
        for r, row in enumerate(rows):
            solutions, golden = plans[r]
            meta = dict(row.get(METADATA_COLUMN) or {})
            in_tok, out_tok = tokens.get(r, [0, 0])
            meta[f"statistics_{self.name}"] = {"input_tokens": in_tok, "output_tokens": out_tok}
            if self.add_raw_output:
                meta[f"raw_output_{self.name}"] = raw_outputs.get(r, [])
            if self.add_raw_input:
                meta[f"raw_input_{self.name}"] = raw_inputs.get(r, [])
            labelled: list[list[str]] | None = []
            error: str | None = failed.get(r)
            if row.get("solutions") is None or row.get("golden_solution") is None:
                error = "the row has no solutions or no golden_solution (an upstream failure)"
            elif golden is None:
                golden_text = preview(str(row["golden_solution"]))
                error = f"the golden_solution has no answer line: {golden_text!r}"
            if error is None:
                assert labelled is not None
                for s, solution in enumerate(solutions):
                    steps = _steps_of(solution)
                    own = final_answer(solution[-1]) if solution else None
                    tagged = [
                        f"{step} {good if reached.get((r, s, k)) else bad}"
                        for k, step in enumerate(steps[:-1])
                    ]
                    if steps:
                        tagged.append(f"{steps[-1]} {good if same_answer(own, golden) else bad}")
                    labelled.append(tagged)
            else:
                labelled = None
                info: GenerationError = error_entry(
                    ErrorKind.FORMAT_OUTPUT, error, type="ReplyParseError"
                )
                meta[f"error_{self.name}"] = dict(info)
                self._record_failure(info)
            new = {k: v for k, v in row.items() if k != METADATA_COLUMN}
            new["solutions"] = labelled
            new[METADATA_COLUMN] = meta
            new["model_name"] = self.llm.model_name
            result.append(new)
        yield result


__all__ = ["FEW_SHOTS", "MathShepherdCompleter", "MathShepherdGenerator"]
