"""The Python mapping of Slice: generated classes, typed proxies and servants,
round trips over loopback (each async test on both loops), the command line's
packages, and what mypy --strict sees of a typed client."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import aiocomm
from aiocomm.slice import load, parse, runtime
from aiocomm.slice.codegen import generate

HERE = Path(__file__).resolve().parent
EVERYTHING = HERE / "slice" / "everything.ice"

# Loaded when this module's first test runs, not when it is collected: the
# codec's class registries (by type id and compact id) and its proxy hooks
# are process-wide, and other test modules register definitions of their own.
M: Any = None
E: Any = None


@pytest.fixture(autouse=True, scope="module")
def _everything() -> None:
    global M, E
    M = load(EVERYTHING)
    E = M.Everything
    _define_servants()


@pytest.fixture(autouse=True)
def _aiocomm_hooks() -> None:
    runtime.configure_codec()


# ------------------------------------------------------------ definitions


def test_modules_nested_and_reopened() -> None:
    assert E.Nested.Inner is E.Nested__Inner
    assert E.Nested.Deep.__name__ == "Deep"
    assert E.Reopened == "yes"  # from the second opening of the module
    assert E.ConstInt == 0x7FFFFFFF and E.ConstLong == -(2**63) and E.ConstOctal == 0o17
    assert E.ConstColor is E.Color.blue and E.ConstRef == E.ConstInt
    assert E.ConstString == 'tab\there "quoted" \u00e9' and E.ConstFloat == 1.5


def test_enum_is_int_enum_with_slice_values() -> None:
    assert issubclass(E.Color, enum.IntEnum)
    assert [(c.name, c.value) for c in E.Color] == [("red", 0), ("green", 5), ("blue", 6)]


def test_struct_is_dataclass_with_slice_order_and_defaults() -> None:
    fields = E.Fields()
    assert dataclasses.is_dataclass(fields)
    assert [f.name for f in dataclasses.fields(fields)] == [
        "b", "by", "s", "i", "l", "f", "d", "str", "c", "p", "id"]
    assert (fields.b, fields.by, fields.s, fields.i, fields.str, fields.c) == (
        True, 7, -3, 0x7FFFFFFF, "default", E.Color.green)
    assert fields.p == E.Point(0, 0) and fields.p is not E.Fields().p  # a fresh default
    assert fields.id == M.Ice.Identity("", "")
    assert E.Nested.Inner().c is E.Color.blue
    # Struct keys, as Slice allows (PointKeyDict): equal values hash alike.
    assert {E.Point(1, 2): "a"}[E.Point(1, 2)] == "a"


def test_class_and_exception_keyword_construction() -> None:
    node = E.Node(name="n", next=None, color=E.Color.blue)
    assert (node.name, node.count, node.color, node.label) == ("n", None, E.Color.blue, None)
    assert isinstance(node, E.Base)
    assert E.Base().name == "base"
    problem = E.DetailedProblem(reason="why", code=3)
    assert isinstance(problem, aiocomm.UserError) and isinstance(problem, E.Problem)
    assert (problem.reason, problem.code, problem.detail) == ("why", 3, None)
    assert E.DetailedProblem().code == 1
    assert vars(E.DetailedProblem("r", 2)) == vars(E.DetailedProblem(reason="r", code=2))
    assert "why" in str(problem)


def test_interface_classes() -> None:
    assert E.Greeter.type_ids[0] == "::Everything::Greeter"
    assert set(E.Greeter.type_ids) == {"::Everything::Greeter", "::Everything::Pinger",
                                       "::Everything::Counter", "::Ice::Object"}
    assert issubclass(E.Nested.Deep, E.Greeter) and issubclass(E.Nested.DeepPrx, E.GreeterPrx)
    assert {"ping", "count", "sayHello", "dive"} <= set(E.Nested.Deep._ice_operations)


def test_python_keywords_and_foreign_metadata(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "kw.ice"
    source.write_text('module K { ["cpp:type:wstring"] struct S { int from; string pass = "p"; };'
                      " };\n")
    with caplog.at_level("WARNING", logger="aiocomm.slice"):
        loaded: Any = load(source)
    assert any("cpp:type:wstring" in r.getMessage() and "kw.ice:1" in r.getMessage()
               for r in caplog.records)
    s = loaded.K.S(_from=3)
    assert (s._from, s._pass) == (3, "p")
    assert loaded.K._t_S.decode(loaded.K._t_S.encode(s)) == s


async def test_operation_named_like_a_python_keyword(peer: Peer, tmp_path: Path) -> None:
    source = tmp_path / "kwop.ice"
    source.write_text("module KwOp { interface Kw { int from(int lambda); void oneway(); }; };\n")
    kw: Any = load(source)

    class Kw(kw.KwOp.Kw):  # type: ignore[misc]
        def _from(self, _lambda: int, current: aiocomm.Current) -> int:
            return _lambda + 1

        def _oneway(self, current: aiocomm.Current) -> None:
            pass

    peer.adapter.add(Kw(), "kw")
    prx = kw.KwOp.KwPrx(peer.proxy("kw"))
    assert await prx._from(1) == 2
    assert await prx._oneway() is None and prx.oneway().proxy.is_oneway


def test_shipped_ice_module_is_what_the_generator_writes() -> None:
    unit = parse("#include <Ice/Identity.ice>\n#include <Ice/BuiltinSequences.ice>\n"
                 "#include <Ice/Context.ice>\n")
    [ice] = generate(unit, only=lambda name: name == "Ice")
    import aiocomm.slice.ice  # the installed package's file (a wheel's, in CI's wheel stage)

    shipped = Path(aiocomm.slice.ice.__file__).read_text(encoding="utf-8")
    assert shipped == ice.source


# ---------------------------------------------------------------- servants


def _define_servants() -> None:
    """The servant classes, over the generated bases of the current load."""
    global Greeter, Deep, Graphs

    class Greeter(E.Greeter):  # type: ignore[misc]
        def __init__(self) -> None:
            self.calls: list[tuple[str, aiocomm.Current]] = []
            self.proxy_results: list[str] = []

        def ping(self, current: aiocomm.Current) -> None:
            self.calls.append(("ping", current))

        async def count(self, current: aiocomm.Current) -> int:
            await asyncio.sleep(0)
            return len(self.calls)

        def sayHello(self, name: str, current: aiocomm.Current) -> str:
            self.calls.append(("sayHello", current))
            return f"Hello, {name}!"

        def allTypes(self, *args: Any) -> tuple[Any, ...]:
            return tuple(args[:-1])

        def echoFields(self, f: Any, current: aiocomm.Current) -> Any:
            return f

        def opt(self, a: int | None, b: str | None, current: aiocomm.Current) -> Any:
            return (None if a is None else a + 1, None if b is None else E.Point(len(b), 0))

        async def twoOuts(self, a: int, current: aiocomm.Current) -> Any:
            return E.Point(a, -a), str(a), E.Color.blue

        def echoClass(self, b: Any, current: aiocomm.Current) -> Any:
            if b is not None and b.name == "raise":
                raise E.Problem(reason="asked")
            if b is not None and b.name == "unrelated":
                raise E.Unrelated()
            return b

        async def fail(self, code: int, current: aiocomm.Current) -> None:
            if code == 1:
                raise E.DetailedProblem(reason="one", code=1, detail="d")
            if code == 2:
                raise E.Unrelated()  # not declared by fail
            if code == 3:
                raise ValueError("not a user exception")

        def self(self, current: aiocomm.Current) -> Any:
            assert current.adapter is not None
            return E.GreeterPrx(current.adapter.create_proxy(current.identity))

        async def any(self, target: aiocomm.Proxy | None, current: aiocomm.Current) -> Any:
            if target is not None:
                # A received proxy is bound to this communicator: invoke it at once.
                self.proxy_results.append(await E.GreeterPrx(target).sayHello("callee"))
            return target

        def withContext(self, ctx: dict[str, str], current: aiocomm.Current) -> None:
            self.calls.append(("withContext", current))

        def seqs(self, data: bytes, ints: list[int], colors: list[Any],
                 current: aiocomm.Current) -> Any:
            points = [E.Point(i, int(c)) for i, c in zip(ints, colors, strict=True)]
            return points, [data, data[::-1]]

        def dicts(self, a: dict[int, Any], b: dict[Any, str], current: aiocomm.Current) -> Any:
            return {f"{k}:{v}": point for point, v in b.items() for k in a}


    class Deep(Greeter, E.Nested.Deep):  # type: ignore[misc]
        def dive(self, i: Any, current: aiocomm.Current) -> Any:
            return E.Nested.Inner(E.Point(i.p.y, i.p.x), E.Color.red)

    class Graphs(E.Graphs):  # type: ignore[misc]
        def graph(self, root: Any, current: aiocomm.Current) -> Any:
            return root

        async def slicedGraph(self, root: Any, current: aiocomm.Current) -> Any:
            return root


class Peer:
    def __init__(self, server: aiocomm.Communicator, client: aiocomm.Communicator,
                 adapter: aiocomm.ObjectAdapter) -> None:
        self.server, self.client, self.adapter = server, client, adapter

    def proxy(self, identity: str) -> aiocomm.Proxy:
        return self.client.proxy(f"{identity}:{self.adapter.endpoints[0]}")


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    server, client = aiocomm.Communicator(), aiocomm.Communicator()
    try:
        adapter = server.create_object_adapter()
        adapter.activate()
        yield Peer(server, client, adapter)
    finally:
        await client.destroy()
        await server.destroy()


@pytest.fixture
async def greeter(peer: Peer) -> tuple[Greeter, Any]:
    servant = Greeter()
    peer.adapter.add(servant, "greeter")
    return servant, E.GreeterPrx(peer.proxy("greeter"))


# ------------------------------------------------------------ round trips


async def test_return_value_and_async_servant(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    assert await prx.sayHello("you") == "Hello, you!"
    assert await prx.count() == 1  # an async def servant method


async def test_every_builtin_type_round_trips(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    values = (True, 255, -32768, -(2**31), 2**63 - 1, 0.5, -1e300, "\u00e9t\u00e9")
    assert await prx.allTypes(*values) == values


async def test_struct_enum_nested_identity(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    fields = E.Fields(b=False, c=E.Color.blue, p=E.Point(3, 4), id=M.Ice.Identity("n", "c"))
    echoed = await prx.echoFields(fields)
    assert echoed == fields and echoed is not fields
    assert type(echoed.c) is E.Color


async def test_optionals_both_presences(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    assert await prx.opt(None, None) == (None, None)
    assert await prx.opt(41, "abc") == (42, E.Point(3, 0))


async def test_outs_come_after_the_return_value(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    assert await prx.twoOuts(7) == (E.Point(7, -7), "7", E.Color.blue)


async def test_sequences_and_dictionaries(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    points, nested = await prx.seqs(bytearray(b"\x01\x02"), (5, 6), [E.Color.red, E.Color.blue])
    assert points == [E.Point(5, 0), E.Point(6, 6)]
    assert nested == [b"\x01\x02", b"\x02\x01"] and type(nested[0]) is bytes
    assert await prx.dicts({1: E.Color.red}, {E.Point(1, 1): "p"}) == {"1:p": E.Point(1, 1)}


async def test_class_round_trip(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    node = E.Node(name="n", count=3, label="l", color=E.Color.green)
    echoed = await prx.echoClass(node)
    assert isinstance(echoed, E.Node) and echoed is not node
    assert (echoed.name, echoed.count, echoed.label, echoed.color) == ("n", 3, "l", E.Color.green)
    assert await prx.echoClass(None) is None


async def test_declared_exception_arrives_with_its_fields(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    with pytest.raises(E.DetailedProblem) as caught:
        await prx.fail(1)
    assert (caught.value.reason, caught.value.code, caught.value.detail) == ("one", 1, "d")
    with pytest.raises(E.Problem) as base:
        await prx.echoClass(E.Base(name="raise"))
    assert base.value.reason == "asked"


async def test_undeclared_exception_is_unknown_user_error(
        greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    with pytest.raises(aiocomm.UnknownUserError):
        await prx.fail(2)
    with pytest.raises(E.Unrelated):
        await prx.echoClass(E.Base(name="unrelated"))  # echoClass declares Unrelated
    with pytest.raises(aiocomm.UnknownError) as other:
        await prx.fail(3)
    assert not isinstance(other.value, aiocomm.UnknownUserError)
    assert await prx.sayHello("still") == "Hello, still!"


async def test_undeclared_exception_checked_at_the_caller_too(peer: Peer) -> None:
    # An untyped servant that answers with the encoding of an exception that
    # `fail` does not declare, as an Ice 3.7 server would send it.
    class Raw:
        def ice_invoke(self, params: bytes, current: aiocomm.Current) -> bytes:
            op = E.Greeter._ice_operations["echoClass"]
            raise aiocomm.UserError(op.encode_exception(E.Unrelated()))

    peer.adapter.add(Raw(), "raw")
    prx = E.GreeterPrx(peer.proxy("raw"))
    with pytest.raises(aiocomm.UnknownUserError):
        await prx.fail(0)
    with pytest.raises(E.Unrelated):
        await prx.echoClass(None)


async def test_integer_out_of_range_is_refused_before_sending(
        greeter: tuple[Greeter, Any]) -> None:
    servant, prx = greeter
    with pytest.raises(ValueError):
        await prx.allTypes(True, 256, 0, 0, 0, 0.0, 0.0, "")
    with pytest.raises(ValueError):
        await prx.allTypes(True, 0, 2**15, 0, 0, 0.0, 0.0, "")
    assert servant.calls == []


async def test_idempotent_operation_is_sent_idempotent(greeter: tuple[Greeter, Any]) -> None:
    servant, prx = greeter
    await prx.ping()
    await prx.sayHello("x")
    modes = {name: current.mode for name, current in servant.calls}
    assert modes == {"ping": aiocomm.OperationMode.IDEMPOTENT,
                     "sayHello": aiocomm.OperationMode.NORMAL}


async def test_checked_cast_and_wrapping(peer: Peer) -> None:
    peer.adapter.add(Greeter(), "greeter")

    class Pinger(E.Pinger):  # type: ignore[misc]
        def ping(self, current: aiocomm.Current) -> None:
            pass

    peer.adapter.add(Pinger(), "pinger")
    untyped = peer.proxy("greeter")
    typed = await E.GreeterPrx.checked_cast(untyped)
    assert type(typed) is E.GreeterPrx and typed.proxy == untyped
    assert type(await E.PingerPrx.checked_cast(typed)) is E.PingerPrx  # from a typed proxy
    assert await E.GreeterPrx.checked_cast(peer.proxy("pinger")) is None
    assert await E.Nested.DeepPrx.checked_cast(untyped) is None
    assert E.PingerPrx(typed).proxy is untyped  # unchecked wrap of a typed proxy
    assert await untyped.ice_id() == "::Everything::Greeter"


async def test_oneway_timeout_and_context_keep_the_type(
        greeter: tuple[Greeter, Any]) -> None:
    servant, prx = greeter
    for copy in (prx.oneway(), prx.with_timeout(5.0), prx.with_context({"k": "v"})):
        assert type(copy) is E.GreeterPrx
    assert prx.with_timeout(5.0).proxy.timeout == 5.0
    await prx.with_context({"k": "v"}).withContext({"a": "b"})
    await prx.withContext({}, context={"per": "call"})
    assert [c.context for n, c in servant.calls] == [{"k": "v"}, {"per": "call"}]
    assert await prx.oneway().ping() is None
    for _ in range(100):
        if len(servant.calls) == 3:
            break
        await asyncio.sleep(0.01)
    assert servant.calls[-1][0] == "ping" and servant.calls[-1][1].request_id == 0


async def test_proxy_results_are_typed_and_usable(greeter: tuple[Greeter, Any]) -> None:
    _, prx = greeter
    me = await prx.self()
    assert type(me) is E.GreeterPrx
    assert me.proxy.communicator is prx.proxy.communicator  # bound to the receiver
    assert await me.sayHello("again") == "Hello, again!"


async def test_proxy_param_is_invoked_by_the_receiver(peer: Peer) -> None:
    servant = Greeter()
    peer.adapter.add(servant, "greeter")
    # The callee lives in the client's communicator: the server calls back.
    callee = Greeter()
    client_adapter = peer.client.create_object_adapter()
    client_adapter.activate()
    client_adapter.add(callee, "callee")
    target = client_adapter.create_proxy("callee")
    prx = E.GreeterPrx(peer.proxy("greeter"))
    back = await prx.any(target)
    assert servant.proxy_results == ["Hello, callee!"]
    assert isinstance(back, aiocomm.Proxy) and back.identity == target.identity
    assert back.communicator is peer.client  # bound to the receiver of the reply
    assert (await prx.any(E.GreeterPrx(target))) == target  # a typed proxy as Object*
    assert servant.proxy_results == ["Hello, callee!"] * 2
    assert await prx.any(None) is None


async def test_derived_interface_and_nested_module(peer: Peer) -> None:
    peer.adapter.add(Deep(), "deep")
    prx = await E.Nested.DeepPrx.checked_cast(peer.proxy("deep"))
    assert prx is not None
    inner = await prx.dive(E.Nested.Inner(E.Point(1, 2)))
    assert inner == E.Nested.Inner(E.Point(2, 1), E.Color.red)
    assert await prx.sayHello("deep") == "Hello, deep!"  # an inherited operation
    assert set(await prx.proxy.ice_ids()) >= {"::Everything::Nested::Deep",
                                              "::Everything::Greeter"}


@pytest.mark.parametrize("operation", ["graph", "slicedGraph"])
async def test_class_graph_with_cycle_and_shared_instance(peer: Peer, operation: str) -> None:
    peer.adapter.add(Graphs(), "graphs")
    prx = E.GraphsPrx(peer.proxy("graphs"))
    shared = E.Base(name="shared")
    first = E.Node(name="first", other=shared, any=shared)
    second = E.Node(name="second", next=first, other=shared, where=E.Point(1, 2))
    first.next = second  # a cycle
    root = await getattr(prx, operation)(first)
    assert root is not first and root.name == "first"
    assert root.next.name == "second" and root.next.next is root
    assert root.other is root.any is root.next.other  # one shared instance
    assert type(root.other) is E.Base and root.next.where == E.Point(1, 2)


async def test_servant_of_two_unrelated_interfaces(peer: Peer) -> None:
    class Both(E.Pinger, E.Counter):  # type: ignore[misc]
        def ping(self, current: aiocomm.Current) -> None:
            pass

        def count(self, current: aiocomm.Current) -> int:
            return 2

    assert Both.type_ids[0] == "::Everything::Pinger" and Both.type_ids[-1] == "::Ice::Object"
    peer.adapter.add(Both(), "both")
    assert await E.CounterPrx(peer.proxy("both")).count() == 2
    assert await E.PingerPrx.checked_cast(peer.proxy("both")) is not None
    assert await E.CounterPrx.checked_cast(peer.proxy("both")) is not None
    await E.PingerPrx(peer.proxy("both")).ping()


async def test_typed_timeout_applies(peer: Peer) -> None:
    release = asyncio.Event()

    class Slow(E.Counter):  # type: ignore[misc]
        async def count(self, current: aiocomm.Current) -> int:
            await release.wait()
            return 1

    peer.adapter.add(Slow(), "slow")
    prx = E.CounterPrx(peer.proxy("slow"))
    with pytest.raises(aiocomm.InvocationTimeoutError):
        await prx.with_timeout(0.05).count()
    release.set()
    assert await prx.count() == 1


async def test_unimplemented_operation_does_not_exist(peer: Peer) -> None:
    class Bare(E.Counter):  # type: ignore[misc]
        pass

    peer.adapter.add(Bare(), "bare")
    with pytest.raises(aiocomm.OperationNotExistError):
        await E.CounterPrx(peer.proxy("bare")).count()


async def test_malformed_params_fail_that_call_only(greeter: tuple[Greeter, Any],
                                                    peer: Peer) -> None:
    _, prx = greeter
    with pytest.raises(aiocomm.UnknownLocalError):
        await peer.proxy("greeter").invoke("sayHello", b"\xff\x00")  # a truncated string
    assert await prx.sayHello("ok") == "Hello, ok!"


_EXTRA_SERVER = """\
import asyncio, sys
import aiocomm
from aiocomm.slice import load

