"""Rendering documents through `str.format` templates, failing loudly: shared by native and
probe tasks so every task reports a missing field the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from evalkit.errors import EvalkitError


class Renderer:
    """`str.format` templates over documents; a missing field names task, template, doc."""

    def __init__(self, task: str) -> None:
        self.task = task

    def render(self, name: str, template: str, doc: Mapping[str, Any], i: int) -> str:
        try:
            return template.format_map(doc)
        except KeyError as exc:
            raise EvalkitError(
                f"task {self.task}: template {name!r} uses {{{exc.args[0]}}}, which doc {i} "
                f"lacks (fields: {', '.join(sorted(doc))})"
            ) from None
        except (IndexError, ValueError) as exc:
            raise EvalkitError(
                f"task {self.task}: template {name!r} cannot render doc {i}: {exc}"
            ) from None

    def field(self, doc: Mapping[str, Any], key: str, i: int) -> Any:
        if key not in doc:
            raise EvalkitError(
                f"task {self.task}: doc {i} lacks field {key!r} (fields: {', '.join(sorted(doc))})"
            )
        return doc[key]

    def choices(
        self, doc: Mapping[str, Any], key: str, gold_key: str, i: int
    ) -> tuple[list[str], int]:
        choices = self.field(doc, key, i)
        gold = self.field(doc, gold_key, i)
        if not isinstance(choices, list) or len(choices) < 2:
            raise EvalkitError(f"task {self.task}: doc {i} field {key!r} is not a list of >= 2")
        if not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise EvalkitError(f"task {self.task}: doc {i} has gold index {gold!r} out of range")
        return [str(c) for c in choices], gold
