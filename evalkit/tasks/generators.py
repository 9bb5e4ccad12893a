"""Seeded document generators for native tasks: ONE explicit table of names.

A generator is `fn(rng, n, **params) -> list[dict]`: the same seed and params always give the
same documents. The table below is the only place a name is given; importing a generator module
registers nothing (no import side effects, no import cycle). A name listed twice is an error,
never a silent overwrite. To add a generator: write the function in a module, add one line here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from evalkit.tasks import basic_docgen as basic
from evalkit.tasks.basic_docgen import KV_FACT_KEYS, Doc, Generator, kv_fact_value
from evalkit.tasks.probes import docgen as transfer
from evalkit.tasks.probes import lookup

# KV_FACT_KEYS and kv_fact_value are re-exported for examples/train_tiny.py (the kv slice's facts).
__all__ = [
    "GENERATORS",
    "KV_FACT_KEYS",
    "Doc",
    "Generator",
    "generator_table",
    "get_generator",
    "kv_fact_value",
]


def generator_table(entries: Iterable[tuple[str, Generator]]) -> Mapping[str, Generator]:
    """A read-only name -> generator mapping; a name given twice is an error."""
    table: dict[str, Generator] = {}
    for name, fn in entries:
        if name in table:
            raise ValueError(f"generator {name!r} is listed twice")
        table[name] = fn
    return MappingProxyType(table)


GENERATORS: Mapping[str, Generator] = generator_table(
    [
        # the training slices' formats (basic_docgen)
        ("addition_mc", basic.addition_mc),
        ("kv_recall", basic.kv_recall),
        ("kv_facts_mc", basic.kv_facts_mc),
        ("prose", basic.prose),
        ("random_letters", basic.random_letters),
        # the transfer families (probes/docgen)
        ("arith_chain_mc", transfer.arith_chain_mc),
        ("gsm_word_problems", transfer.gsm_word_problems),
        ("logical_deduction_mc", transfer.logical_deduction_mc),
        ("number_words_mc", transfer.number_words_mc),
        ("mgsm_mc", transfer.mgsm_mc),
        ("sentence_match_mc", transfer.sentence_match_mc),
        ("function_learning_mc", transfer.function_learning_mc),
        ("category_words", transfer.category_words),
        ("made_up_mapping_mc", transfer.made_up_mapping_mc),
        ("long_story", transfer.long_story),
        # the few-shot lookup curve (probes/lookup): answers only the demonstrations reveal
        ("incontext_lookup_mc", lookup.incontext_lookup_mc),
    ]
)


def get_generator(name: str) -> Generator:
    try:
        return GENERATORS[name]
    except KeyError:
        known = ", ".join(sorted(GENERATORS))
        raise KeyError(f"unknown generator {name!r} (known: {known})") from None