X = load(sys.argv[1], include_dirs=[sys.argv[2]])
E, Extra = X.Everything, X.Extra


class Greeter(E.Greeter):
    def echoClass(self, b, current):
        if b is not None and b.name == "mystery":
            raise Extra.Mystery(reason="sliced", n=5)
        return Extra.Secret(name="secret", count=2, hidden="h", other=b)


async def main():
    async with aiocomm.Communicator() as server:
        adapter = server.create_object_adapter()
        adapter.activate()
        adapter.add(Greeter(), "greeter")
        print(adapter.create_proxy("greeter"), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


async def test_unknown_derived_class_and_exception_are_sliced(
        comm: aiocomm.Communicator, tmp_path: Path) -> None:
    # The server knows Extra (derived from what the client knows); registries
    # are per process, so it runs in its own.
    extra = tmp_path / "extra.ice"
    extra.write_text(textwrap.dedent("""\
        #include <everything.ice>
        module Extra {
            class Secret extends Everything::Base { string hidden; Everything::Base other; };
            exception Mystery extends Everything::Problem { int n; };
        };
    """))
    script = tmp_path / "server.py"
    script.write_text(_EXTRA_SERVER)
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(extra), str(EVERYTHING.parent),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        prx = E.GreeterPrx(comm.proxy(line.decode().strip()))
        mine = E.Base(name="mine")
        got = await prx.echoClass(mine)  # a sliced-format operation
        assert type(got) is E.Base and (got.name, got.count) == ("secret", 2)
        with pytest.raises(E.Problem) as caught:
            await prx.echoClass(E.Base(name="mystery"))
        assert type(caught.value) is E.Problem and caught.value.reason == "sliced"
    finally:
        if server.stdin is not None:
            server.stdin.close()
        await asyncio.wait_for(server.wait(), 30)


# ------------------------------------------------------------ command line


def _env(*paths: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")])
    return env


def _run(args: list[str], env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=240, check=False,
                          env=env, cwd=cwd)


def test_cli_writes_importable_packages_that_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    include = tmp_path / "inc"
    include.mkdir()
    (include / "shared.ice").write_text("module Shared { struct Pair { int a; int b; }; };\n")
    main = tmp_path / "app.ice"
    main.write_text(textwrap.dedent("""\
        #include <shared.ice>
        #include <Ice/Identity.ice>
        module App {
            module Inner { enum Mood { happy = 3, sad }; sequence<Mood> Moods; const int K = 2; };
            interface Echo
            {
                Shared::Pair swap(Shared::Pair p, Inner::Mood m, out Ice::Identity id);
            };
        };
    """))
    done = _run([sys.executable, "-m", "aiocomm.slice", str(main), "-o", str(out),
                 "-I", str(include)])
    assert done.returncode == 0, done.stderr
    assert (out / "App" / "__init__.py").is_file() and (out / "Shared" / "__init__.py").is_file()
    assert (out / "App" / "Inner" / "__init__.py").is_file()
    script = textwrap.dedent("""\
        import asyncio
        import aiocomm, App, Shared

        class Echo(App.Echo):
            def swap(self, p, m, current):
                return (Shared.Pair(p.b, p.a + int(m) + App.Inner.K),
                        aiocomm.slice.ice.Identity("n", "c"))

        async def main():
            async with aiocomm.Communicator() as server, aiocomm.Communicator() as client:
                adapter = server.create_object_adapter()
                adapter.activate()
                adapter.add(Echo(), "echo")
                prx = App.EchoPrx(client.proxy(f"echo:{adapter.endpoints[0]}"))
                print(await prx.swap(Shared.Pair(1, 2), App.Inner.Mood.sad))

        asyncio.run(main())
    """)
    ran = _run([sys.executable, "-c", script], env=_env(out))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "(Pair(a=2, b=7), Identity(name='n', category='c'))"


def test_cli_takes_several_files_that_include_each_other(tmp_path: Path) -> None:
    (tmp_path / "a.ice").write_text("module A { struct P { int x = 1; }; };\n")
    (tmp_path / "b.ice").write_text('#include "a.ice"\nmodule B { struct Q { A::P p; }; };\n')
    out = tmp_path / "out"
    done = _run([sys.executable, "-m", "aiocomm.slice", str(tmp_path / "a.ice"),
                 str(tmp_path / "b.ice"), "-o", str(out)])
    assert done.returncode == 0, done.stderr
    ran = _run([sys.executable, "-c", "import A, B; print(B.Q(A.P(3)), B.Q())"], env=_env(out))
    assert ran.stdout.strip() == "Q(p=P(x=3)) Q(p=P(x=1))", ran.stderr


def test_cli_reports_errors_with_a_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ice"
    bad.write_text("module M {\n  struct S { nosuchtype x; };\n};\n")
    done = _run([sys.executable, "-m", "aiocomm.slice", str(bad), "-o", str(tmp_path / "o")])
    assert done.returncode == 1
    assert f"{bad}:2:" in done.stderr


def test_typed_client_is_mypy_strict_clean_and_reveals_types(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = _run([sys.executable, "-m", "aiocomm.slice", str(EVERYTHING), "-o", str(out)])
    assert done.returncode == 0, done.stderr
    client = out / "client.py"
    client.write_text(textwrap.dedent("""\
        import aiocomm
        import Everything
        from Everything import Nested


        class Servant(Everything.Greeter):
            async def sayHello(self, name: str, current: aiocomm.Current) -> str:
                return name


        async def main(proxy: aiocomm.Proxy) -> None:
            prx = Everything.GreeterPrx(proxy)
            reveal_type(await prx.sayHello("x"))
            reveal_type(await prx.twoOuts(1))
            reveal_type(await prx.ping())
            reveal_type(await prx.opt(None, "b"))
            reveal_type(await prx.self())
            reveal_type(await prx.any(prx))
            reveal_type(await prx.seqs(b"", [1], []))
            reveal_type(await Everything.GreeterPrx.checked_cast(proxy))
            reveal_type(prx.oneway())
            reveal_type(prx.with_timeout(1.0).with_context({}))
            reveal_type(await Nested.DeepPrx(prx).dive(Nested.Inner()))
            reveal_type(Everything.ConstColor)
            try:
                await prx.fail(1)
            except Everything.DetailedProblem as e:
                reveal_type(e.code)
    """))
    checked = _run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                    "client.py", "Everything"], cwd=out)
    revealed = [line.split("Revealed type is ", 1)[1].strip('"')
                for line in checked.stdout.splitlines() if "Revealed type is" in line]
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert errors == [], checked.stdout
    assert revealed == [
        "str",
        "tuple[Everything.Point, str, Everything.Color]",
        "None",
        "tuple[int | None, Everything.Point | None]",
        "Everything.GreeterPrx | None",
        "aiocomm.proxy.Proxy | None",
        "tuple[list[Everything.Point], list[bytes]]",
        "Everything.GreeterPrx | None",
        "Everything.GreeterPrx",
        "Everything.GreeterPrx",
        "Everything.Nested__Inner",
        "Everything.Color",
        "int",
    ], checked.stdout
