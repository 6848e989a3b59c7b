"""The adaptive-rate (AIMD) settings that the local and the Redis rate limiters share.

Pure arithmetic on a configured rate: no clock, no I/O, and no import of the limiters, so that
every limiter (``limiter.TokenBucketLimiter`` too) can derive its floor, recovery step and
cool-down here the same way.
"""

from __future__ import annotations

import attrs

__all__ = ["Aimd"]


@attrs.frozen
class Aimd:
    """How a limiter backs off after a rate-limited answer and recovers after successes.

    Attributes:
        cooldown: seconds to pause after a rate-limited answer without Retry-After.
        floor: the lowest rate a decrease may reach, in requests per second.
        recovery: requests per second added back per successful request.
    """

    cooldown: float
    floor: float
    recovery: float

    @classmethod
    def of(
        cls,
        per_second: float,
        *,
        cooldown: float,
        min_rate_fraction: float,
        recovery_per_success: float | None,
    ) -> Aimd:
        """The settings for a configured rate of *per_second*; *recovery_per_success* defaults to ``per_second / 50``.

        With that default, recovering from one halving takes 25 successful requests.
        """
        recovery = recovery_per_success if recovery_per_success is not None else per_second / 50
        return cls(cooldown=cooldown, floor=per_second * min_rate_fraction, recovery=recovery)

    def pause(self, retry_after: float | None) -> float:
        """Seconds to pause: what the server asked for (never negative), else the cool-down."""
        return self.cooldown if retry_after is None else max(0.0, retry_after)
