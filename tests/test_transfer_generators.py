"""The transfer suite's generators, templates and suites: pinned first items and content
hashes, every template in every language, suite membership, transfer-full vs lm-eval."""

from __future__ import annotations

import importlib.util
import random
import string
from pathlib import Path

import pytest

from evalkit.backends.fake import ByteTokenizer
from evalkit.tasks.base import WindowedTokenizer
from evalkit.tasks.generators import GENERATORS
from evalkit.tasks.probes import languages as L
from evalkit.tasks.registry import load_suite, read_yaml, resolve_tasks

ROOT = Path(__file__).resolve().parents[1]

# Content hashes (first 16 hex digits) of every transfer task's items, built with the fake
# backend's byte tokenizer. They change exactly when a task's items change: if you changed a
# generator, template or seed on purpose, bump the task's version and update the pin.
PINNED = {
    "reasoning_arith_mc": ("aef29fbfefade8ce", 120),
    "reasoning_arith_chain_mc": ("290ce38a9e4827cb", 120),
    "reasoning_logical_deduction_mc": ("12527d085f9811eb", 90),
    "reasoning_word_problems_gen": ("9036e568d9b0de30", 40),
    "multilingual_number_words_mc": ("44a884d3bc0a372b", 168),
    "multilingual_mgsm_mc": ("379c9952c8040886", 160),
    "multilingual_sentence_match_mc": ("548db9b98b3a1112", 160),
    "icl_fewshot_curve": ("a9fa3c95ca9b8cd3", 496),
    "icl_label_probe": ("58f04d7599e2e703", 504),
    "icl_flipped_labels": ("1cf05f0551697e69", 400),
    "icl_induction": ("4979c183508263e1", 40),
    "icl_olsson": ("8390250ecc2f011b", 40),
    "icl_function_learning_mc": ("aba15fb80b4985fa", 100),
    "control_made_up_mapping_mc": ("466ffaa765e88b86", 200),
    "code_tiny_functions": ("db262390e56eaedb", 16),
    "code_humaneval_small": ("85a668e8c92eb164", 16),
    # Needle tasks depend on the window too: pinned at BYTE_WINDOW.
    "longctx_niah_single": ("de7fda4e8db7efb4", 24),
    "longctx_niah_multikey": ("d659bc9cdfa92144", 24),
    "longctx_niah_multivalue": ("457894385c4daa38", 24),
    "longctx_niah_multiquery": ("d4be76631a74b4f8", 18),
}
BYTE_WINDOW = 4096

