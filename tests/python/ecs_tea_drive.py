"""Drives the ECS emulator with the newer official SDK generation (alibabacloud-tea-openapi),
which signs with V3 (ACS3-HMAC-SHA256) by default and with V2 (`Format=json`, lowercase) on
request. Prints what it saw as JSON for tests/tests/ecs.rs.

Input (stdin, JSON): {"port", "region", "access_key_id", "access_key_secret", "image_id",
"instance_type", "security_group_id", "vswitch_id"}.
"""
import json
import sys

from alibabacloud_tea_openapi import exceptions, models, utils_models
from alibabacloud_tea_openapi.client import Client
from darabonba.runtime import RuntimeOptions

cfg = json.load(sys.stdin)
out = {}


def client(secret=None, algorithm=None):
    config = models.Config(access_key_id=cfg["access_key_id"], access_key_secret=secret or cfg["access_key_secret"],
                           endpoint="127.0.0.1:%d" % cfg["port"], protocol="http", region_id=cfg["region"])
    if algorithm:
        config.signature_algorithm = algorithm
    return Client(config)


def call(action, query, c=None, method="POST"):
    params = utils_models.Params(action=action, version="2014-05-26", protocol="HTTP", pathname="/", method=method,
                                 auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    request = utils_models.OpenApiRequest(query=query)
    try:
        return {"ok": (c or client()).call_api(params, request, RuntimeOptions(autoretry=False))["body"]}
    except exceptions.AlibabaCloudException as e:
        return {"error": e.code, "status": e.status_code}


run = {"RegionId": cfg["region"], "ImageId": cfg["image_id"], "InstanceType": cfg["instance_type"],
       "SecurityGroupId": cfg["security_group_id"], "VSwitchId": cfg["vswitch_id"], "Amount": "2",
       "Tag.1.Key": "via", "Tag.1.Value": "tea v3 * ~ +/=&"}
out["v3_run"] = call("RunInstances", run)
out["v3_describe"] = call("DescribeInstances", {"RegionId": cfg["region"], "Tag.1.Key": "via",
                                                 "Tag.1.Value": "tea v3 * ~ +/=&", "PageSize": "50"}, method="GET")
out["v3_wrong_secret"] = call("DescribeRegions", {"RegionId": cfg["region"]}, client(secret="wrong"))
out["v2_regions"] = call("DescribeRegions", {"RegionId": cfg["region"]}, client(algorithm="v2"))
out["v2_wrong_secret"] = call("DescribeRegions", {"RegionId": cfg["region"]}, client(secret="wrong", algorithm="v2"))
json.dump(out, sys.stdout)
