"""The price math: per million tokens, cached input and cache writes priced apart, names matched by prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.files import ConfigError
from bastion.proxy import cost
from bastion.proxy.cost import Price, PriceTable
from bastion.proxy.usage import Usage

TABLE = PriceTable(
    {
        "gpt-4o": Price(input=2.5, output=10.0, cached_input=1.25),
        "gpt-4o-mini": Price(input=0.15, output=0.6),
        "claude-sonnet-4-5": Price(input=3.0, output=15.0, cached_input=0.3, cache_write=3.75),
    }
)


@pytest.mark.parametrize(
    ("model", "usage", "dollars"),
    [
        ("gpt-4o", Usage(input_tokens=1_000_000, output_tokens=1_000_000), 12.5),
        ("gpt-4o", Usage(input_tokens=1000, output_tokens=0, cache_read_tokens=400), (600 * 2.5 + 400 * 1.25) / 1e6),
        # no cached price: cached tokens cost the input price
        ("gpt-4o-mini", Usage(input_tokens=1000, output_tokens=10, cache_read_tokens=1000), (1000 * 0.15 + 6) / 1e6),
        # Anthropic: reads and writes counted in input_tokens (usage.py), each at its own price
        (
            "claude-sonnet-4-5",
            Usage(input_tokens=1300, output_tokens=100, cache_read_tokens=1000, cache_creation_tokens=200),
            (100 * 3.0 + 1000 * 0.3 + 200 * 3.75 + 100 * 15.0) / 1e6,
        ),
        ("gpt-4o", Usage(output_tokens=5), 5 * 10.0 / 1e6),
        ("gpt-4o", Usage(), None),  # no usage reported: no cost
        ("llama-3", Usage(input_tokens=5, output_tokens=5), None),  # no price
    ],
)
def test_cost_of_a_call(model: str, usage: Usage, dollars: float | None) -> None:
    found = TABLE.cost(model, usage)
    assert found == pytest.approx(dollars) if dollars is not None else found is None


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gpt-4", None),
        ("gpt-4oo", None),
        (None, None),
    ],
)
def test_a_model_is_priced_by_its_own_entry_or_the_longest_it_extends(model: str | None, priced_as: str | None) -> None:
    assert TABLE.price(model) is (TABLE.models[priced_as] if priced_as else None)


def test_the_shipped_table_states_its_date_and_source_and_prices_each_provider() -> None:
    table = cost.builtin()
    assert table.as_of and "openai.com" in table.source and "anthropic.com" in table.source
    for model in ("gpt-4o-2024-11-20", "gpt-5-mini", "claude-haiku-4-5-20251001", "gemini-2.5-flash"):
        assert table.price(model) is not None, model


def test_bastion_yaml_overrides_and_extends_the_table(tmp_path: Path) -> None:
    (tmp_path / "bastion.yaml").write_text(
        "prices:\n  gpt-4o: {input: 1, output: 2}\n  Scripted-Small: {input: 3, cached_input: 0.5, output: 4}\n"
    )
    table = cost.load(tmp_path)
    assert table.price("gpt-4o-2024-08-06") == Price(input=1.0, output=2.0)
    assert table.price("scripted-small") == Price(input=3.0, output=4.0, cached_input=0.5)
    assert table.price("gpt-4o-mini") == cost.builtin().price("gpt-4o-mini")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("prices: [gpt-4o]", "prices must map model names"),
        ("prices: {m: 3}", "prices.m must be a mapping"),
        ("prices: {m: {input: 1}}", "prices.m is missing 'output'"),
        ("prices: {m: {input: 1, output: -2}}", "prices.m.output has value -2"),
        ("prices: {m: {input: 1, output: 2, cached: 1}}", "prices.m has unknown keys ['cached']"),
    ],
)
def test_a_bad_prices_section_names_the_key(tmp_path: Path, section: str, message: str) -> None:
    (tmp_path / "bastion.yaml").write_text(section + "\n")
    with pytest.raises(ConfigError, match=r"bastion\.yaml") as e:
        cost.load(tmp_path)
    assert message in str(e.value)
