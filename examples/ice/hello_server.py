"""A stock ZeroC Ice server of examples/Hello.ice, for examples/ice_typed_client.py.

Runs under an interpreter with Ice for Python (Debian's /usr/bin/python3 with
python3-zeroc-ice); its Demo package is what `slice2py Hello.ice` generates,
found in the directory given as the first argument. Prints ``READY <proxy>``
and serves until its standard input closes.
"""

import sys
import threading

sys.path.insert(0, sys.argv[1])

import Demo
import Ice


class HelloI(Demo.Hello):
    def sayHello(self, name, current):
        if not name:
            raise Demo.NoNameError("Ice wants a name too")
        return "Hello from Ice, " + name + "!"

    def greet(self, name, times, current):
        count = 1 if times is Ice.Unset else times
        return Demo.Greeting(" ".join(["Ice greets " + name] * count), Demo.Mood.cheerful, count)

    def echo(self, data, current):
        return data

    def shutdown(self, current):
        current.adapter.getCommunicator().shutdown()


def main():
    with Ice.initialize(["--Ice.Warn.Connections=0"]) as communicator:
        adapter = communicator.createObjectAdapterWithEndpoints("Hello", "tcp -h 127.0.0.1 -p 0")
        proxy = adapter.add(HelloI(), Ice.stringToIdentity("hello"))
        adapter.activate()
        print("READY " + communicator.proxyToString(proxy), flush=True)
        threading.Thread(target=lambda: (sys.stdin.read(), communicator.shutdown()),
                         daemon=True).start()
        communicator.waitForShutdown()


if __name__ == "__main__":
    main()
