"""The servers one worker hosts, in its main process, whatever its pool.

A worker started with `-Q relay.*` runs one `Host` beside Celery's consumer
and pool. Its parts, each on its own thread, so none can block another:

- the heartbeat (`Host.beat`, its steps in order): registers this host's
  liveness, renews the leases of its servers (a lease whose fence moved on
  is lost: the server is dropped), runs the supervisor at once when it
  notices a dead host or a server without a live owner
  (relay_workers.supervisor), starts or stops an `Actor` per server placed
  here, lets idle ones go, and publishes its figures; the supervisor wakes
  it when it gives it a server;
- the inbox (relay_workers.inbox): consumes the fleet's shard queues,
  journals each message and hands it to `Host.deliver`: its actor here is
  woken, or its owner's bell rung, or the inactive server activated;
- the bell (`Host._bell_loop`): starts the servers this host was just given;
- one actor per active server, its turns run by a bounded pool of threads
  (relay_workers.runners, RELAY_ACTOR_THREADS): takes its server's journal in
  batches (one round trip before the handlers), applies each batch's messages
  in order, one at a time, and commits the batch with one fenced write
  (relay_workers.ledger).

Server messages never run in Celery's pool (prefork children share a node
name and have no queue affinity; threads share one process): the pool runs
eval jobs. See docs/fleet.md for the design and its guarantees.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass

from celery import Celery

from relay_lang.actors import Family, ServerInstance, cycle_error
from relay_lang.compiler.cache import CompileCache
from relay_lang.errors import RelayError
from relay_lang.interpreter import Interpreter, run_budgeted
from relay_lang.names import family_name
from relay_lang.values import Function, ServerRef

from .cache import RedisObjectStore
from .events import MessageEvents
from .inbox import Inbox
from .ledger import (
    SHARD_QUEUES,
    STORE_ERRORS,
    Batch,
    DeadLetters,
    Ledger,
    Outgoing,
    Pending,
    deployment_of,
    shard_queue,
)
from .output import CappedOutput
from .registry import CONFIRM, CONNECTION_PREFIX, Registry
from .results import CeleryResults
from .runners import TURN_SECONDS, Runners, Slot
from .runtime import FleetRuntime, Handling, Messenger
from .stats import FleetStats, record_memory
from .store import close_idle, connect
from .strays import Strays
from .supervisor import Policy, Supervisor
from .transport import restore_unacked
from .wire import from_wire, to_wire

log = logging.getLogger("relay.workers")

BATCH = 100  # messages an owner takes from its journal at once (bounded prefetch), committed together
BATCH_SECONDS = 0.05  # handling time after which a batch commits what it applied (the rest waits)
WARM_UP = "@llvm\nfn relay_warm_up(x) { x + 1 }\nrelay_warm_up(1)"


def resident_bytes() -> int:
    """This process's resident memory (Linux)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@dataclass
class Applied:
    """A message handled in memory, waiting for its batch's commit: its reply and its held sends."""

    message: Pending
    reply: dict
    outgoing: list[Outgoing]
    started: float


class NotOwner(Exception):
    """Another host holds the server's lease, or its fence moved on: this host must not write it."""


