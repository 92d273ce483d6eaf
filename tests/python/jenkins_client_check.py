"""python-jenkins against the Jenkins emulator.

Run by tests/tests/jenkins.rs with JENKINS_URL, JENKINS_USER and JENKINS_TOKEN set. Before it
runs, the Rust test has defined the freestyle job `py-job` (label `linux`) and connected an
emulated agent to node `py-online` (label `online-only`). Exits non-zero on the first failure.
"""
import os
import sys

import jenkins
import requests

checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


url, user, token = os.environ["JENKINS_URL"], os.environ["JENKINS_USER"], os.environ["JENKINS_TOKEN"]
server = jenkins.Jenkins(url, username=user, password=token, timeout=10)

# get_version sends no credentials until a first call has resolved auth, and a secured
# Jenkins refuses anonymous readers: authenticate with get_whoami first.
check(server.get_whoami()["id"] == user, "get_whoami names the user")
check(server.get_version(), "get_version returns the X-Jenkins header")

# create_node with a JNLP (inbound) launcher, as python-jenkins sends it.
check(not server.node_exists("py-node"), "py-node does not exist yet")
server.create_node(
    "py-node",
    numExecutors=2,
    nodeDescription="made by python-jenkins",
    remoteFS="/home/jenkins",
    labels="linux docker",
    exclusive=True,
    launcher=jenkins.LAUNCHER_JNLP,
    launcher_params={"webSocket": True},
)
check(server.node_exists("py-node"), "node_exists after create_node")
try:
    server.create_node("py-node", launcher=jenkins.LAUNCHER_JNLP)
    check(False, "creating a duplicate node must fail")
except jenkins.JenkinsException as e:
    check("already exists" in str(e), "duplicate create says it exists: %s" % e)

nodes = {n["name"]: n for n in server.get_nodes()}
check("Built-In Node" in nodes and "py-node" in nodes and "py-online" in nodes, "get_nodes lists all: %s" % nodes)
check(nodes["py-node"]["offline"] is True, "py-node has no agent, so it is offline")
check(nodes["py-online"]["offline"] is False, "py-online has an agent connected")
with_info = {n["name"]: n for n in server.get_nodes_with_info()}
check(with_info["py-node"]["description"] == "made by python-jenkins", "get_nodes_with_info has the description")

info = server.get_node_info("py-node")
check(info["numExecutors"] == 2, "numExecutors bound from the form")
check({l["name"] for l in info["assignedLabels"]} == {"linux", "docker", "py-node"}, "labels plus self label")
check(info["temporarilyOffline"] is False and info["jnlpAgent"] is True, "fresh inbound node")
check(server.get_node_info("Built-In Node")["displayName"] == "Built-In Node", "(master) alias")
check(info["offlineCauseReason"] == "", "no offline reason yet")

# disable_node / enable_node toggle a connected node (python-jenkins skips offline ones).
server.disable_node("py-online", "maintenance window")
info = server.get_node_info("py-online")
check(info["temporarilyOffline"] is True and info["offline"] is True, "disable_node marks offline")
check(info["offlineCauseReason"] == "maintenance window", "offline reason kept: %r" % info["offlineCauseReason"])
server.disable_node("py-online", "again")  # already offline: python-jenkins sends nothing
check(server.get_node_info("py-online")["temporarilyOffline"] is True, "still offline")
server.enable_node("py-online")
info = server.get_node_info("py-online")
check(info["temporarilyOffline"] is False and info["offline"] is False, "enable_node brings it back")

# reconfig_node posts config.xml back (Computer.updateByXml): the description changes, the
# rest of the node stays as it was.
xml = server.get_node_config("py-node")
check("<description>made by python-jenkins</description>" in xml, "get_node_config has the description")
server.reconfig_node("py-node", xml.replace("made by python-jenkins", "idle since 42 &amp; counting"))
info = server.get_node_info("py-node")
check(info["description"] == "idle since 42 & counting", "reconfig_node sets the description: %r" % info["description"])
check(info["numExecutors"] == 2, "reconfig_node keeps the executors")
check({l["name"] for l in info["assignedLabels"]} == {"linux", "docker", "py-node"}, "reconfig_node keeps the labels")
try:
    server.reconfig_node("py-node", xml.replace("<name>py-node</name>", "<name>other</name>"))
    check(False, "a config.xml naming another node must be refused")
except requests.exceptions.HTTPError as e:
    check(e.response.status_code == 400, "a config.xml naming another node is refused: %s" % e)

# build_job returns the queue id; the item waits on the only (offline) node with the label.
qid = server.build_job("py-job")
check(isinstance(qid, int) and qid > 0, "build_job returns a queue id")
check(server.build_job("py-job") == qid, "a freestyle job already queued is not queued twice")
queue = server.get_queue_info()
item = [i for i in queue if i["id"] == qid]
check(len(item) == 1, "get_queue_info lists the item: %s" % queue)
item = item[0]
check(item["task"]["name"] == "py-job" and item["task"]["labelExpression"] == "linux", "freestyle task shape")
check(item["buildable"] is True and item["stuck"] is True, "buildable and stuck")
check(item["why"] == "\u2018py-node\u2019 is offline", "single-node why: %r" % item["why"])
check(server.get_queue_item(qid)["id"] == qid, "get_queue_item")

server.delete_node("py-node")
check(not server.node_exists("py-node"), "delete_node removes it")
why = [i for i in server.get_queue_info() if i["id"] == qid][0]["why"]
check(why == "There are no nodes with the label \u2018linux\u2019", "no-node why: %r" % why)

try:
    server.get_node_info("py-node")
    check(False, "get_node_info of a deleted node must fail")
except jenkins.JenkinsException:
    check(True, "deleted node is gone")

print("python-jenkins: all %d checks ok" % checks)
sys.exit(0)
