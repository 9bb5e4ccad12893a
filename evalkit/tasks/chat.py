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

Items whose prompt cannot be split into turns (lm-eval tasks, or a native prompt that does not
rebuild exactly), and any other context a request carries, become a single user turn holding
the whole text.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from evalkit.errors import EvalkitError
from evalkit.requests import Generate, Loglikelihood, Request
from evalkit.tasks.base import Item, Task

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


@dataclass(frozen=True)
class Turns:
    """A prompt split into demonstrations (question, answer) and the final question."""

    shots: tuple[tuple[str, str], ...]
    question: str


def native_turns(task: Task, item: Item) -> Turns | None:
    """Rebuild a native task's prompt as turns; None when it does not rebuild exactly."""
    spec = getattr(task, "spec", None)
    docs_fn = getattr(task, "docs", None)
    if spec is None or docs_fn is None:
        return None
    try:
        docs: list[Mapping[str, Any]] = docs_fn()
        i = item.doc_id
        question = spec.prompt.format_map(docs[i])
        shots: list[tuple[str, str]] = []
        k = spec.fewshot.k
        if k:
            rng = random.Random(f"{spec.fewshot.seed}:{i}")
            pool = [j for j in range(len(docs)) if j != i]
            for j in rng.sample(pool, k):
                shots.append((spec.prompt.format_map(docs[j]), _answer(spec, docs[j])))
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        return None
    sep = spec.fewshot.separator
    # As native.py joins them: a log-likelihood continuation carries its own spacing, the
    # other kinds put the target delimiter between a demonstration's prompt and its answer.
    delim = "" if spec.request == "loglikelihood" else spec.target_delimiter
    rebuilt = "".join(q + delim + a + sep for q, a in shots) + question
    if rebuilt != item.prompt:
        return None
    return Turns(tuple((q, a.strip()) for q, a in shots), question)


def _answer(spec: Any, doc: Mapping[str, Any]) -> str:
    """A demonstration's answer as the raw prompt shows it (without the target delimiter for
    multiple choice and generation; a log-likelihood continuation includes its own spacing)."""
    if spec.request == "multiple_choice":
        return str(doc[spec.choices][doc[spec.gold]])
    if spec.request == "loglikelihood":
        return str(spec.continuation.format_map(doc))
    return str(spec.target.format_map(doc))


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
    """`item` as a chat checkpoint sees it through `fmt`'s template.

    The item's own prompt becomes turns (see `native_turns`); any other context a request
    carries (a probe that asks one document several ways) becomes a single user turn; an empty
    context (an unconditional log-likelihood) stays empty.
    """
    if not any(isinstance(r, Loglikelihood | Generate) for r in item.requests):
        return item  # rolling text: nothing to format
    rendered: dict[str, str] = {}

    def render(text: str) -> str:
        if text not in rendered:
            turns = native_turns(task, item) if text == item.prompt else None
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
    return replace(item, prompt=render(item.prompt), requests=tuple(requests))


def chat_items(task: Task, items: Sequence[Item], fmt: ChatFormat) -> list[Item]:
    return [chat_item(task, it, fmt) for it in items]
