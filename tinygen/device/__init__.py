"""Talking to a board: ``tinygen flash`` (upload or start the emulated board) and
``tinygen bench`` (latency and bit-exactness over a serial port).

Modules: :mod:`.protocol` (line framing, CRC-32, banner), :mod:`.serialport` (pyserial with
timeouts and clear errors), :mod:`.bench` (the host side of a benchmark), :mod:`.flash`
(uploaders, QEMU on a pty), :mod:`.commands` (the CLI subcommands). Protocol: docs/bench.md.
"""
