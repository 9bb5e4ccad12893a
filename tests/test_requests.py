import pytest

from evalkit.requests import Generate, Loglikelihood, RollingLoglikelihood


def test_hashes_are_stable_and_distinguish_kinds_and_fields() -> None:
    a = Loglikelihood("ctx", " cont")
    assert a.hash == Loglikelihood("ctx", " cont").hash
    assert a.hash != Loglikelihood("ctx ", "cont").hash
    assert RollingLoglikelihood("x").hash != Loglikelihood("", "x").hash
    g = Generate("p", stop=("\n",), max_tokens=8)
    assert g.hash != Generate("p", stop=("\n",), max_tokens=9).hash
    assert g.hash != Generate("p", stop=(), max_tokens=8).hash
    # Pinned: changing the hash scheme silently invalidates every user's result cache.
    assert a.hash == "9ba506d066c667d4e7ea9c934601c7bb4c6f013bc735049667f797d8a043d70b"


def test_requests_are_frozen_and_hashable() -> None:
    a = Loglikelihood("c", "d")
    with pytest.raises(AttributeError):
        a.context = "x"  # type: ignore[misc]
    assert len({a, Loglikelihood("c", "d")}) == 1


@pytest.mark.parametrize(
    "kwargs",
    [dict(max_tokens=0), dict(n=0), dict(temperature=-1.0), dict(temperature=0.0, n=2)],
)
def test_generate_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Generate("p", **kwargs)
