"""The gate between lease changes (shared) and resyncs or settled() (exclusive)."""

from __future__ import annotations

import asyncio

from ftp_cluster.shared.limits.redis.gate import Gate


def test_exclusive_holders_take_turns_and_keep_shared_ones_out() -> None:
    """A resync and a settled() may ask at once: neither may open the gate on the other."""

    async def main() -> None:
        gate = Gate()
        inside: list[str] = []
        seen: dict[str, list[str]] = {}

        async def exclusive(name: str, seconds: float) -> None:
            async with gate.exclusive():
                seen[name] = list(inside)
                inside.append(name)
                await asyncio.sleep(seconds)
                inside.remove(name)

        async def shared(name: str) -> None:
            async with gate:
                seen[name] = list(inside)

        first = asyncio.create_task(exclusive("resync", 0.05))
        await asyncio.sleep(0)
        second = asyncio.create_task(exclusive("settled", 0.0))
        await asyncio.sleep(0.01)  # the second waits; the first is still inside
        await asyncio.gather(first, second, *(shared(f"change{n}") for n in range(3)))
        # Nobody found anyone inside: not the other exclusive holder, nor a change.
        assert sorted(seen) == ["change0", "change1", "change2", "resync", "settled"]
        assert all(found == [] for found in seen.values())

    asyncio.run(main())


def test_a_waiting_exclusive_holder_goes_before_new_shared_ones() -> None:
    async def main() -> None:
        gate = Gate()
        order: list[str] = []
        await gate.__aenter__()  # a lease change in flight

        async def exclusive() -> None:
            async with gate.exclusive():
                order.append("exclusive")

        async def shared() -> None:
            async with gate:
                order.append("shared")

        waiting = asyncio.create_task(exclusive())
        await asyncio.sleep(0)
        late = asyncio.create_task(shared())
        await asyncio.sleep(0.01)
        assert order == []
        await gate.__aexit__(None, None, None)
        await asyncio.gather(waiting, late)
        assert order == ["exclusive", "shared"]

    asyncio.run(main())
