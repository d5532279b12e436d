"""Kernel callbacks a runtime answers for its mailboxes and refs (telemetry, counters)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._exceptions import RuntimeClosed

if TYPE_CHECKING:
    from ._telemetry import Telemetry


class KernelEvents:
    """Mixed into ``Runtime``: what happens on a send to the dead, an overflow, a timeout."""

    _closed: bool
    _dropped: int
    telemetry: Telemetry

    def _on_send_to_dead(self, proc: Any) -> None:
        if self._closed:
            raise RuntimeClosed(f"the runtime of {proc.pid} has stopped; its refs cannot be used")
        self._dropped += 1

    def _on_overflow(self, proc: Any, policy: Any) -> None:
        if self.telemetry.active:
            self.telemetry.emit(
                ("foundation", "mailbox", "overflow"),
                {"length": len(proc.mailbox)},
                {"pid": proc.pid, "name": proc.name, "policy": policy},
            )

    def _on_call_timeout(self, proc: Any, caller: Any) -> None:
        if self.telemetry.active:
            self.telemetry.emit(
                ("foundation", "call", "timeout"),
                {"timeout": caller._timeout},
                {"pid": proc.pid, "name": proc.name, "caller": caller.pid},
            )
