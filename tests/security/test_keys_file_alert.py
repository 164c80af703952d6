"""Attack: the agents' keys file is broken while the proxy runs.

An entry left empty (a bare ``-``) made the key store raise TypeError on reload, inside the addon
that identifies agents; mitmproxy logged it and went on, so calls went upstream with the provider's
key and no identity or decision at all, and nobody was told. Now a broken edit raises an alert (like
a rejected policy edit) and the keys loaded before keep serving: unknown keys stay refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bastion import semconv
from factories import processes
from support import collector_api, create_key, free_ports


def wait_for(find: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := find()):
        assert time.monotonic() < deadline, "nothing found in time"
        time.sleep(0.2)
    return found


def chat(proxy: str, key: str | None) -> httpx.Response:
    body = {"model": "scripted-small", "messages": [{"role": "user", "content": "hello"}]}
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{proxy}/openai/v1/chat/completions", json=body, headers=headers)


def test_a_broken_keys_file_raises_an_alert_and_unknown_keys_stay_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    key = create_key(keys)
    model_port, collector_port, *proxy_ports = free_ports(4)
    env = processes.routes_env(processes.url(model_port), keys, processes.url(collector_port))
    with (
        processes.scripted_model(tmp_path, model_port) as model,
        processes.collector(tmp_path, collector_port) as collector,
        processes.proxy(tmp_path, "proxy", proxy_ports, env) as proxy,
        collector_api(collector.url) as api,
    ):
        processes.ready(model, collector, proxy)
        assert chat(proxy.url, key).status_code == 200
        keys.write_text(keys.read_text() + "- \n")  # an entry left empty

        def alerts() -> list[dict[str, Any]]:
            items = api.get("/api/alerts").json()["items"]
            return [a for a in items if a["type"] == semconv.ALERT_KEYS_REJECTED]

        (alert,) = wait_for(alerts)
        assert str(keys) in alert["message"] and "key entry 2 must be a mapping" in alert["message"]
        for stranger in (None, "bst_not-a-key"):
            refused = chat(proxy.url, stranger)
            assert refused.status_code == 401, refused.text
        assert httpx.get(f"{model.url}/_scripted/requests").json()[1:] == []  # only the first call arrived
        assert chat(proxy.url, key).status_code == 200  # the keys loaded before keep serving
