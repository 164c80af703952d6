"""Forward: only calls with an allowing decision go upstream, with the provider's key in place of the agent's."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import taddons

from bastion.proxy.decision import Decision, Effect, allow, deny
from bastion.proxy.state import state
from factories.addons import authorize, call_flow, engine, forward, run
from factories.proxy import route

ALLOWED = allow("assistant-scripted-models", "allowed")


@pytest.mark.parametrize(
    ("path", "url", "header", "value"),
    [
        (
            "/openai/v1/chat/completions",
            "http://upstream.test:9100/v1/chat/completions",
            "authorization",
            "Bearer real-key",
        ),
        ("/anthropic/v1/messages", "http://upstream.test:9100/v1/messages", "x-api-key", "real-key"),
    ],
)
def test_an_allowed_call_goes_to_the_upstream_with_the_provider_key(
    path: str, url: str, header: str, value: str
) -> None:
    f = run(forward(), call_flow(path, decision=ALLOWED), "request")
    assert f.response is None and f.request.url == url
    assert f.request.headers["host"] == "upstream.test:9100" and f.request.headers[header] == value


def test_http_tool_calls_keep_their_own_authorization() -> None:
    tool = replace(route("http", upstream="https://api.weather.example/v2/"), api_key_env=None, api_key=None)
    f = call_flow("/http/forecast?city=Paris", b"", r=tool, method="GET", headers={"authorization": "Bearer t"})
    state(f).decision = ALLOWED
    run(forward(), f, "request")
    assert f.response is None and f.request.url == "https://api.weather.example/v2/forecast?city=Paris"
    assert f.request.headers["authorization"] == "Bearer t" and f.request.headers["host"] == "api.weather.example"


@pytest.mark.parametrize("decision", [None, deny("no-large-models", "denied")], ids=["undecided", "denied"])
def test_a_call_without_an_allowing_decision_is_refused_not_sent(decision: Decision | None) -> None:
    f = call_flow(decision=decision)
    run(forward(), f, "request")
    assert f.response is not None and f.response.status_code == 500
    assert f.response.headers["x-bastion-error"] == "no_decision" and f.request.host != "upstream.test"
    refusal = state(f).decision
    assert refusal is not None and refusal.effect is Effect.ERROR


def test_a_missing_provider_key_fails_closed_naming_the_variable() -> None:
    f = run(forward(), call_flow(r=route("openai", key=None), decision=ALLOWED), "request")
    assert f.response is not None and f.response.status_code == 502
    assert "OPENAI_API_KEY" in json.loads(f.response.content or b"")["error"]["message"]
    assert "authorization" not in f.request.headers


def test_an_answered_call_is_not_sent() -> None:
    f = call_flow(decision=ALLOWED)
    f.kill()
    run(forward(), f, "request")
    assert f.request.host != "upstream.test" and f.response is None


def test_a_call_whose_deciding_addon_raised_is_refused_under_mitmproxys_dispatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = engine(tmp_path)

    def crash(*args: object) -> None:
        raise RuntimeError("the policy engine crashed")

    monkeypatch.setattr(policy, "decide", crash)
    f = call_flow()
    # mitmproxy logs the exception of Authorize's hook and goes on with the flow to the next addon.
    with taddons.context(authorize(policy), forward(), loadcore=False) as tctx:
        tctx.master.addons.trigger(HttpRequestHook(f))
    assert state(f).decision is not None and f.response is not None and f.response.status_code == 500
    assert f.response.headers["x-bastion-error"] == "no_decision" and f.request.host != "upstream.test"
