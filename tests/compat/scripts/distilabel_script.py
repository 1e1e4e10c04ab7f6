# A script written for distilabel 1.5, unchanged.
from typing import Any, Dict, List, Union

from distilabel.llms import LLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts, StepInput, step
from distilabel.steps.tasks import Task, TextGeneration
from distilabel.steps.tasks.typing import ChatType
from distilabel.steps.typing import StepOutput


class EchoLLM(LLM):
    @property
    def model_name(self) -> str:
        return "echo"

    def load(self) -> None:
        super().load()

    def generate(self, inputs, num_generations: int = 1, **kwargs: Any):
        return [
            {
                "generations": [f"echo: {conv[-1]['content']}"] * num_generations,
                "statistics": {
                    "input_tokens": [1] * num_generations,
                    "output_tokens": [2] * num_generations,
                },
            }
            for conv in inputs
        ]


class Shout(Task):
    @property
    def inputs(self) -> List[str]:
        return ["instruction"]

    def format_input(self, input: Dict[str, Any]) -> ChatType:
        return [{"role": "user", "content": input["instruction"]}]

    @property
    def outputs(self) -> List[str]:
        return ["shout", "model_name"]

    def format_output(self, output: Union[str, None], input: Dict[str, Any]) -> Dict[str, Any]:
        return {"shout": None if output is None else output.upper()}


@step(inputs=["shout"], outputs=["length"])
def Length(inputs: StepInput) -> StepOutput:
    for row in inputs:
        row["length"] = len(row["shout"])
    yield inputs


if __name__ == "__main__":
    with Pipeline(name="old-script") as pipeline:
        load = LoadDataFromDicts(data=[{"instruction": "hi"}, {"instruction": "bye"}])
        shout = Shout(llm=EchoLLM())
        length = Length()
        load >> shout >> length
    distiset = pipeline.run(use_cache=False)
    rows = distiset["default"]["train"]
    print(
        list(rows["shout"]),
        list(rows["length"]),
        sorted(
            rows[
                "distilabel_metadata"
                if "distilabel_metadata" in rows.column_names
                else "alambic_metadata"
            ][0]
        ),
    )
