"""The Bastion dashboard: ``streamlit run src/bastion/dashboard/app.py``.

It reads only the collector's HTTP API, at ``BASTION_COLLECTOR_URL`` (default
``http://127.0.0.1:4318``). Pages: the overview's charts (``/``), the audit trail with its export
(``/audit``), one trace (``/trace?trace_id=``), approvals (``/approvals``: held calls, decisions,
suspending and guiding agents) and alerts (``/alerts``: rejected policy edits and other events).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from bastion.dashboard import session
from bastion.dashboard.client import CollectorClient

# Not named `pages/`: Streamlit would also serve that folder as legacy multipage URLs that bypass
# this script (no sidebar, no sign-in). Every URL goes through st.navigation below.
SCREENS = Path(__file__).resolve().parent / "screens"
st.set_page_config(page_title="Bastion", page_icon="🛡️", layout="wide")
navigation = st.navigation(
    [
        # The default page always lives at "/" (its url_path is not served), so it is not a page
        # people link to: the overview.
        st.Page(SCREENS / "overview.py", title="Overview", icon="📊", default=True),
        st.Page(SCREENS / "audit.py", title="Audit trail", icon="📜", url_path="audit"),
        st.Page(SCREENS / "trace.py", title="Trace", icon="🔎", url_path="trace"),
        st.Page(SCREENS / "approvals.py", title="Approvals", icon="✋", url_path="approvals"),
        st.Page(SCREENS / "alerts.py", title="Alerts", icon="🚨", url_path="alerts"),
    ]
)


def _sign_in() -> None:
    st.session_state[session.TOKEN] = st.session_state.get("token_input", "")


client = CollectorClient()
with st.sidebar:
    state = "connected" if client.health() else "unreachable"
    st.caption(f"Collector: {client.base_url} ({state})")
    who = session.operator()
    if who is None:
        # Asked once per browser session; tokens come from `bastion operators add`.
        st.text_input(
            "Operator token",
            type="password",
            key="token_input",
            on_change=_sign_in,
            help="bop_... from bastion operators add (bap_... approver tokens work too)",
        )
        if session.token():
            st.error("The collector does not know this token.")
    else:
        st.caption(f"Signed in as **{who['name']}** ({who['role']})")
        st.button("Sign out", on_click=session.sign_out)
if state == "unreachable":
    st.title("Bastion")
    st.error(session.unreachable(client.base_url))
elif who is None:
    st.title("Bastion")
    st.info(session.SIGN_IN)
else:
    navigation.run()
