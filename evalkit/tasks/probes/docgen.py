"""Seeded document generators of the transfer families (reasoning, multilingual, icl, control).

Each is listed in `evalkit.tasks.generators.GENERATORS` under its name, with the contract
of that module: `fn(rng, n, **params) -> list[dict]`, the same seed and params giving the same
documents. Every document carries the fields its task's tags name (`difficulty`, `language`,
`script`...), so samples.parquet can be sliced by them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from evalkit.tasks.basic_docgen import Doc
from evalkit.tasks.probes.languages import (
    ANSWER_WORD,
    GENITIVE,
    LANGUAGES,
    NAMES,
    NUMBER_SENTENCE,
    NUMBER_WORDS,
    SCRIPTS,
    WORD_PROBLEM,
)


def _check_languages(languages: Sequence[str]) -> list[str]:
    langs = list(languages)
    unknown = [lang for lang in langs if lang not in NUMBER_WORDS]
    if unknown or not langs:
        raise TypeError(f"unknown or no languages {unknown} (known: {', '.join(LANGUAGES)})")
    return langs


def _mc(rng: random.Random, answer: int, wrong: Sequence[int]) -> tuple[list[str], int]:
    choices = [answer, *wrong]
    rng.shuffle(choices)
    return [str(c) for c in choices], choices.index(answer)


def _near_misses(rng: random.Random, answer: int, k: int, spread: int = 5) -> list[int]:
    pool = [answer + d for d in range(-spread, spread + 1) if d != 0 and answer + d >= 0]
    return rng.sample(pool, k)


# -- reasoning --------------------------------------------------------------------------------


def arith_chain_mc(
    rng: random.Random,
    n: int,
    max_operand: int = 19,
    operands: Sequence[int] = (2, 3),
    n_choices: int = 4,
) -> list[Doc]:
    """`a + b - c =`-style chains of 2 or 3 operands (0..max_operand) whose running value never
    goes below zero; the true value among `n_choices - 1` near misses. `difficulty` = operands."""
    docs = []
    for i in range(n):
        count = operands[i % len(operands)]
        value = rng.randint(0, max_operand)
        expr = str(value)
        for _ in range(count - 1):
            b = rng.randint(0, max_operand)
            if b <= value and rng.random() < 0.5:
                expr, value = f"{expr} - {b}", value - b
            else:
                expr, value = f"{expr} + {b}", value + b
        choices, gold = _mc(rng, value, _near_misses(rng, value, n_choices - 1))
        docs.append(
            {
                "expression": expr,
                "answer": str(value),
                "choices": choices,
                "gold": gold,
                "difficulty": f"{count}_operands",
            }
        )
    return docs


_GSM_PEOPLE = ("Tom", "Anna", "Sam", "Lily", "Ben", "Maya")
_GSM_THINGS = ("apples", "pencils", "stickers", "marbles", "cookies", "books")


def gsm_word_problems(rng: random.Random, n: int, max_steps: int = 3) -> list[Doc]:
    """GSM-like word problems of 2..max_steps steps (add, take away, double) over small numbers,
    each with a worked solution in the arithmetic slice's `a + b = c` format that ends
    `The answer is N.` `difficulty` = steps."""
    docs = []
    for i in range(n):
        steps = 2 + i % (max_steps - 1)
        who, thing = rng.choice(_GSM_PEOPLE), rng.choice(_GSM_THINGS)
        value = rng.randint(2, 12)
        sentences = [f"{who} has {value} {thing}."]
        work: list[str] = []
        for _ in range(steps - 1):
            op = rng.choice(("add", "sub", "double") if value <= 10 else ("add", "sub"))
            if op == "add":
                b = rng.randint(1, 9)
                sentences.append(f"{who} gets {b} more {thing}.")
                work.append(f"{value} + {b} = {value + b}.")
                value += b
            elif op == "sub" and value > 1:
                b = rng.randint(1, value - 1)
                sentences.append(f"{who} gives away {b} {thing}.")
                work.append(f"{value} - {b} = {value - b}.")
                value -= b
            else:
                sentences.append(f"Then the number of {thing} {who} has doubles.")
                work.append(f"{value} + {value} = {2 * value}.")
                value *= 2
        question = " ".join(sentences) + f" How many {thing} does {who} have now?"
        docs.append(
            {
                "question": question,
                "solution": " ".join(work) + f" The answer is {value}.",
                "answer": str(value),
                "difficulty": f"{steps}_steps",
            }
        )
    return docs


_DEDUCTION_NAMES = ("Ann", "Bob", "Cid", "Dan", "Eve", "Fay", "Gus", "Hal")
_RELATIONS = (
    ("taller than", "tallest", "shortest"),
    ("older than", "oldest", "youngest"),
    ("faster than", "fastest", "slowest"),
)


def logical_deduction_mc(
    rng: random.Random, n: int, min_objects: int = 3, max_objects: int = 5
) -> list[Doc]:
    """Ordering by transitivity: a chain of `X is R than Y.` premises (shuffled) over 3..5
    people, then `Who is the <top|bottom>?`; the choices are all the people.
    `difficulty` = number of people."""
    docs = []
    span = max_objects - min_objects + 1
    for i in range(n):
        count = min_objects + i % span
        people = rng.sample(_DEDUCTION_NAMES, count)  # people[0] ranks highest
        relation, top, bottom = rng.choice(_RELATIONS)
        premises = [f"{people[j]} is {relation} {people[j + 1]}." for j in range(count - 1)]
        rng.shuffle(premises)
        ask_top = rng.random() < 0.5
        answer = people[0] if ask_top else people[-1]
        choices = sorted(people)
        docs.append(
            {
                "premises": " ".join(premises),
                "question": f"Who is the {top if ask_top else bottom}?",
                "choices": choices,
                "gold": choices.index(answer),
                "difficulty": f"{count}_people",
            }
        )
    return docs


# -- multilingual -----------------------------------------------------------------------------


def _round_robin(per_language: dict[str, list[Doc]], n: int) -> list[Doc]:
    out: list[Doc] = []
    longest = max(len(v) for v in per_language.values())
    for i in range(longest):
        for lang in per_language:
            if i < len(per_language[lang]):
                out.append(per_language[lang][i])
    return out[:n]


def number_words_mc(
    rng: random.Random, n: int, languages: Sequence[str] = LANGUAGES, n_choices: int = 4
) -> list[Doc]:
    """`{word} =` with the digits of the number (0..20) among near misses, in the multilingual
    slice's format; languages interleaved so any prefix is balanced."""
    per: dict[str, list[Doc]] = {}
    for lang in _check_languages(languages):
        numbers = list(range(len(NUMBER_WORDS[lang])))
        rng.shuffle(numbers)
        docs = []
        for number in numbers:
            wrong = [w for w in _near_misses(rng, number, n_choices - 1, spread=4)]
            choices, gold = _mc(rng, number, wrong)
            docs.append(
                {
                    "word": NUMBER_WORDS[lang][number],
                    "answer": str(number),
                    "choices": choices,
                    "gold": gold,
                    "language": lang,
                    "script": SCRIPTS[lang],
                }
            )
        per[lang] = docs
    return _round_robin(per, n)


