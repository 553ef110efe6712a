"""An email backend that writes each message to its own .eml file.

Used by the embedded mode and the demo: open any file in var/outbox/ with a
mail client to see exactly what a subscriber would receive.
"""

import os
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend


class OutboxEmailBackend(BaseEmailBackend):
    def __init__(self, *, outbox_dir=None, fail_silently=False, **kwargs):
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.outbox_dir = Path(outbox_dir or settings.OUTBOX_DIR)
        self._lock = threading.Lock()

    def send_messages(self, email_messages):
        if not email_messages:
            return 0
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        sent = 0
        with self._lock:
            for message in email_messages:
                try:
                    self._write(message)
                except Exception:
                    if not self.fail_silently:
                        raise
                else:
                    sent += 1
        return sent

    def _write(self, message):
        data = message.message().as_bytes(linesep="\r\n")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        recipient = _safe_name(message.to[0] if message.to else "no-recipient")
        final = self.outbox_dir / f"{stamp}-{recipient}-{uuid.uuid4().hex[:8]}.eml"
        # Write then rename, so a reader never sees half a message.
        partial = final.with_suffix(".eml.partial")
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.rename(final)
        return final


def _safe_name(address: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in address.replace("@", "_at_"))
    return cleaned[:60] or "recipient"
