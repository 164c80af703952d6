import pytest

from bastion.collector.values import as_string, format_float
from factories.collector import value


@pytest.mark.parametrize(
    ("f", "text"),
    [
        (1.0, "1"),
        (0.1, "0.1"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (123456.789, "123456.789"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e-7, "1.5e-7"),
        (1e-6, "0.000001"),
        (1.2345e-100, "1.2345e-100"),
    ],
)
def test_doubles_are_written_like_go(f: float, text: str) -> None:
    assert format_float(f) == text


@pytest.mark.parametrize(
    ("v", "text"),
    [
        ("plain", "plain"),
        (42, "42"),
        (-7, "-7"),
        (True, "true"),
        (False, "false"),
        (3.0, "3"),
        (b"\x00\xff", "AP8="),
        ([1, "a", True, 2.5], '[1,"a",true,2.5]'),
        ({"b": 1, "a": ["<x>&"]}, '{"a":["\\u003cx\\u003e\\u0026"],"b":1}'),
        ({"é": "ü"}, '{"é":"ü"}'),
        (float("nan"), "json: unsupported value: NaN"),
        ([float("inf")], ""),
    ],
)
def test_values_are_stringified_like_pdata(v: object, text: str) -> None:
    assert as_string(value(v)) == text


def test_an_empty_value_is_an_empty_string() -> None:
    assert as_string(value([]).array_value.values.add()) == ""
