"""Everything every email needs: build it, hand it to the ESP, or keep it in the embedded outbox."""
