"""Bad input gets a clear 4xx in the caller's API format before anything else happens.

A model endpoint's body must be a JSON object within :mod:`~bastion.proxy.jsonlimits`' limits (size,
depth); anything else is refused here, so that no call to a model is ever taken for something else.
"""

from __future__ import annotations

from urllib.parse import unquote

from mitmproxy import http

from bastion.proxy import formats, jsonlimits
from bastion.proxy.decision import error
from bastion.proxy.state import answered, refuse, state


def has_dot_segments(path: str) -> bool:
    segments = unquote(path.split("?", 1)[0]).replace("\\", "/").split("/")
    return any(segment in (".", "..") for segment in segments)


class Validate:
    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes

    def _refuse(self, flow: http.HTTPFlow, status: int, code: str, message: str) -> None:
        refuse(flow, error(code, message), status, message, code)

    def _too_large(self, flow: http.HTTPFlow, size: int) -> None:
        message = f"Request body of {size} bytes is over Bastion's limit of {self.max_body_bytes} bytes."
        self._refuse(flow, 413, "body_too_large", message)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        length = flow.request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            self._too_large(flow, int(length))

    def request(self, flow: http.HTTPFlow) -> None:
        if answered(flow):
            return
        st = state(flow)
        if has_dot_segments(st.upstream_path):
            message = "Paths with '.' or '..' segments are refused: policies decide on the path as sent."
            self._refuse(flow, 400, "dot_segments_in_path", message)
            return
        body = flow.request.raw_content or b""
        if len(body) > self.max_body_bytes:
            self._too_large(flow, len(body))
            return
        route = st.route
        path = st.upstream_path.split("?", 1)[0]
        fmt = None if route is None else formats.recognise(route.provider, flow.request.method, path)
        if fmt is None:
            return
        content_type = flow.request.headers.get("content-type", "")
        if "json" not in content_type.split(";", 1)[0].lower():
            message = f"Content-Type must be application/json, got {content_type or 'none'!r}."
            self._refuse(flow, 415, "unsupported_content_type", message)
            return
        try:
            parsed = jsonlimits.loads(flow.request.get_content() or b"")
        except ValueError as e:  # UnicodeDecodeError and a content-encoding that does not decode are ValueErrors
            self._refuse(flow, 400, "invalid_json", f"Request body is not valid JSON within Bastion's limits: {e}.")
            return
        if not isinstance(parsed, dict):
            self._refuse(flow, 400, "invalid_json", "Request body must be a JSON object.")
            return
        if not fmt.model(parsed, st.upstream_path):
            self._refuse(flow, 400, "missing_model", "Request body must name a 'model' (a string).")
            return
        st.body = st.agent_body = parsed
