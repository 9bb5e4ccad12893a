"""Needle-in-a-haystack prompts built for the model's own tokenizer (RULER-style; see
docs/longctx.md for the exact definitions).

A prompt is `header + context + question`, where the context is haystack sentences with needle
sentences inserted at sentence boundaries. Its length in tokens (as the engine encodes it) is
made exact by cutting the haystack at a character count found by search; a sentence cut there
ends with a period, so needles always sit between sentences.
Every prompt is checked: each needle present once and intact after a tokenize/decode round
trip, each value occurring only in its needle, the length exact.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from evalkit.errors import EvalkitError
from evalkit.tasks.base import TextTokenizer

# RULER's repeated-noise haystack (its wording; a haystack, not code).
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
HEADER = (
    "Special magic numbers are hidden in the following text. Remember them: a question "
    "about them follows.\n"
)
NEEDLE = "The special magic number for {key} is {value}."
QUESTION_ONE = (
    "\nQuestion: What is the special magic number for {keys}?\n"
    "Answer: The special magic number for {keys} is"
)
QUESTION_ALL = (
    "\nQuestion: What are all the special magic numbers for {keys}?\n"
    "Answer: The special magic numbers for {keys} are"
)
VARIANTS = ("single", "multikey", "multivalue", "multiquery")
HAYSTACKS = ("noise", "prose")
VALUE_DIGITS = 7

_KEY_ADJ = ("quiet", "amber", "brisk", "hollow", "lucky", "rusty", "silent", "tidy", "vivid",
            "woolen", "frozen", "gentle", "narrow", "polite", "sturdy", "wicked")  # fmt: skip
_KEY_NOUN = ("river", "lantern", "meadow", "parrot", "saddle", "teapot", "violin", "walnut",
             "harbor", "kettle", "mirror", "pillow", "rocket", "tunnel", "button", "castle")  # fmt: skip

# The prose haystack: seeded sentences over a small vocabulary, no digits.
_P_SUBJ = ("The farmer", "A traveler", "The old baker", "My neighbor", "The teacher",
           "A young painter", "The fisherman", "Her brother", "The mayor", "A tired student")  # fmt: skip
_P_VERB = ("walked to", "looked at", "talked about", "painted", "visited", "dreamed of",
           "cleaned", "forgot about", "wrote a letter about", "sang a song about")  # fmt: skip
_P_OBJ = ("the village market", "a small garden", "the harbor at dawn", "an empty barn",
          "the long road north", "a crowded train", "the stone bridge", "a quiet library",
          "the green hills", "an old clock")  # fmt: skip
_P_TAIL = ("", " in the morning", " after the rain", " with great care", " before dinner",
           " for a while", " once again", " without a word")  # fmt: skip

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class TooShortError(EvalkitError):
    """The needles and question alone exceed the asked length."""


@dataclass(frozen=True)
class Haystack:
    """The filler: whole sentences, used in order and cyclically. `source` is the whole text
    values and keys are checked against; `label` names it in tags and the manifest."""

    label: str
    sentences: tuple[str, ...]
    source: str


def noise_haystack() -> Haystack:
    return Haystack("noise", tuple(_SENTENCE_END.split(NOISE)), NOISE)


def prose_haystack(seed: int, n_sentences: int = 400) -> Haystack:
    rng = random.Random(f"prose:{seed}")
    sents = tuple(
        f"{rng.choice(_P_SUBJ)} {rng.choice(_P_VERB)} {rng.choice(_P_OBJ)}{rng.choice(_P_TAIL)}."
        for _ in range(n_sentences)
    )
    return Haystack("prose", sents, " ".join(sents))


def file_haystack(path: Path) -> Haystack:
    """A user's text file, split into sentences at ., ! or ? followed by whitespace."""
    if not path.exists():
        raise EvalkitError(f"haystack file not found: {path}")
    if not path.is_file():
        raise EvalkitError(f"haystack is not a file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise EvalkitError(f"haystack file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise EvalkitError(f"cannot read haystack file {path}: {exc.strerror or exc}") from None
    if "\x00" in text:
        raise EvalkitError(f"haystack file {path} is not text (it holds NUL bytes)")
    words = text.split()
    if not words:
        raise EvalkitError(f"haystack file {path} is empty")
    sents = tuple(" ".join(s.split()) for s in _SENTENCE_END.split(" ".join(words)))
    sents = tuple(s for s in sents if s)
    if len(sents) < 2:
        raise EvalkitError(
            f"haystack file {path} needs at least two sentences (ending in . ! or ?) so "
            "needles can sit between them"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Haystack(f"file:{path.name}:{digest}", sents, " ".join(sents))


@dataclass(frozen=True)
class Needle:
    key: str
    value: str

    @property
    def text(self) -> str:
        return NEEDLE.format(key=self.key, value=self.value)


@dataclass(frozen=True)
class NiahPrompt:
    prompt: str
    needles: tuple[Needle, ...]  # in the order drawn: needles[0] is placed at the asked depth
    answers: tuple[str, ...]  # values the answer must contain
    controls: tuple[str, ...]  # values of the same shape found nowhere in the prompt
    n_tokens: int  # prompt tokens, as the engine encodes them
    depth: float  # where needles[0] sits: haystack tokens before it / all haystack tokens
    haystack_tokens: int


def join_keys(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]


def _value(rng: random.Random) -> str:
    return str(rng.randrange(10 ** (VALUE_DIGITS - 1), 10**VALUE_DIGITS))


def draw_needles(
    rng: random.Random, variant: str, haystack: Haystack, n_extra: int
) -> tuple[tuple[Needle, ...], tuple[str, ...], tuple[str, ...]]:
    """(needles, queried keys, expected values). `n_extra` is the distractors (multikey), or
    values / queries beyond the first (multivalue / multiquery). No key or value occurs in the
    haystack's source text, and no value is part of another one."""
    if variant not in VARIANTS:
        raise EvalkitError(f"unknown needle variant {variant!r} (known: {', '.join(VARIANTS)})")
    n_keys = 1 if variant in ("single", "multivalue") else 1 + n_extra
    n_values = 1 if variant == "single" else 1 + n_extra
    keys: list[str] = []
    for _ in range(1000 * n_keys):
        if len(keys) == n_keys:
            break
        k = f"{rng.choice(_KEY_ADJ)}-{rng.choice(_KEY_NOUN)}"
        if k not in keys and k not in haystack.source:
            keys.append(k)
    values: list[str] = []
    for _ in range(1000 * n_values):
        if len(values) == n_values:
            break
        v = _value(rng)
        if v not in haystack.source and all(v not in u and u not in v for u in values):
            values.append(v)
    if len(keys) < n_keys or len(values) < n_values:
        raise EvalkitError(
            f"haystack {haystack.label}: cannot draw needle keys/values that occur nowhere in it"
        )
    if variant == "single":
        return (Needle(keys[0], values[0]),), (keys[0],), (values[0],)
    if variant == "multikey":
        needles = tuple(Needle(k, v) for k, v in zip(keys, values, strict=True))
        return needles, (keys[0],), (values[0],)
    if variant == "multivalue":
        return tuple(Needle(keys[0], v) for v in values), (keys[0],), tuple(values)
    needles = tuple(Needle(k, v) for k, v in zip(keys, values, strict=True))
    return needles, tuple(keys), tuple(values)


class _Builder:
    """Prompts for one (haystack, needles, depth) as a function of the haystack characters."""

    def __init__(
        self,
        tok: TextTokenizer,
        haystack: Haystack,
        needles: Sequence[Needle],
        question: str,
        depth: float,
        rng: random.Random,
    ) -> None:
        self.tok = tok
        self.haystack = haystack
        self.needles = tuple(needles)
        self.question = question
        self.depth = depth
        # One seed for the other needles' boundaries, so every length tried places them alike.
        self._seed = rng.random()
        self.end = "."  # how a cut sentence ends (another mark when "." cannot fit exactly)
        self._sent_tokens: dict[str, int] = {}
        # Offsets in the endless stream " ".join(sentences, cyclically) where sentences end.
        self._ends: list[int] = []
        self._stream: list[str] = []

    def _tokens(self, sentence: str) -> int:
        n = self._sent_tokens.get(sentence)
        if n is None:
            n = len(self.tok.encode_plain(" " + sentence))
            self._sent_tokens[sentence] = n
        return n

    def _grow(self, chars: int) -> None:
        sents = self.haystack.sentences
        while not self._ends or self._ends[-1] < chars:
            s = sents[len(self._stream) % len(sents)]
            start = self._ends[-1] + 1 if self._ends else 0
            self._stream.append(s)
            self._ends.append(start + len(s))

    def parts(self, chars: int) -> list[str]:
        """The sentences within the first `chars` characters of the stream; a sentence cut by
        the limit ends there, with a period, so needles may follow it too."""
        if chars <= 0:
            return []
        self._grow(chars)
        whole: list[str] = []
        pos = 0
        for s, end in zip(self._stream, self._ends, strict=False):
            if end > chars:
                tail = s[: max(0, chars - pos)].strip()
                if tail:
                    whole.append(tail if tail[-1] in ".!?" else tail + self.end)
                return whole
            whole.append(s)
            pos = end + 1
        return whole  # pragma: no cover - _grow covers `chars`

    def build(self, chars: int) -> tuple[str, float, int]:
        """(prompt, actual depth of needles[0], haystack tokens) for `chars` haystack chars."""
        whole = self.parts(chars)
        counts = [self._tokens(s) for s in whole]
        total = sum(counts)
        # Boundary b = before sentence b (b = len(whole): after the last whole sentence).
        cum = [0]
        for c in counts:
            cum.append(cum[-1] + c)
        target = self.depth * total
        first = min(range(len(cum)), key=lambda b: (abs(cum[b] - target), b))
        # Other needles: seeded boundaries, distinct from the first when there is room.
        rng = random.Random(self._seed)
        free = [b for b in range(len(cum)) if b != first] or [first]
        others = [rng.choice(free) for _ in self.needles[1:]]
        if len(free) >= len(others):
            others = rng.sample(free, len(others))
        at: dict[int, list[str]] = {}
        for b, n in zip([first, *others], self.needles, strict=True):
            at.setdefault(b, []).append(n.text)
        pieces: list[str] = []
        for b in range(len(cum)):
            pieces.extend(at.get(b, []))
            if b < len(whole):
                pieces.append(whole[b])
        prompt = HEADER + " ".join(pieces) + self.question
        depth = cum[first] / total if total else 0.0
        return prompt, depth, total

    def count(self, chars: int) -> int:
        return len(self.tok.encode(self.build(chars)[0]))

    def estimate(self, target_tokens: int) -> int:
        """Haystack characters that should give about `target_tokens` prompt tokens."""
        fixed = self.count(0)
        sents = self.haystack.sentences[:200]  # a sample is enough for a ratio (big files)
        chars = sum(len(s) + 1 for s in sents)
        toks = sum(self._tokens(s) for s in sents)
        return max(0, int((target_tokens - fixed) * chars / max(1, toks)))


def _search(f: Callable[[int], int], target: int, guess: int) -> int:
    """The largest n >= 0 with f(n) <= target, for an f that grows with n (up to a few tokens
    of tokenizer jitter, which the caller's exactness check catches); f(0) <= target."""
    lo, step = 0, max(1, guess // 8)
    hi = max(1, guess)
    if f(hi) <= target:
        lo = hi
        hi = lo + step
        while f(hi) <= target:
            lo, step = hi, step * 2
            hi = lo + step
    else:
        cand = max(0, guess - step)
        while cand > 0 and f(cand) > target:
            hi, step = cand, step * 2
            cand = max(0, cand - step)
        lo = cand
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if f(mid) <= target:
            lo = mid
        else:
            hi = mid
    return lo


# A sentence cut to fit ends with the first of these that gives the exact length: a tokenizer may
# step over a count (one more character adds two tokens); marks of other lengths step elsewhere.
CUT_ENDS = (".", "!", "...", "?", "!!", "?!")


def _exact(count: Callable[[int], int], target: int, guess: int) -> int:
    """Haystack characters giving exactly `target` prompt tokens, or -1."""
    memo: dict[int, int] = {}

    def f(chars: int) -> int:
        if chars not in memo:
            memo[chars] = count(chars)
        return memo[chars]

    chars = _search(f, target, guess)
    # Tokenizer jitter (a merge across the cut): look a little further for an exact fit.
    near = [chars] + [c for d in range(1, 33) for c in (chars + d, chars - d) if c >= 0]
    return next((c for c in near if f(c) == target), -1)


def build_prompt(
    tok: TextTokenizer,
    haystack: Haystack,
    needles: Sequence[Needle],
    keys: Sequence[str],
    answers: Sequence[str],
    n_tokens: int,
    depth: float,
    rng: random.Random,
) -> NiahPrompt:
    """A prompt of exactly `n_tokens` tokens (`tok.encode`) with needles[0] at `depth` (0..1)
    of the haystack and the other needles at seeded sentence boundaries; checked (module doc).
    Raises EvalkitError when the needles and question alone exceed `n_tokens`."""
    question = (QUESTION_ONE if len(answers) == 1 else QUESTION_ALL).format(keys=join_keys(keys))
    b = _Builder(tok, haystack, needles, question, depth, rng)
    fixed = b.count(0)
    if fixed > n_tokens:
        raise TooShortError(f"the needles and question alone take {fixed} tokens")
    chars = -1
    for end in CUT_ENDS:
        b.end = end
        chars = _exact(b.count, n_tokens, b.estimate(n_tokens))
        if chars >= 0:
            break
    if chars < 0:
        raise EvalkitError(f"cannot make a prompt of exactly {n_tokens} tokens")
    prompt, actual, hay_tokens = b.build(chars)
    check_prompt(tok, prompt, needles, n_tokens)
    rng_c = random.Random(rng.random())
    controls: list[str] = []
    while len(controls) < len(answers):
        v = _value(rng_c)
        if v not in prompt and all(v not in a and a not in v for a in answers):
            controls.append(v)
    return NiahPrompt(
        prompt, tuple(needles), tuple(answers), tuple(controls), n_tokens, actual, hay_tokens
    )


def check_prompt(tok: TextTokenizer, prompt: str, needles: Sequence[Needle], n_tokens: int) -> None:
    """Fail loudly unless every needle survived intact and each value occurs only in its
    needle (the checks the generator promises; an error here is an evalkit bug or a
    tokenizer that cannot round-trip the text)."""
    ids = tok.encode(prompt)
    if len(ids) != n_tokens:
        raise EvalkitError(f"needle prompt has {len(ids)} tokens, not {n_tokens}")
    decoded = tok.decode(ids)
    for n in needles:
        if prompt.count(n.text) != sum(1 for m in needles if m == n):
            raise EvalkitError(f"needle {n.text!r} is not in the prompt exactly once")
        if n.text not in decoded:
            raise EvalkitError(f"needle {n.text!r} did not survive tokenization")
        if prompt.count(n.value) != sum(1 for m in needles if m.value == n.value):
            raise EvalkitError(f"value {n.value} occurs outside its needle")
