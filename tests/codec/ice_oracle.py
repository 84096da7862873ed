"""The oracle of tests/test_codec.py, run by an interpreter with ZeroC Ice 3.7.

Usage: ice_oracle.py GENERATED_DIR. Prints a JSON object: for every case of
cases.py (and oracle_only), the in-parameters as Ice's client encodes them and
the reply (results or user exception) as Ice's server encodes it, both as hex
encapsulation contents, and whether the reply is a success.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, str(Path(__file__).resolve().parent))

import CodecTest
import Ice
from cases import cases, oracle_only


class Namespace:
    UNSET = Ice.Unset

    def __getattr__(self, name):
        return getattr(CodecTest, name)


RESULT = [None]
OPERATIONS = set()  # every operation name of the cases (filled in main)
CAPTURED = []


class Servant(CodecTest.Echo):
    def __getattribute__(self, name):
        if name in OPERATIONS:
            def answer(*args):
                if isinstance(RESULT[0], Exception):
                    raise RESULT[0]
                return RESULT[0]
            return answer
        return object.__getattribute__(self, name)


class Capture(Ice.Blobject):
    def ice_invoke(self, in_params, current):
        CAPTURED.append(bytes(in_params))
        return (True, bytes([6, 0, 0, 0, 1, 1]))


def main():
    with Ice.initialize(["--Ice.Default.CollocationOptimized=0", "--Ice.Warn.Dispatch=0"]) as ic:
        adapter = ic.createObjectAdapterWithEndpoints("oracle", "tcp -h 127.0.0.1")
        identity = Ice.stringToIdentity
        typed = CodecTest.EchoPrx.uncheckedCast(adapter.add(Servant(), identity("typed")))
        capture = CodecTest.EchoPrx.uncheckedCast(adapter.add(Capture(), identity("capture")))
        adapter.activate()
        out = {}
        ns = Namespace()
        ns.proxy = ic.stringToProxy
        all_cases = dict(cases(ns))
        all_cases.update(oracle_only(ns))
        OPERATIONS.update(op for (op, _, _) in all_cases.values())
        for name, (op, args, result) in all_cases.items():
            CAPTURED.clear()
            try:
                getattr(capture, op)(*args)
            except Ice.Exception:
                pass  # the capture's reply does not decode as this operation's results
            in_encaps = CAPTURED[0]
            RESULT[0] = result
            ok, reply = typed.ice_invoke(op, Ice.OperationMode.Normal, in_encaps)
            out[name] = {"in": in_encaps[6:].hex(), "out": bytes(reply)[6:].hex(), "ok": ok}
        print(json.dumps(out))


main()