class Host:
    def __init__(self, app: Celery, node: str) -> None:
        conf = app.conf
        self.app = app
        self.node = node
        self.id = f"{node}#{os.getpid()}.{uuid.uuid4().hex[:6]}"
        # Every connection of the host carries its name: one reset connection leaves the others in the store's
        # client list, and a host is suspected dead only when all of them are gone (relay_workers.registry).
        self.store = connect(conf.relay_store_url, name=CONNECTION_PREFIX + self.id)
        self.registry = Registry(connect(conf.relay_store_url, name=CONNECTION_PREFIX + self.id), conf.relay_host_ttl,
                                 conf.relay_max_restarts, conf.relay_restart_period)
        self.ledger = Ledger(self.store, conf.relay_lease_ttl)
        self.dead = DeadLetters(self.store)
        self.messenger = Messenger(app, self.ledger)
        self.events = MessageEvents(app, node, bool(conf.worker_send_task_events))
        self.stats = FleetStats(self.store)
        self.cache = CompileCache(RedisObjectStore(self.store))
        self.results = CeleryResults(app, self.store)
        self.strays = Strays(self.store, conf.broker_url, 2 * conf.relay_heartbeat)
        self.time_limit: float = conf.relay_job_time_limit
        self.heartbeat: float = conf.relay_heartbeat
        self.max_attempts: int = conf.relay_max_attempts
        self.output_limit: int = conf.relay_output_limit
        self.max_memory = conf.relay_host_max_memory_mib * 1024 * 1024
        self.idle_timeout: float = conf.relay_idle_timeout
        self.supervisor = Supervisor(self.store, self.registry, Policy(conf.relay_max_restarts, conf.relay_restart_period))
        self.actors: dict[str, Actor] = {}
        self.runners = Runners(conf.relay_actor_threads)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.inbox = Inbox(self)
        self.beat_thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.registry.register_host(self.id, self.node, os.getpid())
        self.inbox.start()
        self.beat()
        self.beat_thread = threading.Thread(target=self._beat_loop, name="relay-heartbeat", daemon=True)
        self.beat_thread.start()
        threading.Thread(target=self._bell_loop, name="relay-bell", daemon=True).start()
        log.info("relay: %s hosts Relay servers as %s", self.node, self.id)

    def warm_up(self) -> None:
        """Runs one tiny compiled program at worker start, so that the first job does not pay for first-time
        imports and code paths (its object code comes from the shared store)."""
        interp = Interpreter(out=io.StringIO(), err=io.StringIO(), cache=self.cache)
        try:
            run_budgeted(interp, lambda: interp.run(WARM_UP, "<warm-up>"), 30)
        except RelayError as err:  # pragma: no cover - a broken compiler shows in every test
            log.warning("relay: warm-up failed: %s", err)

    def stop(self) -> None:
        """A clean hand-off: no new messages, the running ones finish, leases released, servers left unowned."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.inbox.stop()
        with self.lock:
            actors = list(self.actors.values())
            self.actors.clear()
        for actor in actors:
            actor.stop(wait=self.time_limit)
        try:
            for actor in actors:
                self.registry.hand_off(actor.name, self.id, actor.lease)
            self.registry.remove_host(self.id)
        except STORE_ERRORS as exc:
            log.warning("relay: clean hand-off failed (%s); the servers move when this host's lease lapses", exc)
        self.runners.close()

    def _beat_loop(self) -> None:
        """Beats every `heartbeat` seconds, or when woken. A store command that fails (a reset connection, a
        store restarting) makes it beat again at once, reconnecting, then every 0.02, 0.04 ... s up to the
        heartbeat while it keeps failing: a live host's connections are back before anyone may take it for
        dead (relay_workers.registry.CONFIRM)."""
        pause = 0.0  # > 0: the last beat failed
        wait = self.heartbeat
        while not self.stopping.is_set():
            if pause:
                self.stopping.wait(pause)
            else:
                try:
                    self.registry.wait_for_wake(self.id, wait)
                except STORE_ERRORS:
                    pass  # its connection was reset, say: beat at once
            if self.stopping.is_set():
                break
            try:
                soon = self.beat()
            except Exception:  # noqa: BLE001 - out of memory for a moment, say: the heartbeat must go on
                log.exception("relay: heartbeat failed")
                soon = self.heartbeat
            if soon is None:
                pause = min(max(pause * 2, 0.02), self.heartbeat)
            else:
                pause, wait = 0.0, min(self.heartbeat, soon)

    def beat(self) -> float | None:
        """One heartbeat, its steps in order; independent of every handler. Returns the seconds until the
        next beat (sooner than the heartbeat when a suspect host is to be checked again), or None when the
        store failed it."""
        try:
            self.stay_registered()
            self.renew_leases()
            soon = self.supervise_deaths()
            self.follow_placement()
            self.passivate_idle()
            self.wake_pending()
            self.inbox.answer(self.strays.current())  # relay.NAME queues that hold messages
            self.publish_figures()
        except STORE_ERRORS as exc:
            log.warning("relay: heartbeat failed (%s); retrying", exc)
            return None
        self.restart_if_too_big()
        return soon

    def stay_registered(self) -> None:
        """Liveness; a host declared dead meanwhile (paused, cut off) gives up its servers and comes back."""
        if not self.registry.heartbeat(self.id):
            log.warning("relay: %s was declared dead (paused or cut off): it gives up its servers", self.id)
            self.drop_all()
            self.registry.register_host(self.id, self.node, os.getpid())

    def renew_leases(self) -> None:
        """A lease whose fence moved on is lost: that server is dropped."""
        with self.lock:
            leases = {name: a.lease for name, a in self.actors.items() if a.lease}
        for name in self.ledger.renew(self.id, leases):
            log.warning("relay: %s lost server %s to another host", self.id, name)
            self.drop(name)

    def supervise_deaths(self) -> float:
        """Runs the supervisor when a host died or a server waits for an owner; seconds until the next beat."""
        if not self.registry.deaths_noticed():
            return self.heartbeat
        report = self.supervisor.run()
        if report.dead_hosts:  # what a dead host took from the broker and never journalled
            restored = restore_unacked(self.app.conf.broker_url, set(SHARD_QUEUES))
            if restored:
                log.info("relay: %s restored %d unacknowledged messages", self.id, restored)
        return report.recheck if report.recheck is not None else CONFIRM if report.busy else self.heartbeat

    def follow_placement(self) -> None:
        """Starts the servers placed here, stops those placed elsewhere: of the actors that ran before the
        placement was read (one a message started meanwhile, `deliver`, is not in what was read)."""
        with self.lock:
            running = set(self.actors)
        mine = set(self.registry.assigned_to(self.id))
        self.adopt(mine)
        for name in running - mine:
            self.drop(name)

    def wake_pending(self) -> None:
        """Wakes the servers with messages in their journal whose broker copy went elsewhere or was lost."""
        with self.lock:
            names = list(self.actors)
        for name in self.ledger.has_pending(names):
            self.wake(name)

    def publish_figures(self) -> None:
        """The compile cache's and the messages' counters, and this process's memory, for the gateway's metrics."""
        self.stats.cache(self.cache.stats)
        self.stats.flush()
        record_memory(self.store, self.id, resident_bytes())

    def restart_if_too_big(self) -> None:
        """llvmlite and MCJIT never give compiled code back: past its memory, a host hands its servers off
        and ends (Celery's warm shutdown; a process manager starts it again)."""
        if resident_bytes() > self.max_memory:
            log.warning("relay: %s uses %d MiB, over its %d MiB: handing its servers off and restarting",
                        self.id, resident_bytes() >> 20, self.max_memory >> 20)
            self.stop()
            os.kill(os.getpid(), signal.SIGTERM)

    def _bell_loop(self) -> None:
        """Starts (or wakes) the servers this host was just given by their first message (registry.ring)."""
        while not self.stopping.is_set():
            try:
                names = self.registry.wait_for_bell(self.id, self.heartbeat)
                mine = {name for name in names if not self.wake(name) and self.registry.owner(name) == self.id}
            except STORE_ERRORS:  # what it missed, the heartbeat finds (follow_placement, wake_pending)
                self.stopping.wait(0.1)
                continue
            except Exception:  # noqa: BLE001 - out of memory for a moment, say: the bell must go on
                log.exception("relay: bell failed")
                self.stopping.wait(0.1)
                continue
            self.adopt(mine)

    def adopt(self, names: set[str]) -> None:
        """Starts an actor for each of these servers (given to this host) not running here yet."""
        with self.lock:
            for name in names - set(self.actors):
                self.actors[name] = Actor(self, name)

    def deliver(self, name: str) -> None:
        """A message was journalled for `name`: wakes its actor here, or its owner elsewhere, activating
        the server first when it is inactive (registry.activate); with no live owner to be had, a host is
        woken to run the supervisor, which places it."""
        if self.wake(name):
            return
        owner = self.registry.activate(name, by=self.id)
        if owner == self.id:
            self.adopt({name})
        elif owner is not None:
            self.registry.ring(owner, [name])
        else:
            self.registry.wake(self.id)

    def passivate_idle(self) -> None:
        """Lets go of the servers that received nothing for `idle_timeout` seconds and have nothing to do:
        their state and journal stay in the ledger; a message activates them again (here or elsewhere)."""
        now = time.monotonic()
        with self.lock:
            idle = [a for a in self.actors.values() if a.idle_since is not None and now - a.idle_since > self.idle_timeout]
        let_go = 0
        for actor in idle:
            with self.lock:  # the bell thread cannot wake this actor between the two
                if not self.registry.passivate(actor.name, self.id, actor.lease):
                    continue
                self.actors.pop(actor.name, None)
            actor.stop(wait=0)
            let_go += 1
        if let_go:  # a burst's store connections go too (a pool keeps what it opened)
            close_idle(self.store)
            close_idle(self.registry.r)

    def drop(self, name: str) -> None:
        """Stops hosting a server: its in-memory state is discarded."""
        with self.lock:
            actor = self.actors.pop(name, None)
        if actor is not None:
            actor.stop(wait=0)

    def drop_all(self) -> None:
        with self.lock:
            names = list(self.actors)
        for name in names:
            self.drop(name)

    def wake(self, name: str) -> bool:
        with self.lock:
            actor = self.actors.get(name)
        if actor is not None:
            actor.wake()
        return actor is not None

    # ------------------------------------------------------------ replies for plain Celery producers

    def store_result(self, message_id: str, reply: dict, task_id: str | None = None) -> None:
        """The reply as the Celery result of the message id, `task_id` and every task that carried it."""
        try:
            self.results.put(message_id, reply, task_id)
        except Exception as exc:  # noqa: BLE001 - the ledger holds the reply; this copy is for Celery's AsyncResult
            log.warning("relay: could not store the Celery result of %s: %s", message_id, exc)


class Actor:
    """One server hosted here: its interpreter, instance and lease; its turns run on the host's pool
    (relay_workers.runners), one at a time."""

    def __init__(self, host: Host, name: str) -> None:
        self.host = host
        self.name = name
        self.lease = ""
        self.version = 0
        self.settings_time_limit = 0.0
        self.memory_limit: int | None = None  # the server's own budget; None: the workers' default
        self.per_message = 0.0  # seconds a message of the last batch took: how many the next batch takes
        self.interp: Interpreter | None = None
        self.runtime: FleetRuntime | None = None
        self.instance: ServerInstance | None = None
        self.family: Family | None = None  # the declaration of its family (a server `account[ada]`)
        self.idle_since: float | None = None  # when it last ran out of messages; None: busy (see Host.passivate_idle)
        self.backoff = 0.0  # > 0: the last turn met a store error
        self.slot = Slot()
        self.wake()  # a new owner loads its server at once

    def wake(self) -> None:
        """By a message, the heartbeat (a journal not empty) or a new lease."""
        self.host.runners.schedule(self, self.slot)

    def stop(self, wait: float) -> None:
        self.host.runners.stop(self.slot, wait)

    @property
    def stopped(self) -> bool:
        return self.slot.stopped

    def release(self) -> None:
        if self.lease:
            self.host.ledger.release(self.name, self.lease)

    def turn(self) -> None:
        """Applies what waits, for about TURN_SECONDS; the pool runs it again if more does."""
        deadline = time.monotonic() + TURN_SECONDS
        try:
            while not self.stopped and self.apply_pending():
                if time.monotonic() > deadline:
                    self.wake()  # the back of the queue: other servers' messages go first
                    return
            self.backoff = 0.0
            if self.idle_since is None:
                self.idle_since = time.monotonic()
        except NotOwner:
            self.forget()
        except STORE_ERRORS as exc:  # the store away: the message's effect is discarded; retried later
            log.warning("relay: server %s: store error (%s); retrying", self.name, exc)
            self.forget()
            self.backoff = min(max(self.backoff * 2, 0.05), 2.0)
            self.host.runners.later(self, self.slot, self.backoff)
        except Exception:  # noqa: BLE001 - a bug must not stop the server
            log.exception("relay: server %s: unexpected error; reloading from its checkpoint", self.name)
            self.forget()
            self.host.runners.later(self, self.slot, 1.0)

    def forget(self) -> None:
        """Discards the in-memory server: the next message reloads it from the last commit."""
        self.interp = self.runtime = self.instance = self.family = None

    # ------------------------------------------------------------ loading

    def ensure(self, batch: Batch) -> None:
        """Checks that the batch was taken under this host's lease of a deployed server, and has the server
        loaded at its current version."""
        if batch.lease is None or batch.version is None:
            raise NotOwner(self.name)  # another host holds the lease, or the server was undeployed
        if batch.lease != self.lease:
            self.forget()  # a new lease: whatever is in memory predates the last commit of another owner
            self.lease = batch.lease
        if self.instance is None or batch.version != self.version:
            self.load(batch.version)

    def load(self, version: int) -> None:
        info = self.host.registry.server(self.name) or {}
        self.settings_time_limit = float(info.get("time_limit") or 0)
        self.memory_limit = int(float(info["memory_limit"])) if info.get("memory_limit") else None
        if self.interp is None:
            self.interp = Interpreter(out=io.StringIO(), err=io.StringIO(), cache=self.host.cache, repl=True)
            self.runtime = FleetRuntime(self.host.messenger, self.host.registry, self.host.time_limit, self,
                                        self.host.runners.blocking)
        assert self.runtime is not None
        self.runtime.attach(self.interp)
        interp = self.interp
        self.version = version
        run_budgeted(interp, lambda: interp.run(info["source"], info.get("file", f"<server {self.name}>")),
                     self.time_limit)
        if self.family is not None:
            run_budgeted(interp, lambda: self.start_in_family(interp), self.time_limit)
        if self.instance is None:
            raise RelayError(f"the source deployed for server '{self.name}' does not declare it")

    def start_in_family(self, interp: Interpreter) -> None:
        """This server of its family: from its last commit, or new with the family's initial state (made
        with `self` this server); either way at the family's version (its new handlers, and the keys of
        the new initial state its state lacks, after an upgrade)."""
        family = self.family
        assert family is not None
        if self.instance is None:
            saved = self.host.ledger.load_state(self.name)
            if saved is None:
                self.instance = family.start(interp, ServerRef(self.name))
                return
            state = {k: from_wire(json.loads(v)) for k, v in saved.items()}
            self.instance = ServerInstance(self.name, family.handlers, state)
            self.instance.unsaved = set()
            self.instance.version = 0  # not yet at any version: refresh adds the initial state's new keys
        family.refresh(interp, self.instance)

    def declare_family(self, name: str, handlers: dict[str, Function], init: Function) -> ServerRef:
        if name != deployment_of(self.name):
            return ServerRef(family_name(name))  # another family of the same source
        if self.family is None:
            self.family = Family(name, handlers, init)
        else:
            self.family.upgrade(handlers, init)
        return self.family.ref

    def declare(self, name: str, handlers: dict[str, Function], initial: dict) -> ServerRef:
        if name != self.name:
            return ServerRef(name)  # another server of the same source: hosted where it was placed
        if self.instance is not None:  # hot upgrade: new handlers, same state
            self.instance.upgrade(handlers, initial)
            return self.instance.ref
        saved = self.host.ledger.load_state(name)
        state = initial if saved is None else {k: from_wire(json.loads(v)) for k, v in saved.items()}
        self.instance = ServerInstance(name, handlers, state)
        if saved is not None:
            self.instance.unsaved = set(initial) - set(saved)
        return self.instance.ref

    # ------------------------------------------------------------ messages

    def apply_pending(self) -> bool:
        """Takes the journal's next batch, applies it in order and commits it at once; True when there may
        be more. A batch is as many messages as fit in BATCH_SECONDS at the last batch's pace (at most BATCH), and
        stops early (the rest is left in the journal) past BATCH_SECONDS of handling."""
        limit = max(1, min(BATCH, int(BATCH_SECONDS / self.per_message) if self.per_message else BATCH))
        batch = self.host.ledger.take(self.name, self.host.id, limit)
        if batch.messages:
            self.idle_since = None
        try:
            self.ensure(batch)  # also with nothing to do: a new owner loads its server at once
        except RelayError as err:  # the deployed source fails to load: every message gets that error
            self.forget()
            started = time.monotonic()
            self.commit([Applied(m, {"error": err.to_dict()}, [], started) for m in batch.messages], [])
            return bool(batch.messages)
        done: list[Applied] = []
        start = time.monotonic()
        for message in batch.messages:
            if self.stopped or (done and time.monotonic() > start + BATCH_SECONDS):
                break
            done.append(self.apply(message))
        if done:
            self.per_message = (time.monotonic() - start) / len(done)
        self.commit(done, [m.id for m in batch.messages[len(done):]])
        return len(done) < len(batch.messages) or batch.more  # messages journalled later wake this actor

    def apply(self, message: Pending) -> Applied:
        """Runs one message on the server in memory; a failed handler leaves the state as it was before this
        message and sends nothing. Nothing is visible outside until the batch commits."""
        instance, interp, runtime = self.instance, self.interp, self.runtime
        assert instance is not None and interp is not None and runtime is not None
        started = self.host.events.started(message.id, self.name, message.handler, message.args)
        if self.name in message.chain:
            return Applied(message, {"error": cycle_error(message.chain, self.name).to_dict()}, [], started)
        if message.attempts > self.host.max_attempts:
            return Applied(message, self.quarantine(message, message.attempts - 1), [], started)
        handling = runtime.handling = Handling(message.id, [*message.chain, self.name])
        interp.out = interp.err = CappedOutput(self.host.output_limit)
        try:
            value = run_budgeted(interp, lambda: instance.handle(interp, message.handler, [from_wire(a) for a in message.args]),
                                 self.time_limit, self.memory_limit)
            reply: dict = {"value": to_wire(value)}
        except RelayError as err:
            reply = {"error": err.to_dict()}
            handling.outgoing.clear()  # a failed handler sends nothing
        finally:
            runtime.handling = None
        return Applied(message, reply, handling.outgoing, started)

    def quarantine(self, message: Pending, attempts: int) -> dict:
        """A poison message: its handling killed its owner `attempts` times. Set aside; its error reply."""
        reason = (f"set aside after {attempts} attempts: its owner died (killed, out of memory, or cut off) "
                  f"each time it handled {self.name}.{message.handler}")
        log.error("relay: message %s to %s %s", message.id, self.name, reason)
        self.host.dead.add(queue=shard_queue(self.name), reason=reason, raw=json.dumps(message.args)[:4096],
                           message_id=message.id, server=self.name, handler=message.handler, args=message.args,
                           attempts=attempts)
        self.host.stats.count("dead_lettered_total")
        return {"error": RelayError(f"message to {self.name}.{message.handler} {reason}", kind="dead letter").to_dict()}

    @property
    def time_limit(self) -> float:
        return min(self.settings_time_limit or self.host.time_limit, self.host.time_limit)

    def commit(self, done: list[Applied], untaken: list[str]) -> None:
        """One fenced write for the whole batch; then what only a commit may let out: the receivers' owners
        woken, task events, and Celery results for plain Celery producers."""
        if not done and not untaken:
            return
        instance = self.instance
        fields: dict[str, str] = {}
        removed: list[str] = []
        if instance is not None:
            for name in instance.unsaved:
                if name in instance.state:
                    fields[name] = json.dumps(to_wire(instance.state[name]))
                else:
                    removed.append(name)
        outgoing = [out for applied in done for out in applied.outgoing]
        try:
            ok = self.host.ledger.commit(self.name, self.lease, [(a.message, a.reply) for a in done], fields,
                                         removed, outgoing, untaken)
        except BaseException:
            self.forget()
            raise
        if not ok:
            raise NotOwner(self.name)
        if instance is not None:
            instance.unsaved = set()
        for out in {out.server: out for out in outgoing}.values():  # all journalled: one wake-up per receiver
            try:
                self.host.messenger.ring(out.server, out.handler, out.args, out.id, [])
            except Exception as exc:  # noqa: BLE001 - the receiver's owner finds it in its journal anyway
                log.warning("relay: could not publish %s to %s: %s", out.id, out.server, exc)
        for applied in done:
            self.host.events.finished(applied.message.id, applied.reply, applied.started)
            self.host.stats.count("messages_total")
            if "error" in applied.reply:
                self.host.stats.count("message_errors_total")
            self.host.stats.observe("message", time.monotonic() - applied.started)
            if applied.message.result:
                self.host.store_result(applied.message.id, applied.reply)
        self.host.events.flush()
