"""Chat-template formatting of task items: the same questions as a chat checkpoint sees them.

A chat checkpoint is scored twice, on the raw prompts and through its tokenizer's chat
template, so a comparison can separate what tuning changed from what the format changed.

Formatting follows lm-eval's `apply_chat_template` with `fewshot_as_multiturn`:

- each few-shot demonstration of a native task becomes a user turn (its prompt) and an
  assistant turn (its answer); the item's own prompt is the last user turn, and the template
  adds its generation prompt;
- a multiple-choice or log-likelihood continuation keeps its leading delimiter only when the
  rendered prompt does not already end in whitespace (lm-eval's rule for a generation prefix
  under a chat template): the template's generation prompt decides what precedes the answer;
- generation prompts are replaced by the rendered conversation; stop sequences stay;
- rolling (perplexity) items are text, not questions, and are left as they are.

How a prompt splits into turns is the task's own declaration (`Task.chat_turns`; native tasks
split their few-shot demonstrations). A task that gives no turns (lm-eval tasks, probes, code),
and any other context a request carries, becomes a single user turn holding the whole text;
`chat_all` counts those items per task so the manifest records it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.requests import Generate, Loglikelihood, Request
from evalkit.tasks.base import Item, Task, Turns

Message = dict[str, str]
# Renders a conversation and appends the assistant's generation prompt.
ChatRenderer = Callable[[list[Message]], str]


@dataclass(frozen=True)
class ChatFormat:
    render: ChatRenderer
    template_hash: str
    fewshot_as_multiturn: bool = True
    system: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "applied": True,
            "template_sha256": self.template_hash,
            "fewshot_as_multiturn": self.fewshot_as_multiturn,
            "system": self.system,
        }


def find_chat_template(checkpoint: Path) -> str | None:
    """The chat template a checkpoint's tokenizer carries (tokenizer_config.json's
    `chat_template`, or a `chat_template.jinja` file), or None."""
    jinja = checkpoint / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    cfg = checkpoint / "tokenizer_config.json"
    if not cfg.is_file():
        return None
    try:
        raw = json.loads(cfg.read_text(encoding="utf-8"))
    except ValueError:
        return None
    template = raw.get("chat_template") if isinstance(raw, dict) else None
    if isinstance(template, list):  # named templates: use the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template.strip() else None


def template_hash(template: str) -> str:
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]


def messages_for(turns: Turns, fmt: ChatFormat) -> list[Message]:
    messages: list[Message] = []
    if fmt.system:
        messages.append({"role": "system", "content": fmt.system})
    if fmt.fewshot_as_multiturn:
        for q, a in turns.shots:
            messages.append({"role": "user", "content": q})
            messages.append({"role": "assistant", "content": a})
        messages.append({"role": "user", "content": turns.question})
    else:
        text = "".join(f"{q} {a}\n\n" for q, a in turns.shots) + turns.question
        messages.append({"role": "user", "content": text})
    return messages


def chat_item(task: Task, item: Item, fmt: ChatFormat) -> Item:
    """`item` as a chat checkpoint sees it through `fmt`'s template."""
    return _chat_item(task, item, fmt)[0]


def _chat_item(task: Task, item: Item, fmt: ChatFormat) -> tuple[Item, bool]:
    """`item` through `fmt`'s template, and whether its prompt became a single user turn.

    The item's own prompt becomes the turns the task gives (`Task.chat_turns`); any other
    context a request carries (a probe that asks one document several ways) becomes a single
    user turn; an empty context (an unconditional log-likelihood) stays empty.
    """
    if not any(isinstance(r, Loglikelihood | Generate) for r in item.requests):
        return item, False  # rolling text: nothing to format
    own = task.chat_turns(item)
    rendered: dict[str, str] = {}

    def render(text: str) -> str:
        if text not in rendered:
            turns = own if text == item.prompt else None
            context = fmt.render(messages_for(turns or Turns((), text.rstrip()), fmt))
            if not context:
                raise EvalkitError(f"task {task.name}: the chat template rendered an empty prompt")
            rendered[text] = context
        return rendered[text]

    requests: list[Request] = []
    for r in item.requests:
        if isinstance(r, Loglikelihood) and r.context:
            context = render(r.context)
            cont = r.continuation
            if context[-1].isspace():
                cont = cont.lstrip() or cont
            requests.append(Loglikelihood(context, cont))
        elif isinstance(r, Generate):
            requests.append(replace(r, prompt=render(r.prompt)))
        else:
            requests.append(r)
    return replace(item, prompt=render(item.prompt), requests=tuple(requests)), own is None


def chat_items(task: Task, items: Sequence[Item], fmt: ChatFormat) -> list[Item]:
    return [chat_item(task, it, fmt) for it in items]


def chat_all(
    tasks: Sequence[Task], items: Mapping[str, Sequence[Item]], fmt: ChatFormat
) -> tuple[dict[str, list[Item]], dict[str, int]]:
    """Every task's items through `fmt`, and per task the number of items shown as a single
    user turn (the task gave no turns for them); tasks with none are left out."""
    out: dict[str, list[Item]] = {}
    single: dict[str, int] = {}
    for t in tasks:
        done = [_chat_item(t, it, fmt) for it in items[t.name]]
        out[t.name] = [it for it, _ in done]
        n = sum(one for _, one in done)
        if n:
            single[t.name] = n
    return out, single
