"""refstore.lock: the text format, validation, and the per-path three-way merge."""

from __future__ import annotations

import pytest

from refstore.errors import ConflictError, FormatError, UsageError
from refstore.services.gitpin import HEADER, Pin, check_lock_path, ignore_line, merge, parse, render, render_with_conflicts

D1, D2, D3 = "1" * 32, "2" * 32, "3" * 32


def pin(path: str, digest: str = D1, version: str = "v0", is_dir: bool = True, artifact: str = "default/mnist") -> Pin:
    return Pin(path, is_dir, artifact, version, digest)


def test_render_is_sorted_stable_and_round_trips() -> None:
    pins = [pin("models/net.pt", D2, is_dir=False, artifact="default/net"), pin("data", D1)]
    text = render(pins)
    assert text == render(reversed(pins))
    assert text.startswith(HEADER)
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == [f"data/\tdefault/mnist\tv0\t{D1}", f"models/net.pt\tdefault/net\tv0\t{D2}"]
    assert parse(text) == sorted(pins)


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        (HEADER + "\n<<<<<<< ours\n", ConflictError, "unresolved merge conflict"),
        ("# refstore.lock 99 future\n", FormatError, "newer than this refstore"),
        ("data/\tdefault/mnist\tv0\t" + D1 + "\n", FormatError, "no '# refstore.lock N' header"),
        (HEADER + "data/\tdefault/mnist\tv0\n", FormatError, "4 tab-separated fields"),
        (HEADER + f"data/\tmnist\tv0\t{D1}\n", FormatError, "project/name"),
        (HEADER + f"data/\tdefault/mnist\tlatest\t{D1}\n", FormatError, "is not vN"),
        (HEADER + "data/\tdefault/mnist\tv0\tnothex\n", FormatError, "not a manifest digest"),
        (HEADER + f"../up/\tdefault/mnist\tv0\t{D1}\n", FormatError, "escapes its root"),
        (HEADER + f"data/\tdefault/a\tv0\t{D1}\n\ndata/\tdefault/b\tv0\t{D2}\n", FormatError, "twice"),
        (HEADER + f"data/\tdefault/a\tv0\t{D1}\n\ndata/x/\tdefault/b\tv0\t{D2}\n", UsageError, "inside tracked data/"),
    ],
)
def test_parse_refuses_bad_locks_with_a_line_number(text: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        parse(text)


def test_lock_paths_and_gitignore_patterns() -> None:
    assert check_lock_path("data/") == ("data", True)
    assert check_lock_path("m/x.pt") == ("m/x.pt", False)
    with pytest.raises(UsageError, match="not normalized"):
        check_lock_path("a//b")
    with pytest.raises(UsageError, match="tab or newline"):
        check_lock_path("a\tb")
    assert ignore_line(pin("data")) == "/data/"
    assert ignore_line(pin("a[1]*", is_dir=False)) == "/a\\[1]\\*"


def test_merge_takes_each_sides_change_on_different_paths() -> None:
    base = [pin("a", D1), pin("b", D1), pin("c", D1)]
    ours = [pin("a", D2, "v1"), pin("b", D1), pin("c", D1), pin("d", D3)]
    theirs = [pin("a", D1), pin("b", D3, "v2")]  # changed b, dropped c
    merged, conflicts = merge(base, ours, theirs)
    assert conflicts == []
    assert merged == [pin("a", D2, "v1"), pin("b", D3, "v2"), pin("d", D3)]


def test_merge_same_content_is_not_a_conflict_even_with_other_version_numbers() -> None:
    merged, conflicts = merge([pin("a", D1)], [pin("a", D2, "v1")], [pin("a", D2, "v7")])
    assert conflicts == [] and merged == [pin("a", D2, "v1")]


def test_merge_conflict_is_reported_on_that_path_only() -> None:
    base = [pin("a", D1), pin("b", D1)]
    merged, conflicts = merge(base, [pin("a", D2, "v1"), pin("b", D1)], [pin("a", D3, "v2"), pin("b", D2, "v3")])
    assert [c.path for c in conflicts] == ["a/"]
    assert conflicts[0].describe() == (
        f"a/: ours pins default/mnist:v1 ({D2[:12]}), theirs pins default/mnist:v2 ({D3[:12]}); "
        f"base had default/mnist:v0 ({D1[:12]})"
    )
    text = render_with_conflicts(merged, conflicts)
    assert f"<<<<<<< ours\na/\tdefault/mnist\tv1\t{D2}\n=======\na/\tdefault/mnist\tv2\t{D3}\n>>>>>>> theirs\n" in text
    assert f"b/\tdefault/mnist\tv3\t{D2}" in text
    with pytest.raises(ConflictError):
        parse(text)


def test_merge_delete_against_modify_conflicts() -> None:
    _, conflicts = merge([pin("a", D1)], [], [pin("a", D2, "v1")])
    assert conflicts and "ours pins nothing (untracked)" in conflicts[0].describe()