def mgsm_mc(
    rng: random.Random, n: int, languages: Sequence[str] = LANGUAGES, n_choices: int = 4
) -> list[Doc]:
    """MGSM-style word problems (a + b - c apples), the same problems in every language
    (`problem` is the shared id), answered by choosing among near-miss numbers."""
    langs = _check_languages(languages)
    out: list[Doc] = []
    problem = 0
    while len(out) < n:
        a, b = rng.randint(2, 9), rng.randint(1, 9)
        c = rng.randint(1, a + b - 1)
        answer = a + b - c
        name_index = rng.randrange(3)
        choices, gold = _mc(rng, answer, _near_misses(rng, answer, n_choices - 1))
        for lang in langs:
            name = NAMES[lang][name_index]
            out.append(
                {
                    "question": WORD_PROBLEM[lang].format(
                        name=name, name_gen=GENITIVE.get(name, name), a=a, b=b, c=c
                    ),
                    "answer_word": ANSWER_WORD[lang],
                    "answer": str(answer),
                    "choices": choices,
                    "gold": gold,
                    "language": lang,
                    "script": SCRIPTS[lang],
                    "problem": problem,
                }
            )
        problem += 1
    return out[:n]


def sentence_match_mc(
    rng: random.Random, n: int, languages: Sequence[str] = LANGUAGES, n_choices: int = 4
) -> list[Doc]:
    """Cross-lingual matching: a sentence `The number is <word>.` in language L, and the English
    sentences for four numbers; the gold one says the same number. Parallel across languages
    (`problem` is the shared id); for `en` it is the monolingual reference."""
    langs = _check_languages(languages)
    out: list[Doc] = []
    problem = 0
    while len(out) < n:
        numbers = rng.sample(range(21), n_choices)
        gold_number = numbers[0]
        rng.shuffle(numbers)
        choices = [NUMBER_SENTENCE["en"].format(word=NUMBER_WORDS["en"][x]) for x in numbers]
        for lang in langs:
            out.append(
                {
                    "source": NUMBER_SENTENCE[lang].format(word=NUMBER_WORDS[lang][gold_number]),
                    "choices": choices,
                    "gold": numbers.index(gold_number),
                    "language": lang,
                    "script": SCRIPTS[lang],
                    "problem": problem,
                }
            )
        problem += 1
    return out[:n]


# -- icl --------------------------------------------------------------------------------------


