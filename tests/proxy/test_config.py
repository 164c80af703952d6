from pathlib import Path

import pytest

from bastion.proxy.config import ConfigError, Upstream, expand_env, load
from support import SESSION_POLICIES


def write_config(tmp_path: Path, text: str) -> Path:
    (tmp_path / "bastion.yaml").write_text(text)
    return tmp_path


def test_bundled_configuration_loads_with_scripted_upstreams(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_OPENAI_UPSTREAM", "http://127.0.0.1:9100/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    config = load(SESSION_POLICIES)
    openai = config.route_for_path("/openai/v1/chat/completions")
    assert openai is not None and openai.provider == "openai"
    assert openai.upstream == Upstream("http", "127.0.0.1", 9100, "/")
    assert openai.api_key is not None and openai.api_key.get() == "sk-real"
    assert "sk-real" not in repr(openai)
    assert config.route_for_host("api.anthropic.com") is not None
    assert config.mcp_refusals == "tool_result"
    assert config.provenance.trusted_tools == ()  # every tool's results are untrusted


def test_trusted_tools_are_globs_on_tool_names(tmp_path: Path) -> None:
    trust = load(write_config(tmp_path, "provenance: {trusted_tools: [list_events, 'crm_*']}")).provenance
    assert trust.trusts("list_events") and trust.trusts("crm_lookup") and not trust.trusts("fetch_url")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("routes: [{name: a, prefix: /a/}]", "missing key 'upstream'"),
        ("routes: [{name: a, prefix: a, upstream: 'http://x/'}]", "must start and end with '/'"),
        ("routes: [{name: a, prefix: /a/, upstream: 'ftp://x/'}]", "not an http(s) URL"),
        ("routes: [{name: a, prefix: /a/, upstream: 'http://x/', provider: grpc}]", "provider 'grpc'"),
        ("routes: [{name: a, prefix: /a/, upstream: '${NOPE_NOT_SET}'}]", "NOPE_NOT_SET"),
        ("- a list", "expected a mapping"),
        ("mcp_refusals: raise", "mcp_refusals has value 'raise'. Not one of tool_result or jsonrpc_error"),
        ("provenance: {trusted: [a]}", "provenance must be a mapping whose only key is trusted_tools"),
        ("provenance: {trusted_tools: read_inbox}", "provenance.trusted_tools has value 'read_inbox'. Not a list"),
    ],
)
def test_invalid_configuration_names_the_problem(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        load(write_config(tmp_path, text))


def test_upstream_path_keeps_the_rest_of_the_path() -> None:
    config = load(write_config(tmp_path_for("x"), "routes: [{name: a, prefix: /a/, upstream: 'https://h/base'}]"))
    route = config.routes[0]
    assert route.upstream_path("/a/v1/x?y=1") == "/base/v1/x?y=1"
    assert route.upstream.authority == "h"


def tmp_path_for(name: str) -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix=name))


def test_expand_env_uses_default_only_when_unset() -> None:
    assert expand_env("${A:-d}", {"A": "v"}) == "v"
    assert expand_env("${A:-d}", {}) == "d"


def test_the_gemini_route_takes_the_first_key_variable_that_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "g-real")
    gemini = load(SESSION_POLICIES).route_for_path("/gemini/v1beta/models/m:generateContent")
    assert gemini is not None and gemini.provider == "gemini" and not gemini.plain_http
    assert gemini.api_key is not None and gemini.api_key.get() == "g-real"
    assert gemini.api_key_env == "GEMINI_API_KEY or GOOGLE_API_KEY"
    monkeypatch.setenv("GEMINI_API_KEY", "gem-real")
    gemini = load(SESSION_POLICIES).route_for_path("/gemini/v1beta/models/m:generateContent")
    assert gemini is not None and gemini.api_key is not None and gemini.api_key.get() == "gem-real"
