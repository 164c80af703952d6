"""Policy objects of tools, and how a rule's object pattern matches them."""

from __future__ import annotations

from fnmatch import fnmatchcase

TOOL_PREFIX = "tool:"


def tool_object(tool: str, server: str | None = None) -> str:
    """The policy object of a tool: ``tool:<server>/<tool>`` for a tool of an MCP server,
    ``tool:<tool>`` for one a model emitted (its server is unknown)."""
    return f"{TOOL_PREFIX}{server}/{tool}" if server else f"{TOOL_PREFIX}{tool}"


def wildcard_match(value: str, pattern: str) -> bool:
    """``wildcardMatch`` in matchers: shell-style wildcards where ``*`` also matches ``/``.

    Tools of an MCP server are named ``tool:<server>/<tool>``; a pattern naming no server
    (``tool:send_email``, ``tool:delete_*``) matches the tool of any server as well."""
    if fnmatchcase(value, pattern):
        return True
    if value.startswith(TOOL_PREFIX) and pattern.startswith(TOOL_PREFIX) and "/" not in pattern:
        _server, slash, tool = value.partition("/")
        return bool(slash) and fnmatchcase(TOOL_PREFIX + tool, pattern)
    return False
