"""What a deploy checks before anything changes on the fleet: the source, loaded apart from it.

`RelayClient.deploy` (and so `relay deploy` and the gateway's `/v1/deploy`)
calls `check` before it registers, starts or upgrades any server. The source
must parse, resolve and declare a server; then it is loaded the way a host
loads it (`relay_workers.host.Actor.load`: `Interpreter.run` under
`run_budgeted`), in a scratch interpreter of the deploying process: every
`@llvm` function and handler is compiled (a compile error is raised at
definition time), the top-level statements run, and each server's initial
state is built. A source that fails is refused with its positioned Relay error
and nothing of it is deployed.

The scratch load never reaches the fleet's servers: servers are declared into
scratch instances, and a call or send from a top-level statement is refused
(top-level statements run again each time a worker loads one of the source's
servers, so their messages would be sent again at every load). It runs within
the budgets of a server's load on a host: the message time limit (the
server's own `time_limit`, at most `RELAY_JOB_TIME_LIMIT`), the memory budget
of a run (`$RELAY_MEMORY_LIMIT`, 1 GiB by default), the recursion limit and
the output limit, so a hostile source cannot hang or exhaust its deployer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from relay_lang.errors import RelayError
from relay_lang.names import family_name
from relay_lang.nodes import ServerDecl
from relay_lang.parser import parse
from relay_lang.resolver import resolve

if TYPE_CHECKING:
    import redis


def declared_servers(source: str, file: str) -> list[str]:
    """The servers a deploy source declares, in order (a family as `account[]`); a source that does not parse
    or resolve, or declares no server, is a Relay error."""
    program = parse(source, file)
    resolve(program)
    names = [s.name if s.key is None else family_name(s.name) for s in program.stmts if isinstance(s, ServerDecl)]
    if not names:
        raise RelayError("the source declares no server (deploy takes `server NAME { ... }` declarations)",
                         program.pos)
    return names


def check(source: str, file: str, deployed: Iterable[str], time_limit: float, output_limit: int,
          store: redis.Redis | None = None) -> list[str]:
    """The servers a deploy source declares, once it loaded in a scratch interpreter as a host loads it
    (see the module docstring); raises its positioned RelayError otherwise. `deployed`: the servers already
    on the fleet (names in the source, as on a host); `store`: the store's Redis client, whose compile cache
    the fleet shares (what the check compiled, a host loads without compiling again)."""
    names = declared_servers(source, file)
    # The interpreter and LLVM load only now: importing the client must not (see relay_workers.client).
    from relay_lang.actors import LocalRuntime
    from relay_lang.compiler.cache import CompileCache
    from relay_lang.interpreter import Interpreter, run_budgeted
    from relay_lang.values import ServerRef

    from .cache import RedisObjectStore
    from .ledger import deployment_of
    from .output import CappedOutput

    class ScratchRuntime(LocalRuntime):
        """Servers declared into scratch instances (their initial state copied as a host copies it);
        messages refused."""

        def call(self, server: ServerRef, handler: str, args: list) -> object:
            raise refused(server, handler)

        def send(self, server: ServerRef, handler: str, args: list) -> None:
            raise refused(server, handler)

    out = CappedOutput(output_limit)
    cache = CompileCache(RedisObjectStore(store)) if store is not None else None
    interp = Interpreter(out=out, err=out, cache=cache, repl=True)
    interp.runtime = ScratchRuntime(interp)
    for name in {*deployed, *names}:  # a family as `account[]`, its global `account`
        interp.define_global(deployment_of(name), ServerRef(name))
    run_budgeted(interp, lambda: interp.run(source, file), time_limit)
    return names


def refused(server: object, handler: str) -> RelayError:
    name = getattr(server, "name", server)
    return RelayError(f"{name}.{handler}: the top-level statements of a deployed source cannot call or send to "
                      "servers (they run again each time a worker loads one of its servers); do it in a handler")
