"""Python 2.7 wrapper around Autobahn's ``wstest`` used by conformance/run.py.

Run with .venv-autobahn/bin/python.

* ``wstest_local.py --list-cases SPEC``: print the case ids that SPEC's
  "cases" / "exclude-cases" resolve to, as a JSON list (so run.py can tell
  when a case is missing from a report).
* ``wstest_local.py WSTEST-ARGS...``: run wstest, except that its listening
  sockets (fuzzingserver mode) bind to 127.0.0.1 only; stock wstest binds
  every interface.
"""

import importlib
import json
import sys


def list_cases(spec_path):
    from autobahntestsuite.case import CaseBasename, CaseCategories, Cases, CaseSubCategories
    from autobahntestsuite.caseset import CaseSet

    with open(spec_path) as f:
        spec = json.load(f)
    cs = CaseSet("fuzzing", CaseBasename, Cases, CaseCategories, CaseSubCategories)
    print(json.dumps(cs.parseSpecCases(spec)))


def run_wstest(argv):
    # Let wstest pick its reactor (epoll) before anything imports the default.
    importlib.import_module("autobahntestsuite.choosereactor")
    from autobahn.twisted import websocket as ab_ws
    from autobahntestsuite import fuzzing

    orig_listen = ab_ws.listenWS

    def listen_loopback(factory, contextFactory=None, backlog=50, interface=""):
        return orig_listen(factory, contextFactory, backlog, "127.0.0.1")

    ab_ws.listenWS = listen_loopback
    fuzzing.listenWS = listen_loopback

    from twisted.internet import reactor

    orig_tcp = reactor.listenTCP

    def listen_tcp_loopback(port, factory, backlog=50, interface=""):
        return orig_tcp(port, factory, backlog, "127.0.0.1")

    reactor.listenTCP = listen_tcp_loopback

    from autobahntestsuite import wstest

    sys.argv = ["wstest"] + argv
    wstest.run()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--list-cases":
        list_cases(sys.argv[2])
    else:
        run_wstest(sys.argv[1:])
