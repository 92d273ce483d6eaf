"""Sends one RunInstances dry run built with the official SDK's request model
(aliyun-python-sdk-ecs RunInstancesRequest setters) carrying a full launch profile, so that
tests/tests/ecs.rs can compare the parameters the emulator received with those of the
provisioner's own request for the same profile. Also lists every parameter name the request
model can send (N = 1 for repeated ones).

Input (stdin, JSON): {"host", "port", "region", "access_key_id", "access_key_secret",
"image_id", "instance_type", "vswitch_id", "zone_id", "security_group_ids", "key_pair_name",
"release_time"}.
"""
import inspect
import json
import re
import sys

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526 import RunInstancesRequest as module
from aliyunsdkecs.request.v20140526.RunInstancesRequest import RunInstancesRequest

cfg = json.load(sys.stdin)
client = AcsClient(cfg["access_key_id"], cfg["access_key_secret"], cfg["region"], auto_retry=False,
                   port=cfg["port"], timeout=10, connect_timeout=5)

req = RunInstancesRequest()
req.set_endpoint(cfg["host"])
req.set_accept_format("JSON")
req.set_ImageId(cfg["image_id"])
req.set_InstanceType(cfg["instance_type"])
req.set_VSwitchId(cfg["vswitch_id"])
req.set_ZoneId(cfg["zone_id"])
req.set_SecurityGroupIdss(cfg["security_group_ids"])
req.set_KeyPairName(cfg["key_pair_name"])
req.set_Amount(1)
req.set_InstanceName("gpu-l1")
req.set_HostName("ci-gpu-${instance_id}")
req.set_SystemDiskCategory("cloud_essd")
req.set_SystemDiskSize("60")
req.set_SystemDiskPerformanceLevel("PL0")
req.set_DataDisks([
    {"Category": "cloud_essd", "Size": 100, "PerformanceLevel": "PL1", "DeleteWithInstance": "true"},
    {"Category": "cloud_efficiency", "Size": 200, "DeleteWithInstance": "false"},
])
req.set_UserData("IyEvYmluL3NoCmVjaG8gaGkK")
req.set_RamRoleName("ci-gpu")
req.set_ResourceGroupId("rg-ci")
req.set_InternetMaxBandwidthOut(5)
req.set_HttpTokens("required")
req.set_AutoReleaseTime(cfg["release_time"])
req.set_DryRun(True)

out = {}
try:
    out["dry_run"] = {"ok": json.loads(client.do_action_with_exception(req))}
except ServerException as e:
    out["dry_run"] = {"error": e.get_error_code(), "message": e.get_error_msg()}

# Every name the request model sends: literal ones, and 'Name.' + str(n) + '.Field' ones (n = 1).
source = inspect.getsource(module)
names = set(n for n in re.findall(r"add_query_param\('([A-Za-z0-9.]+)'", source) if not n.endswith("."))
for head, field in re.findall(r"add_query_param\('([A-Za-z]+)\.' \+ str\(depth1 \+ 1\) \+ '\.([A-Za-z.]+)'", source):
    names.add("%s.1.%s" % (head, field))
for head in re.findall(r"add_query_param\('([A-Za-z]+)\.' \+ str\(depth1 \+ 1\), ", source):
    names.add("%s.1" % head)
out["model_names"] = sorted(names)
json.dump(out, sys.stdout)
