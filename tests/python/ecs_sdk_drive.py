"""Drives the ECS emulator with Alibaba Cloud's official Python SDK (aliyun-python-sdk-core +
aliyun-python-sdk-ecs) and prints what it saw as JSON, for tests/tests/ecs.rs to check.

Input (stdin, JSON): {"host", "port", "region", "access_key_id", "access_key_secret",
"image_id", "instance_type", "security_group_id", "vswitch_id", "zone_id"}.
Faults are injected through the emulator's admin API between steps.
"""
import json
import sys
import urllib.request

from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from aliyunsdkcore.utils import parameter_helper
from aliyunsdkecs.request.v20140526.DeleteInstancesRequest import DeleteInstancesRequest
from aliyunsdkecs.request.v20140526.DescribeAvailableResourceRequest import DescribeAvailableResourceRequest
from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
from aliyunsdkecs.request.v20140526.DescribeRegionsRequest import DescribeRegionsRequest
from aliyunsdkecs.request.v20140526.RunInstancesRequest import RunInstancesRequest

cfg = json.load(sys.stdin)
out = {}


def client(secret=None, key_id=None):
    # auto_retry off: the test wants to see the emulator's first answer.
    return AcsClient(key_id or cfg["access_key_id"], secret or cfg["access_key_secret"], cfg["region"],
                     auto_retry=False, port=cfg["port"], timeout=10, connect_timeout=5)


def prepare(req, method=None):
    req.set_endpoint(cfg["host"])
    req.set_accept_format("JSON")
    if method:
        req.set_method(method)
    return req


def call(req, c=None):
    """Returns {"ok": response} or {"error": code, "status": http status}."""
    try:
        body = (c or client()).do_action_with_exception(req)
        return {"ok": json.loads(body)}
    except ServerException as e:
        return {"error": e.get_error_code(), "status": e.get_http_status(), "message": e.get_error_msg()}


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://%s:%d%s" % (cfg["host"], cfg["port"], path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def run(amount, team, token=None, method=None):
    req = prepare(RunInstancesRequest(), method)
    req.set_ImageId(cfg["image_id"])
    req.set_InstanceType(cfg["instance_type"])
    req.set_SecurityGroupId(cfg["security_group_id"])
    req.set_VSwitchId(cfg["vswitch_id"])
    req.set_Amount(amount)
    req.set_Tags([{"Key": "team", "Value": team}, {"Key": "owner", "Value": "sdk test"}])
    if token:
        req.set_ClientToken(token)
    return call(req)


def describe_all(team, page_size, method=None):
    """Pages through DescribeInstances with a tag filter; returns ids and the page count."""
    ids, pages, page = [], 0, 1
    while True:
        req = prepare(DescribeInstancesRequest(), method)
        req.set_Tags([{"Key": "team", "Value": team}])
        req.set_PageSize(page_size)
        req.set_PageNumber(page)
        r = call(req)
        if "error" in r:
            return r
        pages += 1
        batch = r["ok"]["Instances"]["Instance"]
        ids += [i["InstanceId"] for i in batch]
        if not batch or len(ids) >= r["ok"]["TotalCount"]:
            return {"ids": ids, "pages": pages, "total": r["ok"]["TotalCount"],
                    "first": batch[0] if batch else None}
        page += 1


# Launch (POST, the SDK's default for typed requests), with idempotent replay.
out["run_a"] = run(3, "a", token="sdk-token-1")
out["run_a_replay"] = run(3, "a", token="sdk-token-1")
out["run_b"] = run(25, "b", method="GET")

# Paging with tag filters, POST and GET.
out["describe_b_post"] = describe_all("b", 10)
out["describe_a_get"] = describe_all("a", 100, method="GET")

# By id list (JSON array), CommonRequest over GET.
req = prepare(CommonRequest(), "GET")
req.set_domain(cfg["host"])
req.set_version("2014-05-26")
req.set_action_name("DescribeInstances")
req.add_query_param("InstanceIds", json.dumps(out["run_a"]["ok"]["InstanceIdSets"]["InstanceIdSet"][:2]))
out["describe_ids_common_get"] = call(req)

# Offerings.
req = prepare(DescribeAvailableResourceRequest())
req.set_DestinationResource("InstanceType")
out["available"] = call(req)

# Release (POST) and check they are gone.
req = prepare(DeleteInstancesRequest())
req.set_InstanceIds(out["run_a"]["ok"]["InstanceIdSets"]["InstanceIdSet"])
req.set_Force(True)
out["delete_a"] = call(req)
out["describe_a_after_delete"] = describe_all("a", 10)

# Authentication failures.
out["wrong_secret"] = call(prepare(DescribeRegionsRequest()), client(secret="not-the-secret"))
out["unknown_key"] = call(prepare(DescribeRegionsRequest()), client(key_id="LTAI-nobody"))
real_uuid = parameter_helper.get_uuid
parameter_helper.get_uuid = lambda: "fixed-nonce-for-replay-test"
out["nonce_first"] = call(prepare(DescribeRegionsRequest()))
out["nonce_reused"] = call(prepare(DescribeRegionsRequest()))
parameter_helper.get_uuid = real_uuid
real_date = parameter_helper.get_iso_8061_date
parameter_helper.get_iso_8061_date = lambda: "2016-02-23T12:46:24Z"
out["stale_timestamp"] = call(prepare(DescribeRegionsRequest()))
parameter_helper.get_iso_8061_date = real_date

# Injected faults.
admin("POST", "/_admin/faults/no-stock", {"zone_id": cfg["zone_id"], "instance_type": cfg["instance_type"]})
out["no_stock"] = run(1, "c")
admin("PUT", "/_admin/faults", {"throttle": [{"action": "DescribeRegions", "probability": 1.0}]})
out["throttled"] = call(prepare(DescribeRegionsRequest()))
req = prepare(DescribeAvailableResourceRequest())
req.set_DestinationResource("Zone")
out["not_throttled_other_action"] = call(req)
admin("DELETE", "/_admin/faults")
out["after_faults_cleared"] = call(prepare(DescribeRegionsRequest()))

json.dump(out, sys.stdout)
