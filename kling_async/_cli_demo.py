"""``kling-async demo``: a batch of sample prompts against an in-process emulator."""

from __future__ import annotations

import secrets
from pathlib import Path

from rich.console import Console

from .batch import Batch, BatchResult
from .client import KlingClient
from .journal import InMemoryJournal
from .models import TextToVideo
from .progress import batch_display
from .providers import COMETAPI, local_emulator
from .retry import RetryPolicy
from .scheduler import PollPolicy

__all__ = ["run_demo"]

_DEMO_PROMPTS = (
    "A red fox trotting through fresh snow at dawn",
    "Waves rolling onto a black sand beach, aerial view",
    "A paper boat drifting down a rainy city gutter",
    "Time-lapse of clouds over a mountain lake",
    "A cat watching goldfish in a bowl, close-up",
    "Neon signs reflecting in puddles at night",
    "A hot air balloon rising over vineyards",
    "Steam curling from a cup of coffee by a window",
    "A hummingbird hovering at a red flower, slow motion",
    "Autumn leaves swirling in a courtyard",
    "A lighthouse beam sweeping across a stormy sea",
    "Children flying kites on a windy hill",
    "A train crossing a stone viaduct in the fog",
    "Fireflies in a forest clearing at dusk",
    "A chef tossing vegetables in a flaming wok",
    "Snow falling on a quiet village street",
    "A sailboat gliding past icebergs",
    "Lanterns floating on a river at night",
    "A dog shaking off water after a swim",
    "Sunflowers turning towards the morning sun",
)
_DEMO_FAIL = "A forbidden scene (FAIL: the emulator rejects prompts containing FAIL)"


def _demo_items(count: int) -> list[tuple[str, TextToVideo]]:
    items: list[tuple[str, TextToVideo]] = []
    for index in range(count):
        prompt = _DEMO_PROMPTS[index % len(_DEMO_PROMPTS)]
        if index == count // 2:
            prompt = _DEMO_FAIL
        items.append((f"demo-{index + 1:02d}", TextToVideo(prompt=prompt, duration="5")))
    return items


async def run_demo(count: int, out_dir: Path, console: Console, dialect: str) -> BatchResult:
    """Run the demo batch of *count* prompts into *out_dir*, answering in *dialect*."""
    # Imported here: the emulator is test support, not needed by the other commands.
    from .testing import FakeKlingServer, Faults, Timeline

    key = secrets.token_hex(16)
    server = FakeKlingServer(
        api_key=key,
        timeline=Timeline(
            queue_seconds=1.0, processing_seconds=3.5, jitter=0.45, fail_rate=0.05, seed=11
        ),
        faults=Faults(
            rate=0.05,
            kinds=("500", "503", "drop_before_create", "drop_after_create"),
            seed=5,
        ),
        max_active_tasks=5,
        rate_limit=6.0,
        rate_burst=6,
        dialect="new-api" if dialect == "new-api" else "kling",
        gateway_poll_interval=1.0,
    )
    async with server:
        # Behind the gateway the client is configured as for CometAPI: a lost create answer
        # then stays "uncertain" (the gateway cannot look tasks up by external id).
        provider = (
            COMETAPI.with_base_url(server.url)
            if dialect == "new-api"
            else local_emulator(server.url)
        )
        client = KlingClient(
            api_key=key,
            provider=provider,
            max_active_tasks=5,
            poll=PollPolicy(first_delay=0.5, min_interval=0.5, max_interval=1.5),
            retry=RetryPolicy(base=0.2, cap=2.0),
        )
        console.print(
            f"emulator on {server.url} ({dialect} dialect): {count} prompts, 5 task slots, "
            "~6 requests/s, faults on",
            highlight=False,
        )
        async with client, InMemoryJournal() as journal:
            display = batch_display(console, count, title="demo")
            client.events.add(display.event)
            with display:
                runner = Batch(client, journal, out_dir, on_entry=display.entry)
                return await runner.run(_demo_items(count))
