"""The contract's generated types, wherever the policy runs.

Inside a component, componentize-py generates the `wit_world` package from `wit/policy.wit`
at build time. Natively (pytest) the same generated code is read from `guest-sdk/python/native`,
which `componentize-py bindings` wrote and a test keeps in step with the WIT.
"""

import os
import sys

NATIVE = sys.platform != "wasi"

if NATIVE:
    _native = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "native")
    if _native not in sys.path:
        sys.path.append(_native)

from componentize_py_types import Err  # noqa: E402
from wit_world.exports import policy as wit  # noqa: E402
from wit_world.imports import host  # noqa: E402

__all__ = ["NATIVE", "Err", "wit", "host"]
