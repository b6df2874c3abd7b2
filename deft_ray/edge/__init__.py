"""The emulated edge without learning: devices, the radio channel, clocks and block profiles; no torch, no Ray."""
