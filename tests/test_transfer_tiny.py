"""The transfer suite on the bundled checkpoint: above chance where it saw the slice, at chance
on the control it never saw (a few tasks, so it stays fast; `make demo` runs the whole suite)."""

from __future__ import annotations

from pathlib import Path

import evalkit


def test_tiny_base_above_chance_on_its_slices_and_at_chance_on_the_control(
    tiny_base: Path, tmp_path: Path
) -> None:
    run = evalkit.score(
        tiny_base,
        tasks=["multilingual_number_words_mc", "reasoning_arith_mc", "control_made_up_mapping_mc"],
        out=tmp_path / "run",
        use_cache=False,
        progress=False,
        device="cpu",
    )
    s = {(x.display_task, x.label): x for x in run.rows}
    chance = 0.25
    # Trained slices: the CI excludes chance, in every language of the number-word slice.
    assert s[("reasoning_arith_mc", "acc")].ci_low > chance
    for lang in ("en", "de", "fr", "es", "ru", "zh", "ar", "hi"):
        assert s[("multilingual_number_words_mc", f"acc[{lang}]")].ci_low > chance, lang
    # The control (a made-up mapping with a gold independent of every text): at chance.
    control = s[("control_made_up_mapping_mc", "acc")]
    assert control.ci_low <= chance <= control.ci_high
    assert control.n == 200
    # Family rows are written next to the task rows.
    assert ("family:control", "acc") in s and ("family:multilingual", "acc") in s
