"""A typed client for the collector's HTTP API, the dashboard's only source of data.

The base URL comes from the argument, else ``BASTION_COLLECTOR_URL``, else
``http://127.0.0.1:4318``. Every failure (unreachable, timeout, an error status, a body that is not
the expected JSON) raises :class:`CollectorError` with a message fit to show to a person.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import httpx

from bastion.settings import DashboardSettings

Json = dict[str, Any]
ENV = "BASTION_COLLECTOR_URL"
AUDIT_PAGE = 500  # the collector's largest page of audit records


class CollectorError(Exception):
    """The collector could not be reached, or answered with an error."""


class CollectorClient:
    def __init__(self, base_url: str | None = None, timeout: float = 5.0, token: str | None = None) -> None:
        url = base_url or os.environ.get(ENV) or DashboardSettings().collector_url
        self.base_url = url.rstrip("/")
        self.timeout = timeout
        # The operator's token, sent with every request (the collector answers nothing without one).
        self._headers = {"authorization": f"Bearer {token}"} if token else {}

    def whoami(self) -> Json | None:
        """``{"id", "name", "role"}`` of the token's operator; ``None`` when it is missing or unknown."""
        try:
            return self._get("/api/whoami", {})
        except CollectorError as e:
            if "401" in str(e) or "403" in str(e):
                return None
            raise

    def audit(
        self,
        agent: str | None = None,
        decision: str | None = None,
        kind: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Json:
        """One page of audit records, newest first: ``{"items", "limit", "offset", "next_offset"}``."""
        params: dict[str, str | int] = {"limit": limit, "offset": offset}
        for name, value in (("agent", agent), ("decision", decision), ("kind", kind)):
            if value:
                params[name] = value
        for name, moment in (("since", since), ("until", until)):
            if moment is not None:
                params[name] = _iso(moment)
        body = self._get("/api/audit", params)
        if body is None or not isinstance(body.get("items"), list):
            raise CollectorError(f"The collector at {self.base_url} sent an audit page without items.")
        return body

    def audit_all(
        self,
        cap: int,
        agent: str | None = None,
        decision: str | None = None,
        kind: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
    ) -> tuple[list[Json], bool]:
        """Every audit record the filters match, newest first, up to ``cap``; and whether more were left."""
        items: list[Json] = []
        offset: int | None = 0
        while offset is not None and len(items) < cap:
            page = self.audit(
                agent, decision, kind, since, until, limit=min(AUDIT_PAGE, cap - len(items)), offset=offset
            )
            items += page["items"]
            offset = page.get("next_offset") if page["items"] else None
        return items[:cap], offset is not None

    def overview(self, since: datetime | str, until: datetime | str, step_seconds: int) -> Json:
        """The collector's aggregates for charts: ``decisions_over_time``, ``top_rules``, ``agents``."""
        params: dict[str, str | int] = {"since": _iso(since), "until": _iso(until), "step": step_seconds}
        body = self._get("/api/overview", params)
        if body is None:
            raise CollectorError(f"The collector at {self.base_url} has no overview (an older version?).")
        return body

    def trace(self, trace_id: str) -> Json | None:
        """Every span of the trace (``{"trace_id", "spans"}``), or ``None`` when it is unknown."""
        return self._get(f"/api/traces/{trace_id}", {})

    def alerts(self, limit: int = 100) -> list[Json]:
        """Alert events, newest first: rejected policy edits and the like."""
        body = self._get("/api/alerts", {"limit": limit})
        return list(body["items"]) if body else []

    def approvals(self, status: str | None = None, limit: int = 100) -> list[Json]:
        """Approvals, newest first; ``status`` pending, approved, denied, timeout or abandoned."""
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        body = self._get("/api/approvals", params)
        return list(body["items"]) if body else []

    def decide(self, approval_id: str, approve: bool, reason: str) -> Json:
        """Approve or deny a held call as the approver whose token this client carries."""
        body = {"decision": "approve" if approve else "deny", "reason": reason}
        return self._post(f"/api/approvals/{approval_id}/decision", body)

    def agents(self) -> list[Json]:
        body = self._get("/api/agents", {})
        return list(body["items"]) if body else []

    def suspend(self, agent_id: str, suspended: bool, reason: str) -> Json:
        action = "suspend" if suspended else "resume"
        return self._post(f"/api/agents/{agent_id}/{action}", {"reason": reason})

    def guide(self, agent_id: str, text: str) -> Json:
        return self._post(f"/api/agents/{agent_id}/guidance", {"text": text})

    def _post(self, path: str, body: Json) -> Json:
        try:
            r = httpx.post(self.base_url + path, json=body, headers=self._headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise CollectorError(f"Cannot reach the collector at {self.base_url}: {e or type(e).__name__}") from e
        try:
            answer = r.json()
        except ValueError:
            answer = None
        if not r.is_success:
            raise CollectorError(f"The collector answered {r.status_code}: {_message(answer, r.text)}")
        if not isinstance(answer, dict):
            raise CollectorError(f"The collector sent something other than a JSON object for {path}.")
        return answer

    def health(self) -> bool:
        try:
            body = self._get("/healthz", {})
        except CollectorError:
            return False
        return body is not None and body.get("status") == "ok"

    def _get(self, path: str, params: dict[str, str | int]) -> Json | None:
        """The JSON object at ``path``; ``None`` on 404."""
        url = self.base_url + path
        try:
            r = httpx.get(url, params=params, headers=self._headers, timeout=self.timeout)
        except httpx.HTTPError as e:
            raise CollectorError(f"Cannot reach the collector at {self.base_url}: {e or type(e).__name__}") from e
        if r.status_code == 404:
            return None
        try:
            body = r.json()
        except ValueError:
            body = None
        if not r.is_success:
            raise CollectorError(f"The collector answered {r.status_code} for {path}: {_message(body, r.text)}")
        if not isinstance(body, dict):
            raise CollectorError(f"The collector sent something other than a JSON object for {path}.")
        return body


def _iso(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _message(body: Any, text: str) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return text[:200] or "no details"
