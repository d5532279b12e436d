import pytest

from foundation import Actor, ActorDead, Down, Runtime
from foundation.testing import Probe, assert_down

pytestmark = pytest.mark.anyio


class Counter(Actor):
    async def init(self, start: int = 0) -> None:
        self.value = start

    async def handle_call(self, request, caller):
        if request == "crash":
            raise ValueError("boom")
        return self.value

    async def handle_cast(self, msg) -> None:
        self.value += 1


async def test_a_counter_counts(runtime: Runtime) -> None:
    ref = await runtime.spawn(Counter, 41)
    ref.cast("incr")
    assert await ref.call("get") == 42


async def test_a_probe_sees_the_down_of_a_crashed_actor(runtime: Runtime, clock) -> None:
    probe = await Probe.start()
    ref = await runtime.spawn(Counter)
    probe_actor = probe.ref._proc.actor
    mref = probe_actor.monitor(ref)
    with pytest.raises(ActorDead):
        await ref.call("crash")
    down = await probe.assert_receive(Down)
    assert down.ref == mref and isinstance(down.reason, ValueError)
    # Monitoring an actor that already exited yields exactly one Down with "noproc".
    await assert_down(ref, "noproc")
