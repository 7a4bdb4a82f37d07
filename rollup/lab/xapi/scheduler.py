"""The lab's clock and the thread that runs its timed actions (reboots, API drops).

Lab time is simulated: it starts at the real time and runs `speed` times faster, so a
90 s reboot at speed 1000 takes 90 ms of real time but moves `boot_time` 90 s forward,
as a real reboot would. Every duration handed to `call_later` is in simulated seconds.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Scheduler:
    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._epoch = time.time()
        self._start = time.monotonic()
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lab-scheduler", daemon=True)
        self._thread.start()

    def now(self) -> float:
        """Simulated seconds since the epoch."""
        return self._epoch + (time.monotonic() - self._start) * self.speed

    def real(self, seconds: float) -> float:
        """Real seconds a simulated duration takes."""
        return seconds / self.speed

    def call_later(self, seconds: float, action: Callable[[], None]) -> int:
        """Run `action` on the scheduler thread after `seconds` of simulated time."""
        with self._cond:
            seq = next(self._seq)
            heapq.heappush(self._queue, (time.monotonic() + self.real(seconds), seq, action))
            self._cond.notify()
            return seq

    def cancel(self, handle: int) -> None:
        with self._cond:
            self._cancelled.add(handle)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._queue and self._queue[0][0] <= time.monotonic():
                        break
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                _, seq, action = heapq.heappop(self._queue)
                if seq in self._cancelled:
                    self._cancelled.discard(seq)
                    continue
            action()
