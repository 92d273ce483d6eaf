import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The policy's own modules and the SDK (ECSP_PYTHON_SDK, or the one in this checkout).
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.environ.get("ECSP_PYTHON_SDK") or os.path.join(HERE, "..", "..", "..", "guest-sdk", "python", "src"))