FIRST_DOCS = {
    "arith_chain_mc": {
        "expression": "12 + 13", "answer": "25", "choices": ["25", "24", "20", "28"],
        "gold": 0, "difficulty": "2_operands",
    },
    "gsm_word_problems": {
        "question": "Lily has 2 marbles. Lily gives away 1 marbles. How many marbles does "
        "Lily have now?",
        "solution": "2 - 1 = 1. The answer is 1.", "answer": "1", "difficulty": "2_steps",
    },
    "logical_deduction_mc": {
        "premises": "Gus is taller than Hal. Hal is taller than Dan.",
        "question": "Who is the shortest?", "choices": ["Dan", "Gus", "Hal"], "gold": 0,
        "difficulty": "3_people",
    },
    "number_words_mc": {
        "word": "ten", "answer": "10", "choices": ["12", "11", "6", "10"], "gold": 3,
        "language": "en", "script": "Latin",
    },
    "function_learning_mc": {
        "pairs": "0 -> 6\n4 -> 22\n7 -> 34\n3 -> 18\n2 -> 14", "x": 6, "answer": "30",
        "choices": ["31", "30", "24", "26"], "gold": 1, "slope": 4, "intercept": 6,
    },
    "category_words": {"word": "wolf", "label": "animal", "choices": ["animal", "food"], "gold": 0},
    "made_up_mapping_mc": {
        "key": "tzirw", "choices": ["mynbi", "qpmzj", "plsgq", "ejeyd"], "gold": 1,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def transfer_tasks() -> dict[str, object]:
    return {t.name: t for t in resolve_tasks(list(load_suite("transfer").tasks))}


def test_transfer_suite_lists_the_pinned_tasks(transfer_tasks: dict[str, object]) -> None:
    assert set(transfer_tasks) == set(PINNED)
    raw = read_yaml(ROOT / "tasks" / "suites" / "transfer.yaml")
    flat = [t for names in raw["families"].values() for t in names]
    assert sorted(flat) == sorted(raw["tasks"])
    for family, names in raw["families"].items():
        for n in names:
            assert transfer_tasks[n].family == family  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_content_hash_and_count_pinned(name: str, transfer_tasks: dict[str, object]) -> None:
    task = transfer_tasks[name]
    tok = WindowedTokenizer(ByteTokenizer(), BYTE_WINDOW)
    items = task.items(None, tok)  # type: ignore[attr-defined]
    assert (task.content_hash(items)[:16], len(items)) == PINNED[name]  # type: ignore[attr-defined]
    again = task.items(None, tok)  # type: ignore[attr-defined]
    assert again == items  # deterministic
    for it in items:
        assert dict(it.tags)["family"] == task.family  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(FIRST_DOCS))
def test_generator_first_doc_pinned(name: str) -> None:
    docs = GENERATORS[name](random.Random(0), 2)
    assert docs[0] == FIRST_DOCS[name]
    assert GENERATORS[name](random.Random(0), 2) == docs
    assert GENERATORS[name](random.Random(1), 2) != docs


def test_content_hash_changes_with_the_seed(transfer_tasks: dict[str, object]) -> None:
    from dataclasses import replace

    from evalkit.tasks.native import NativeTask

    task = transfer_tasks["reasoning_arith_mc"]
    assert isinstance(task, NativeTask)
    other = NativeTask(replace(task.spec, docs=replace(task.spec.docs, seed=1)))
    assert other.content_hash(other.items()) != task.content_hash(task.items())


def test_number_words_match_the_training_script() -> None:
    spec = importlib.util.spec_from_file_location("train_tiny", ROOT / "examples" / "train_tiny.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The script imports the table; what must hold is that its multilingual slice states
    # exactly the words the tasks ask about, and no others.
    word_to_n = {(lang, w): n for lang, ws in L.NUMBER_WORDS.items() for n, w in enumerate(ws)}
    seen_langs = set()
    for doc in module.gen_multilingual(random.Random(0), 200):
        pairs = [line.rsplit(" = ", 1) for line in doc.splitlines()]
        langs = {lang for lang, ws in L.NUMBER_WORDS.items() if all(w in ws for w, _ in pairs)}
        right = [lang for lang in langs if all(word_to_n[(lang, w)] == int(n) for w, n in pairs)]
        assert right, doc
        seen_langs.update(right if len(right) == 1 else ())
    assert seen_langs == set(L.NUMBER_WORDS)


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_languages_cover_eight_languages_and_four_scripts() -> None:
    assert len(L.LANGUAGES) >= 8 and len(set(L.SCRIPTS.values())) >= 4
    for table in (L.NUMBER_WORDS, L.NUMBER_SENTENCE, L.WORD_PROBLEM, L.ANSWER_WORD, L.NAMES):
        assert set(table) == set(L.LANGUAGES)
    assert all(len(words) == 21 for words in L.NUMBER_WORDS.values())


@pytest.mark.parametrize("lang", L.LANGUAGES)
def test_every_template_renders_in_every_language(lang: str) -> None:
    # Templates render with exactly the fields the generators supply; str.format raises
    # KeyError on a missing one.
    assert _fields(L.NUMBER_SENTENCE[lang]) == {"word"}
    assert _fields(L.WORD_PROBLEM[lang]) <= {"name", "name_gen", "a", "b", "c"}
    assert {"a", "b", "c"} <= _fields(L.WORD_PROBLEM[lang])
    for word in L.NUMBER_WORDS[lang]:
        assert word in L.NUMBER_SENTENCE[lang].format(word=word)
    for name in L.NAMES[lang]:
        text = L.WORD_PROBLEM[lang].format(
            name=name, name_gen=L.GENITIVE.get(name, name), a=3, b=4, c=2
        )
        assert "{" not in text and "3" in text
    # The YAML prompt templates of the multilingual tasks render every doc of every language.
    for gen, prompt in (
        ("number_words_mc", "{word} ="),
        ("mgsm_mc", "{question}\n{answer_word}"),
        ("sentence_match_mc", "{source}\nEnglish:"),
    ):
        docs = [d for d in GENERATORS[gen](random.Random(0), 168) if d["language"] == lang]
        assert docs, (gen, lang)
        for d in docs:
            assert "{" not in prompt.format_map(d)


def test_all_transfer_tasks_render_all_items(transfer_tasks: dict[str, object]) -> None:
    # Building items renders every template of every doc (a missing key raises EvalkitError).
    for task in transfer_tasks.values():
        assert task.items(None, WindowedTokenizer(ByteTokenizer(), BYTE_WINDOW))  # type: ignore[attr-defined]


# transfer-full against lm-eval's registry: tests/test_transfer_full.py
