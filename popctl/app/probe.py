"""Probing a server nobody has configured yet: which TLS mode works, which mechanism to use."""

from __future__ import annotations

import os
from typing import Any

from popctl import auth, defaults
from popctl.app.context import UI
from popctl.errors import PopctlError, RemoteProtocolError, ServerError, TransportError
from popctl.models import Credentials, Endpoint, TLSMode
from popctl.session import Session


def probe(ui: UI, values: dict[str, Any]) -> dict[str, Any]:
    """Try implicit TLS, then STLS (or the mode given); read CAPA; return the settings to
    propose ({} when the person at the terminal declines them)."""
    host, port = values["host"], values.get("port")
    modes = [TLSMode(values["tls"])] if "tls" in values else [TLSMode.IMPLICIT, TLSMode.STARTTLS]
    timeout = min(values.get("timeout", defaults.PROBE_TIMEOUT), defaults.PROBE_TIMEOUT)
    ca_file = os.path.expanduser(values["ca_file"]) if "ca_file" in values else None
    tried = []
    for mode in modes:
        endpoint = Endpoint(host=host, port=port, tls=mode, ca_file=ca_file,
                            fingerprint=values.get("fingerprint"), connect_timeout=timeout,
                            timeout=timeout)
        ui.note(f"probe: {mode.value} on port {endpoint.effective_port} ...")
        try:
            with Session.connect(endpoint) as session:
                caps, tls = session.capabilities, session.tls
                timestamp = session.greeting.timestamp if session.greeting else None
        except (TransportError, RemoteProtocolError, ServerError) as e:
            tried.append(f"{mode.value} port {endpoint.effective_port}: {ui.describe(e)}")
            continue
        oauth = "oauth2_token_command" in values  # placeholders: only the choice matters
        trial = Credentials(values["user"], password=None if oauth else "x",
                            oauth2_token="x" if oauth else None,
                            mechanism=values.get("auth", defaults.MECHANISM))
        mechanism = None
        try:
            mechanism = auth.choose_mechanism(trial, caps, encrypted=tls is not None,
                                              apop_timestamp=timestamp)
        except PopctlError as e:
            ui.note(f"probe: no usable mechanism: {ui.describe(e)}")
        proposal: dict[str, Any] = {"tls": mode.value}
        if port is None and endpoint.effective_port != mode.default_port:
            proposal["port"] = endpoint.effective_port
        if mechanism is not None:
            proposal["auth"] = mechanism
        how = "implicit TLS" if mode is TLSMode.IMPLICIT else "STLS"
        ui.note(f"probe: {how} works on port {endpoint.effective_port}"
                f" ({tls.version if tls else 'no TLS'}); SASL offered: "
                f"{' '.join(caps.sasl) or 'none'}; proposed: "
                + ", ".join(f"{k} = {v}" for k, v in proposal.items()))
        if ui.interactive() and not ui.confirm("Use these settings?", default=True):
            return {}
        return proposal
    raise TransportError(f"probe: no TLS connection to {host} worked ("
                         + "; ".join(tried) + ")", hint="probe-failed")
