"""Score then compare, as a composition: the checkpoints among `evalkit compare`'s targets are
scored through the pipeline first (`run`, exactly as `evalkit score` would with the same
settings), and the comparison then reads only the stored runs. A checkpoint whose tokenizer has
a chat template is scored twice, on raw prompts and through the template (`chat=None`: when it
has one; `chat=False`: raw only; `chat=True`: it must have one)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.pipeline.config import RunConfig
from evalkit.pipeline.plan import Output
from evalkit.pipeline.run import run
from evalkit.tasks.chat import find_chat_template


@dataclass(frozen=True)
class Target:
    """A stored run to compare, and the label it is shown under."""

    path: Path
    label: str


def is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def score_checkpoint(
    checkpoint: Path,
    settings: Mapping[str, object],
    *,
    chat: bool | None,
    label: str,
    folder: Path,
    prefix: str,
    output: Output,
) -> list[Target]:
    """`checkpoint` scored with `settings` (RunConfig fields but `checkpoint` and
    `chat_template`) into `folder/<prefix><label>` (and `...+chat-template`)."""
    has_template = find_chat_template(checkpoint) is not None
    if chat and not has_template:
        raise EvalkitError(f"{checkpoint} has no chat template to score it with")
    config = RunConfig(checkpoint=str(checkpoint), **settings)  # type: ignore[arg-type]
    variants = [False, True] if (has_template if chat is None else chat) else [False]
    targets = []
    for templated in variants:
        name = label + ("+chat-template" if templated else "")
        where = replace(output, out=folder / f"{prefix}{name}")
        scored = run(config.replace(chat_template=templated), where)
        targets.append(Target(scored.path, name))
    return targets
