"""Approvals: calls held for a human, decided in one click; past decisions; suspending and guiding agents.

Viewers read; deciding and stepping in need an approver's or admin's token (signed in from the sidebar).
The pending list refreshes itself every few seconds (only that fragment reruns); a decision reruns the
whole page, so the history and the confirmation above the tabs show it at once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from bastion.dashboard import session
from bastion.dashboard.client import CollectorError

session.require()

REFRESH_SECONDS = 2.0
FLASH = "approvals_flash"
DECIDED = "approvals_decided"  # set by a decision; the pending fragment then reruns the whole page
AGENTS_FLASH = "agents_flash"


def _when(moment: float | None) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _decide(ids: list[str], approve: bool, reason_key: str | None) -> None:
    reason = str(st.session_state.get(reason_key, "")) if reason_key else ""
    messages = []
    for approval_id in ids:
        try:
            record = session.client().decide(approval_id, approve, reason)
            messages.append(("success", f"{approval_id}: {record['status']} by {record['approver']}."))
        except CollectorError as e:
            messages.append(("error", f"{approval_id}: {e}"))
    st.session_state[FLASH] = messages
    st.session_state[DECIDED] = True


def _flash(key: str = FLASH) -> None:
    for kind, text in st.session_state.pop(key, []):
        (st.success if kind == "success" else st.error)(text)


def _approval(item: dict[str, Any], can_decide: bool) -> None:
    approval_id = item["id"]
    with st.container(border=True):
        st.markdown(
            f"**{item['agent_id']}** ({item.get('role') or 'no role'}) wants **{item['action']}** on "
            f"`{item['target']}` · rule `{item['rule']}` · waiting since {_when(item['created'])} UTC"
        )
        st.caption(f"{item.get('reason') or ''} · approval {approval_id} · times out after {item['timeout_seconds']} s")
        clear = item.get("arguments_clear")
        if clear is not None:  # approvers see the values they approve; the store keeps them sealed
            st.caption("Arguments as the agent sent them (shown to approvers only, never stored in clear):")
        st.code(json.dumps(item.get("arguments") if clear is None else clear, indent=2, default=str), language="json")
        if item.get("messages"):
            with st.expander("Conversation (last messages)"):
                for message in item["messages"]:
                    st.markdown(f"**{message.get('role')}**: {message.get('content')}")
        if item.get("trace_id"):
            st.page_link(
                "screens/trace.py", label="Open its trace", icon="🔎", query_params={"trace_id": item["trace_id"]}
            )
        reason_key = f"reason_{approval_id}"
        st.text_input("Reason", key=reason_key, placeholder="why (recorded and shown to the agent)")
        approve_col, deny_col = st.columns(2)
        approve_col.button(
            "Approve",
            key=f"approve_{approval_id}",
            type="primary",
            disabled=not can_decide,
            on_click=_decide,
            args=([approval_id], True, reason_key),
        )
        deny_col.button(
            "Deny",
            key=f"deny_{approval_id}",
            disabled=not can_decide,
            on_click=_decide,
            args=([approval_id], False, reason_key),
        )


@st.fragment(run_every=REFRESH_SECONDS)
def pending() -> None:
    if st.session_state.pop(DECIDED, False):  # a click here reran only this fragment: the history is stale
        st.rerun(scope="app")
    try:
        items = session.client().approvals("pending")
    except CollectorError as e:
        st.error(f"Approvals are unavailable. {e}")
        return
    can_decide = session.can("approver")
    if not can_decide:
        st.warning("Deciding needs an approver or admin token: sign in with one in the sidebar.")
    if not items:
        st.info("No calls are waiting for approval.")
        return
    st.caption(f"{len(items)} waiting, newest first. This list refreshes every {REFRESH_SECONDS:.0f} s.")
    labels = {i["id"]: f"{i['id']} · {i['agent_id']} · {i['target']}" for i in items}
    chosen = st.multiselect(
        "Select several to decide at once", list(labels), format_func=lambda i: labels[i], key="batch"
    )
    batch_col, batch_deny_col = st.columns(2)
    batch_col.button(
        f"Approve {len(chosen)} selected",
        key="approve_batch",
        disabled=not (can_decide and chosen),
        on_click=_decide,
        args=(list(chosen), True, "batch_reason"),
    )
    batch_deny_col.button(
        f"Deny {len(chosen)} selected",
        key="deny_batch",
        disabled=not (can_decide and chosen),
        on_click=_decide,
        args=(list(chosen), False, "batch_reason"),
    )
    st.text_input("Reason for the selected", key="batch_reason")
    for item in items:
        _approval(item, can_decide)


def history() -> None:
    try:
        items = [i for i in session.client().approvals(limit=200) if i["status"] != "pending"]
    except CollectorError as e:
        st.error(f"The history is unavailable. {e}")
        return
    if not items:
        st.info("No decisions yet.")
        return
    rows = [
        {
            "Decided (UTC)": _when(i["decided"]),
            "Status": i["status"],
            "Agent": i["agent_id"],
            "Call": f"{i['action']} {i['target']}",
            "Rule": i["rule"],
            "Approver": i.get("approver") or "",
            "Reason": i.get("decision_reason") or "",
            "Trace": i.get("trace_id") or "",
            "Id": i["id"],
        }
        for i in items
    ]
    st.dataframe(rows, hide_index=True, key="approvals_history")


def _intervene(action: str) -> None:
    agent = str(st.session_state.get("intervene_agent", "")).strip()
    text = str(st.session_state.get("intervene_text", "")).strip()
    if not agent:
        st.session_state[AGENTS_FLASH] = [("error", "Name the agent first.")]
        return
    client = session.client()
    try:
        if action == "guide":
            client.guide(agent, text)
            message = f"Guidance waits for {agent}'s next model call."
        else:
            client.suspend(agent, action == "suspend", text)
            message = f"Agent {agent} is {'suspended' if action == 'suspend' else 'resumed'}."
        st.session_state[AGENTS_FLASH] = [("success", message)]
    except CollectorError as e:
        st.session_state[AGENTS_FLASH] = [("error", str(e))]


def agents() -> None:
    _flash(AGENTS_FLASH)
    st.text_input("Agent", key="intervene_agent", placeholder="agent id")
    st.text_area("Reason or guidance", key="intervene_text")
    disabled = not session.can("approver")
    suspend_col, resume_col, guide_col = st.columns(3)
    suspend_col.button("Suspend", key="suspend_agent", disabled=disabled, on_click=_intervene, args=("suspend",))
    resume_col.button("Resume", key="resume_agent", disabled=disabled, on_click=_intervene, args=("resume",))
    guide_col.button("Send guidance", key="guide_agent", disabled=disabled, on_click=_intervene, args=("guide",))
    try:
        known = session.client().agents()
    except CollectorError as e:
        st.error(str(e))
        return
    if known:
        rows = [
            {
                "Agent": a["agent_id"],
                "State": "⛔ suspended" if a["suspended"] else "active",
                "By": a.get("by") or "",
                "Reason": a.get("reason") or "",
                "Guidance waiting": sum(g["delivered"] is None for g in a.get("guidance", [])),
            }
            for a in known
        ]
        st.dataframe(rows, hide_index=True, key="agents_table")


st.title("Approvals")
st.session_state.pop(DECIDED, None)  # this run is the whole page already
_flash()
waiting_tab, history_tab, agents_tab = st.tabs(["Waiting", "History", "Agents"])
with waiting_tab:
    pending()
with history_tab:
    history()
with agents_tab:
    agents()
