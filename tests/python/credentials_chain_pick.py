"""Which source the official Python credentials library (alibabacloud-credentials) picks for the
process environment it runs in; prints {"provider": ..., "access_key_id": ...} or {"error": ...}.

The library has no variable for the STS endpoint, so its STS requests (host sts*.aliyuncs.com)
are sent to the emulator named by ECSP_STS_EMULATOR (host:port) instead — over the library's own
transport, with its own signing: only the address changes.
"""
import json
import os

from Tea.core import TeaCore

_emulator = os.environ.get("ECSP_STS_EMULATOR", "")
_do_action = TeaCore.do_action


def _redirected(request, runtime_option=None):
    host = request.headers.get("host", "")
    if _emulator and host.startswith("sts") and host.endswith(".aliyuncs.com"):
        name, port = _emulator.rsplit(":", 1)
        request.headers["host"] = name
        request.port = int(port)
        request.protocol = "http"
    return _do_action(request, runtime_option)


TeaCore.do_action = staticmethod(_redirected)

from alibabacloud_credentials.provider import DefaultCredentialsProvider  # noqa: E402  (after the patch)

try:
    c = DefaultCredentialsProvider().get_credentials()
    out = {"provider": c.get_provider_name(), "access_key_id": c.get_access_key_id()}
except Exception as e:  # the chain's own summary of what every source said
    out = {"error": str(e)[:2000]}
print(json.dumps(out))