def function_learning_mc(
    rng: random.Random,
    n: int,
    n_pairs: int = 5,
    max_slope: int = 5,
    max_intercept: int = 9,
    max_x: int = 9,
    n_choices: int = 4,
) -> list[Doc]:
    """An integer linear function y = s*x + t (s in 1..max_slope, t in 0..max_intercept) shown
    as `n_pairs` lines `x -> y` on distinct x in 0..max_x; predict y for a new x. Distractors
    are other plausible answers (off by the slope, by one, or ignoring the intercept/slope),
    topped up with y+2, y+3... when fewer than n_choices - 1 of those are distinct and >= 0."""
    docs = []
    for _ in range(n):
        s, t = rng.randint(1, max_slope), rng.randint(0, max_intercept)
        xs = rng.sample(range(max_x + 1), n_pairs + 1)
        shown, x = xs[:-1], xs[-1]
        y = s * x + t
        pool = sorted({y - s, y + s, y - 1, y + 1, s * x, x + t} - {y})
        pool = [v for v in pool if v >= 0]
        extra = [y + d for d in (2, 3, 4, 5, 6, 7, 8) if y + d not in pool]
        pool += extra[: max(0, n_choices - 1 - len(pool))]
        wrong = rng.sample(pool, n_choices - 1)
        choices, gold = _mc(rng, y, wrong)
        docs.append(
            {
                "pairs": "\n".join(f"{u} -> {s * u + t}" for u in shown),
                "x": x,
                "answer": str(y),
                "choices": choices,
                "gold": gold,
                "slope": s,
                "intercept": t,
            }
        )
    return docs


CATEGORIES: dict[str, tuple[str, ...]] = {
    "animal": ("cat", "dog", "horse", "cow", "sheep", "goat", "tiger", "lion", "mouse", "bear",
               "wolf", "fox", "rabbit", "deer", "camel", "zebra"),
    "food": ("bread", "rice", "cheese", "apple", "soup", "cake", "pasta", "butter", "honey",
             "salad", "pizza", "banana", "egg", "bean", "pie", "jam"),
    "color": ("red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black",
              "white", "gray", "violet", "indigo", "scarlet", "beige", "teal"),
    "tool": ("hammer", "saw", "drill", "wrench", "shovel", "rake", "axe", "chisel", "pliers",
             "ladder", "knife", "needle", "brush", "file", "clamp", "spade"),
}  # fmt: skip


def category_words(
    rng: random.Random, n: int, labels: Sequence[str] = ("animal", "food")
) -> list[Doc]:
    """Words labelled with their category (the label set is `labels`), classes balanced and
    interleaved: the base task of the label probes. `choices` is the label set, `gold` the true
    label's index."""
    labels = list(labels)
    unknown = [x for x in labels if x not in CATEGORIES]
    if unknown or len(labels) < 2:
        raise TypeError(f"labels must be >= 2 of {', '.join(CATEGORIES)}, got {labels}")
    per: dict[str, list[Doc]] = {}
    for index, label in enumerate(labels):
        words = list(CATEGORIES[label])
        rng.shuffle(words)
        per[label] = [{"word": w, "label": label, "choices": labels, "gold": index} for w in words]
    return _round_robin(per, n)


# -- control ----------------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def made_up_mapping_mc(
    rng: random.Random, n: int, length: int = 5, n_choices: int = 4
) -> list[Doc]:
    """A control no model has seen: a random letter string `key` and `n_choices` random letter
    strings, the gold one drawn uniformly and independently of every text, so the expected
    accuracy of any model is exactly 1/n_choices."""
    docs: list[Doc] = []

    def word() -> str:
        return "".join(rng.choice(_LETTERS) for _ in range(length))

    for _ in range(n):
        choices: list[str] = []
        while len(choices) < n_choices:
            w = word()
            if w not in choices:
                choices.append(w)
        docs.append({"key": word(), "choices": choices, "gold": rng.randrange(n_choices)})
    return docs


def docs_fields(docs: Sequence[dict[str, Any]]) -> set[str]:
    """Field names every document has (for template checks)."""
    sets = [set(d) for d in docs]
    return set.intersection(*sets) if sets else set()


_LP_NAMES = ("Mira", "Oskar", "Tilda", "Bruno", "Greta", "Felix", "Nora", "Emil", "Ida", "Jonas")
_LP_PLACES = ("the mill", "the harbor", "the old bridge", "the market", "the forest", "the school")
_LP_THINGS = ("a red kite", "a wooden box", "a silver key", "a blue lamp", "a paper map")
_LP_VERBS = ("carries", "finds", "hides", "paints", "sells", "repairs", "loses", "opens")


def long_story(rng: random.Random, n: int, sentences: int = 80) -> list[Doc]:
    """Long documents for the Olsson ICL score: each story draws its own cast (2 names, 2
    places, 2 things) and repeats them over `sentences` sentences, so later tokens are
    predictable from the document itself. About 9 tokens per sentence with a byte-level BPE."""
    docs = []
    for _ in range(n):
        names = rng.sample(_LP_NAMES, 2)
        places = rng.sample(_LP_PLACES, 2)
        things = rng.sample(_LP_THINGS, 2)
        text = " ".join(
            f"{rng.choice(names)} {rng.choice(_LP_VERBS)} {rng.choice(things)} at "
            f"{rng.choice(places)}."
            for _ in range(sentences)
        )
        docs.append({"text": text})
    return docs
