"""Suite-wide setup."""

from __future__ import annotations

import signal

# Run as a background job (`./scripts/test &`, nohup), the shell starts us with SIGINT
# ignored, and an ignored signal stays ignored in the programs the tests start: the
# example servers would then never see Ctrl-C (KeyboardInterrupt), which the tests send.
# A handled signal is reset to its default in a child, so handling it here fixes both.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
