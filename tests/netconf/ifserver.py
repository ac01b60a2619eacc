#!/usr/bin/env python3
"""A small NETCONF server for the end-to-end tests, on PyPI's `netconf` server library.

It serves ietf-interfaces state (RFC 8343 `interfaces` and RFC 7223 `interfaces-state`) from a
JSON file the test edits, over SSH with a user and password, on 127.0.0.1 only:

    {"interfaces": [{"name": "ge-0/0/1", "admin": "up", "oper": "up", "if_index": 1,
                     "description": "uplink: dist-1", "in_octets": 10, "out_octets": 20,
                     "speed": 10000000000}]}

With --openconfig it lists and serves openconfig-interfaces instead (UPPER_CASE status,
last-change in nanoseconds, a subinterface under each interface).

With --notifications it offers RFC 5277 notifications (and :interleave): a session that sent
<create-subscription> gets an <interface-oper-change> notification whenever an interface's
oper status in the file changes.

Usage: ifserver.py --port P --host-key FILE --user U --password-file FILE --state FILE
       [--notifications]
"""

import argparse
import datetime
import json
import logging
import os
import socket
import sys
import threading
import time

from lxml import etree
from netconf import server, util

IETF_IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
OC_IF = "http://openconfig.net/yang/interfaces"
NOTIF_NS = "urn:ietf:params:xml:ns:netconf:notification:1.0"
TEST_NS = "urn:cnaas:test:interfaces"

# Listen on 127.0.0.1 only: sshutil binds the wildcard address (on Linux one IPv6 socket that
# takes IPv4 too), so its IPv6 socket gets IPv4's loopback, mapped.
_bind = socket.socket.bind


def _loopback_bind(sock, address):
    if isinstance(address, tuple) and address[0] in ("", "::", "0.0.0.0"):
        host = "::ffff:127.0.0.1" if sock.family == socket.AF_INET6 else "127.0.0.1"
        address = (host,) + tuple(address[1:])
    return _bind(sock, address)


socket.socket.bind = _loopback_bind


class Controller(server.SSHUserPassController):
    """User and password login, and a count of `netconf` subsystem requests.

    The library starts a session (and sends its hello) as soon as a channel opens, before
    the client has asked for the subsystem; a client may then drop that hello as data for a
    channel whose subsystem is not yet granted. Sessions wait for their request instead.
    """

    def __init__(self, username, password):
        super().__init__(username=username, password=password)
        self.requests = threading.Semaphore(0)

    def check_channel_subsystem_request(self, channel, name):
        if name != "netconf":
            return False
        self.requests.release()
        return True


CONTROLLER = None
_send_hello = server.NetconfServerSession.send_hello


def _send_hello_when_asked(self, caplist, session_id=None):
    if CONTROLLER is not None and session_id is not None:
        CONTROLLER.requests.acquire(timeout=5)
        # The subsystem's success reply goes out when the check above returns.
        time.sleep(0.05)
    return _send_hello(self, caplist, session_id)


server.NetconfServerSession.send_hello = _send_hello_when_asked


