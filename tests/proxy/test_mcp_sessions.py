import pytest

from bastion.proxy.mcp_sessions import SessionBinder

BINDER = SessionBinder(b"shared token")
HANDED = BINDER.bind("agent-a", "tools", "4f1c.e9")


def test_the_session_handed_to_an_agent_unbinds_to_the_servers_id() -> None:
    assert HANDED.startswith("4f1c.e9.") and BINDER.unbind("agent-a", "tools", HANDED) == "4f1c.e9"


def test_replicas_sharing_the_token_agree_and_others_do_not() -> None:
    assert SessionBinder(b"shared token").unbind("agent-a", "tools", HANDED) == "4f1c.e9"
    assert SessionBinder(b"another token").unbind("agent-a", "tools", HANDED) is None
    assert SessionBinder.from_token(None).unbind("agent-a", "tools", HANDED) is None


@pytest.mark.parametrize(
    ("agent", "server", "presented"),
    [
        ("agent-b", "tools", HANDED),  # another agent replays it
        ("agent-a", "files", HANDED),  # at another MCP server
        ("agent-a", "tools", "4f1c.e9"),  # the server's own id, untagged
        ("agent-a", "tools", "4f1c"),
        ("agent-a", "tools", "other" + HANDED[4:]),  # someone else's id under this tag
        ("agent-a", "tools", HANDED[:-1] + ("A" if HANDED[-1] != "A" else "B")),
        ("agent-a", "tools", "." + HANDED.rsplit(".", 1)[1]),
        ("agent-a", "tools", HANDED + "é"),
        ("agent-a", "tools", ""),
    ],
)
def test_any_other_session_id_is_refused(agent: str, server: str, presented: str) -> None:
    assert BINDER.unbind(agent, server, presented) is None
