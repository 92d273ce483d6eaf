"""Signs parameter sets with the official Python SDK's RPC signer (aliyun-python-sdk-core,
signature 1.0) so tests/tests/ecs.rs can compare our signer's output.

Input (stdin, JSON): [{"method": "GET"|"POST", "secret": str, "params": {name: value}}, ...]
Output (stdout, JSON): [{"string_to_sign": str, "signature": str}, ...] in the same order.
"""
import json
import sys

from aliyunsdkcore.auth.composer import rpc_signature_composer as composer

# Module-private helpers of the SDK's signer: the exact code its clients sign with.
compose = getattr(composer, "__compose_string_to_sign")
sign = getattr(composer, "__get_signature")

cases = json.load(sys.stdin)
results = []
for case in cases:
    string_to_sign = compose(case["method"], case["params"])
    results.append({"string_to_sign": string_to_sign, "signature": sign(string_to_sign, case["secret"])})
json.dump(results, sys.stdout)
