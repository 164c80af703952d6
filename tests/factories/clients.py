"""The official SDK clients, as agents use them; each is closed when its test ends (tests/conftest.py)."""

from __future__ import annotations

import anthropic
import openai
from google import genai
from google.genai import types

_open: list[openai.OpenAI | anthropic.Anthropic | genai.Client] = []


def openai_client(base_url: str, key: str, timeout: float = 30) -> openai.OpenAI:
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout)
    _open.append(client)
    return client


def anthropic_client(base_url: str, key: str, timeout: float = 30) -> anthropic.Anthropic:
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=timeout)
    _open.append(client)
    return client


def gemini_client(base_url: str, key: str, timeout: float = 30) -> genai.Client:
    """``base_url`` as the SDK takes it: without ``/v1beta``. The key goes as ``x-goog-api-key``."""
    options = types.HttpOptions(
        base_url=base_url, timeout=int(timeout * 1000), retry_options=types.HttpRetryOptions(attempts=1)
    )
    client = genai.Client(api_key=key, http_options=options)
    _open.append(client)
    return client


def close_all() -> None:
    while _open:
        _open.pop().close()