def read_state(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("interfaces", [])
    except (OSError, ValueError) as e:
        logging.warning("cannot read %s: %s", path, e)
        return []


COUNTERS = ["in-octets", "in-unicast-pkts", "in-discards", "in-errors", "out-octets",
            "out-unicast-pkts", "out-discards", "out-errors"]


class Methods(server.NetconfMethods):
    def __init__(self, state_path, notifications, openconfig):
        self.openconfig = openconfig
        self.state_path = state_path
        self.notifications = notifications
        self.subscribers = []
        self.lock = threading.Lock()
        self.started = datetime.datetime.now(datetime.timezone.utc).isoformat()

    def nc_append_capabilities(self, caps):
        if self.openconfig:
            util.subelm(caps, "capability").text = (
                OC_IF + "?module=openconfig-interfaces&revision=2021-04-06")
        else:
            util.subelm(caps, "capability").text = (
                IETF_IF + "?module=ietf-interfaces&revision=2018-02-20")
        if self.notifications:
            util.subelm(caps, "capability").text = (
                "urn:ietf:params:netconf:capability:notification:1.0")
            util.subelm(caps, "capability").text = (
                "urn:ietf:params:netconf:capability:interleave:1.0")

    def openconfig_data(self, data, ifs):
        """openconfig-interfaces: status in UPPER_CASE, last-change in nanoseconds."""
        top = etree.SubElement(data, "{%s}interfaces" % OC_IF, nsmap={None: OC_IF})
        started_ns = "%d" % (time.time() * 1e9)
        for i in ifs:
            it = etree.SubElement(top, "{%s}interface" % OC_IF)
            etree.SubElement(it, "{%s}name" % OC_IF).text = i["name"]
            st = etree.SubElement(it, "{%s}state" % OC_IF)
            etree.SubElement(st, "{%s}name" % OC_IF).text = i["name"]
            if i.get("description") is not None:
                etree.SubElement(st, "{%s}description" % OC_IF).text = i["description"]
            etree.SubElement(st, "{%s}admin-status" % OC_IF).text = i.get("admin", "up").upper()
            etree.SubElement(st, "{%s}oper-status" % OC_IF).text = (
                i.get("oper", "up").upper().replace("-", "_"))
            etree.SubElement(st, "{%s}last-change" % OC_IF).text = started_ns
            if "if_index" in i:
                etree.SubElement(st, "{%s}ifindex" % OC_IF).text = str(i["if_index"])
            counters = etree.SubElement(st, "{%s}counters" % OC_IF)
            for leaf in COUNTERS:
                key = leaf.replace("-", "_")
                if key in i:
                    etree.SubElement(counters, "{%s}%s" % (OC_IF, leaf)).text = str(i[key])
            # A subinterface with its own status, which is not a port.
            sub = etree.SubElement(it, "{%s}subinterfaces" % OC_IF)
            one = etree.SubElement(sub, "{%s}subinterface" % OC_IF)
            etree.SubElement(one, "{%s}index" % OC_IF).text = "0"
            sst = etree.SubElement(one, "{%s}state" % OC_IF)
            etree.SubElement(sst, "{%s}oper-status" % OC_IF).text = "UP"

    def rpc_get(self, session, rpc, filter_or_none):
        data = util.elm("nc:data")
        ifs = read_state(self.state_path)
        if self.openconfig:
            self.openconfig_data(data, ifs)
            return self.filtered(data, filter_or_none)
        config = etree.SubElement(data, "{%s}interfaces" % IETF_IF, nsmap={None: IETF_IF})
        state = etree.SubElement(data, "{%s}interfaces-state" % IETF_IF, nsmap={None: IETF_IF})
        for i in ifs:
            c = etree.SubElement(config, "{%s}interface" % IETF_IF)
            etree.SubElement(c, "{%s}name" % IETF_IF).text = i["name"]
            if i.get("description") is not None:
                etree.SubElement(c, "{%s}description" % IETF_IF).text = i["description"]
            s = etree.SubElement(state, "{%s}interface" % IETF_IF)
            etree.SubElement(s, "{%s}name" % IETF_IF).text = i["name"]
            etree.SubElement(s, "{%s}admin-status" % IETF_IF).text = i.get("admin", "up")
            etree.SubElement(s, "{%s}oper-status" % IETF_IF).text = i.get("oper", "up")
            etree.SubElement(s, "{%s}last-change" % IETF_IF).text = i.get(
                "last_change", self.started)
            if "if_index" in i:
                etree.SubElement(s, "{%s}if-index" % IETF_IF).text = str(i["if_index"])
            if "speed" in i:
                etree.SubElement(s, "{%s}speed" % IETF_IF).text = str(i["speed"])
            stats = etree.SubElement(s, "{%s}statistics" % IETF_IF)
            etree.SubElement(stats, "{%s}discontinuity-time" % IETF_IF).text = self.started
            for leaf in COUNTERS:
                key = leaf.replace("-", "_")
                if key in i:
                    etree.SubElement(stats, "{%s}%s" % (IETF_IF, leaf)).text = str(i[key])
        return self.filtered(data, filter_or_none)

    @staticmethod
    def filtered(data, filter_or_none):
        if filter_or_none is not None:
            # Subtree filtering at the top level, which is all the agent asks for: keep the
            # containers the filter names (`interfaces`, `interfaces-state`).
            wanted = {child.tag for child in filter_or_none if isinstance(child.tag, str)}
            for child in list(data):
                if child.tag not in wanted:
                    data.remove(child)
        return data

    def rpc_create_subscription(self, session, rpc, *params):
        if not self.notifications:
            raise server.ncerror.OperationNotSupportedProtoError(rpc)
        with self.lock:
            self.subscribers.append(session)
        logging.info("session %s subscribed", session.session_id)
        return etree.Element("ok")

    def notify(self, name, oper):
        msg = etree.Element("{%s}notification" % NOTIF_NS, nsmap={None: NOTIF_NS})
        etree.SubElement(msg, "{%s}eventTime" % NOTIF_NS).text = (
            datetime.datetime.now(datetime.timezone.utc).isoformat())
        ev = etree.SubElement(msg, "{%s}interface-oper-change" % TEST_NS, nsmap={None: TEST_NS})
        etree.SubElement(ev, "{%s}name" % TEST_NS).text = name
        etree.SubElement(ev, "{%s}oper-status" % TEST_NS).text = oper
        text = etree.tostring(msg).decode("utf-8")
        with self.lock:
            alive = [s for s in self.subscribers if s.session_open]
            self.subscribers = alive
        for s in alive:
            try:
                s.send_message(text)
            except Exception as e:  # a session that went away
                logging.info("notification to session %s failed: %s", s.session_id, e)

    def watch(self):
        """Sends a notification for each oper-status change in the state file."""
        last = {i["name"]: i.get("oper", "up") for i in read_state(self.state_path)}
        mtime = None
        while True:
            time.sleep(0.05)
            try:
                m = os.stat(self.state_path).st_mtime_ns
            except OSError:
                continue
            if m == mtime:
                continue
            mtime = m
            now = {i["name"]: i.get("oper", "up") for i in read_state(self.state_path)}
            for name, oper in now.items():
                if last.get(name) not in (None, oper):
                    logging.info("%s is now %s", name, oper)
                    self.notify(name, oper)
            last = now


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host-key", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password-file", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--notifications", action="store_true")
    p.add_argument("--openconfig", action="store_true",
                   help="serve openconfig-interfaces instead of ietf-interfaces")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(a.password_file, encoding="utf-8") as f:
        password = f.read().rstrip("\n")
    methods = Methods(a.state, a.notifications, a.openconfig)
    if a.notifications:
        threading.Thread(target=methods.watch, daemon=True).start()
    global CONTROLLER
    CONTROLLER = Controller(a.user, password)
    srv = server.NetconfSSHServer(server_ctl=CONTROLLER, server_methods=methods, port=a.port,
                                  host_key=a.host_key, debug=False)
    print("listening on port %d" % a.port, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    srv.close()


if __name__ == "__main__":
    main()
