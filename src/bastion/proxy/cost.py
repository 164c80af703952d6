"""What a model call cost: a price per model (``prices.yaml`` in this package, overridden by ``prices:`` in
bastion.yaml) applied to the usage the response reported (``usage.py``).

.. code-block:: yaml

    prices:                      # US dollars per million tokens; wins over the built-in table
      my-finetune: {input: 3.0, cached_input: 1.5, output: 12.0}
      gpt-4o: {input: 2.5, cached_input: 1.25, output: 10.0}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bastion.files import ConfigError, expand_env
from bastion.proxy.usage import Usage

MILLION = 1_000_000
_FIELDS = ("input", "cached_input", "cache_write", "output")


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens. ``cached_input`` and ``cache_write`` default to ``input``."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float | None:
        """The call's cost in US dollars; None without token counts."""
        if usage.input_tokens is None and usage.output_tokens is None:
            return None
        total_in = usage.input_tokens or 0
        read = min(usage.cache_read_tokens or 0, total_in)
        written = min(usage.cache_creation_tokens or 0, total_in - read)
        fresh = total_in - read - written
        cached = self.input if self.cached_input is None else self.cached_input
        write = self.input if self.cache_write is None else self.cache_write
        dollars = fresh * self.input + read * cached + written * write + (usage.output_tokens or 0) * self.output
        return dollars / MILLION


@dataclass(frozen=True)
class PriceTable:
    models: Mapping[str, Price] = field(default_factory=dict)
    as_of: str = ""
    source: str = ""

    def price(self, model: str | None) -> Price | None:
        """The price of ``model``: its own entry, else the longest entry it extends with ``-``
        (``gpt-4o-2024-08-06`` -> ``gpt-4o``); a ``provider/`` or ``models/`` prefix is ignored."""
        if not model:
            return None
        name = model.rsplit("/", 1)[-1].lower()
        if name in self.models:
            return self.models[name]
        best = max((k for k in self.models if name.startswith(k + "-")), key=len, default=None)
        return None if best is None else self.models[best]

    def cost(self, model: str | None, usage: Usage) -> float | None:
        price = self.price(model)
        return None if price is None else price.cost(usage)

    def with_overrides(self, overrides: Mapping[str, Price]) -> PriceTable:
        return PriceTable({**self.models, **{k.lower(): v for k, v in overrides.items()}}, self.as_of, self.source)


def parse_prices(raw: Any, where: str) -> dict[str, Price]:
    """A ``model: {input, cached_input, cache_write, output}`` mapping; raises ConfigError naming the key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must map model names to {{input, output}} prices per million tokens")
    prices: dict[str, Price] = {}
    for model, entry in raw.items():
        key = f"{where}.{model}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key} must be a mapping, e.g. {{input: 2.5, cached_input: 1.25, output: 10}}")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"{key} has unknown keys {unknown}; use {', '.join(_FIELDS)}")
        for required in ("input", "output"):
            if required not in entry:
                raise ConfigError(f"{key} is missing {required!r} (US dollars per million tokens)")
        values = {name: _dollars(f"{key}.{name}", entry[name]) for name in _FIELDS if entry.get(name) is not None}
        prices[str(model).lower()] = Price(**values)
    return prices


def _dollars(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key} has value {value!r}. Not a price (a number of dollars, 0 or more).")
    return float(value)


def builtin() -> PriceTable:
    """The table shipped with Bastion (``prices.yaml``: its date and source are in the file)."""
    raw = yaml.safe_load(resources.files("bastion.proxy").joinpath("prices.yaml").read_text())
    return PriceTable(parse_prices(raw["models"], "prices.yaml"), str(raw["as_of"]), str(raw["source"]))


def load(policies_dir: Path) -> PriceTable:
    """The built-in table with bastion.yaml's ``prices:`` overrides."""
    path = policies_dir / "bastion.yaml"
    try:
        raw = yaml.safe_load(expand_env(path.read_text())) or {}
    except FileNotFoundError:
        raw = {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from e
    section = raw.get("prices") if isinstance(raw, dict) else None
    try:
        return builtin().with_overrides(parse_prices(section, "prices"))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
