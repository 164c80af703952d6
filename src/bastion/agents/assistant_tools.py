"""The assistant suite of the offline MCP tool server (``bastion tool-server --suite assistant``):
mail, calendar, files, payments, team chat and web fetch, the tools the example policy set
``policies/examples/assistant/`` governs. Every tool answers with a fixed text naming what it did,
so tests see which calls ran (the server records every ``tools/call``)."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer


def build_assistant_server() -> MCPServer:
    server: MCPServer = MCPServer("bastion-assistant-tools", version="1")

    @server.tool()
    def read_inbox(folder: str = "inbox") -> str:
        """List the mails in a folder."""
        return f"{folder}: no new mail"

    @server.tool()
    def send_email(to: str, subject: str, body: str) -> str:
        """Send an email."""
        return f"Email sent to {to}: {subject!r}"

    @server.tool()
    def list_events(day: str) -> str:
        """List the calendar's events on a day."""
        return f"{day}: no events"

    @server.tool()
    def create_event(title: str, day: str, participants: list[str]) -> str:
        """Create a calendar event and invite its participants."""
        return f"Event {title!r} on {day} with {', '.join(participants)}"

    @server.tool()
    def read_file(path: str) -> str:
        """Read a file from the user's drive."""
        return f"{path}: (empty)"

    @server.tool()
    def share_file(path: str, user: str) -> str:
        """Share a file with someone."""
        return f"{path} shared with {user}"

    @server.tool()
    def send_money(recipient: str, amount: float, note: str = "") -> str:
        """Pay a recipient (an IBAN)."""
        return f"Paid {amount:.2f} to {recipient}"

    @server.tool()
    def post_message(channel: str, text: str) -> str:
        """Post a message to a team chat channel."""
        return f"Posted to {channel}"

    @server.tool()
    def invite_user(user: str, channel: str) -> str:
        """Invite someone to a team chat channel."""
        return f"Invited {user} to {channel}"

    @server.tool()
    def send_direct_message(user: str, text: str) -> str:
        """Send a direct message in the team chat."""
        return f"Message sent to {user}"

    @server.tool()
    def fetch_url(url: str) -> str:
        """Fetch a web page."""
        return f"Fetched {url}: (offline)"

    return server
