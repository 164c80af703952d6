import json
from typing import Any

import pytest

from bastion.proxy import jsonlimits


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"model": "m", "messages": [{"content": [{"type": "text"}]}]}', None),
        (nested(jsonlimits.MAX_DEPTH), None),
        (nested(jsonlimits.MAX_DEPTH + 1), "nested deeper than 100 levels"),
        (nested(10_000), "nested deeper than 100 levels"),  # past Python's own recursion limit
        ('{"a": ' * 101 + "1" + "}" * 101, "nested deeper than 100 levels"),
        ('{"amount": NaN}', "NaN is not a JSON number"),
        ('{"amount": -Infinity}', "-Infinity is not a JSON number"),
        ('{"amount": 1' + "0" * 5000 + "}", "Exceeds the limit"),
        (b"\xff{}", "codec can't decode"),
        ("{", "Expecting property name"),
    ],
)
def test_loads_refuses_what_it_cannot_read_whole_with_a_value_error(raw: str | bytes, problem: str | None) -> None:
    if problem is None:
        assert jsonlimits.loads(raw) == json.loads(raw)
        return
    with pytest.raises(ValueError, match=problem):
        jsonlimits.loads(raw)


@pytest.mark.parametrize(
    ("value", "depth"), [(1, None), ([], None), ([[[]]], 3), ({"a": [{"b": 1}]}, 3), ([[], [[[]]]], 4)]
)
def test_depth_counts_arrays_and_objects(value: Any, depth: int | None) -> None:
    if depth is None:
        assert jsonlimits.depth_error(value, 1) is None
        return
    assert jsonlimits.depth_error(value, depth) is None
    assert jsonlimits.depth_error(value, depth - 1) == f"JSON nested deeper than {depth - 1} levels"


def test_lone_surrogates_are_written_back_as_the_escapes_they_came_as() -> None:
    value = jsonlimits.loads(b'{"text": "broken \\ud800 emoji, caf\\u00e9 \\ud83d\\ude00"}')
    raw = jsonlimits.encode(value)
    assert b"\\ud800" in raw and "café 😀".encode() in raw
    assert json.loads(raw) == value
