"""A serial port with a deadline on every read and one-line errors (pyserial).

Everything a user can hit becomes a :class:`~tinygen.errors.DeviceError`: the port is
absent (the message lists the ports that exist), busy, or vanished mid-run (USB unplugged,
QEMU stopped). Reads never block longer than the timeout given.
"""

from __future__ import annotations

import glob
import os
import time

from ..errors import DeviceError


def available_ports() -> list[str]:
    """Serial ports the system knows (USB/ACM/ST-Link ports, plus QEMU's /dev/pts ones)."""
    ports: list[str] = []
    try:
        from serial.tools import list_ports

        ports = [p.device for p in list_ports.comports()]
    except Exception:  # noqa: BLE001 - listing is best effort
        pass
    for pattern in ("/dev/ttyACM*", "/dev/ttyUSB*"):
        ports += [p for p in glob.glob(pattern) if p not in ports]
    return sorted(ports)


def _serial():
    try:
        import serial
    except ImportError:
        raise DeviceError("pyserial is not installed: pip install pyserial") from None
    return serial


class Port:
    """A line-oriented serial link: :meth:`send` and :meth:`readline` with a timeout."""

    def __init__(self, name: str, baud: int = 115200) -> None:
        serial = _serial()
        self.name = name
        if not os.path.exists(name):
            have = available_ports()
            raise DeviceError(f"serial port {name} does not exist; available ports: "
                              f"{', '.join(have) if have else 'none (is the board plugged in?)'}")
        try:
            self.s = serial.Serial(name, baud, timeout=0.05, write_timeout=5)
        except (serial.SerialException, OSError) as e:
            raise DeviceError(f"cannot open serial port {name}: {_why(e)} "
                              "(in use by another program? permission: add yourself to group dialout)") from None
        self.buf = bytearray()
        self.closed = False
        self.dropped = 0  # bytes discarded from floods without a line end

    def _vanished(self, e: Exception) -> DeviceError:
        self.close()
        return DeviceError(f"serial port {self.name} vanished mid-run ({_why(e)}): "
                           "the board was unplugged, reset its USB link, or the emulator stopped")

    def send(self, line: str) -> None:
        serial = _serial()
        if self.closed:
            raise DeviceError(f"serial port {self.name} is closed")
        try:
            self.s.write(line.encode("ascii") + b"\n")
            self.s.flush()
        except (serial.SerialException, OSError) as e:
            raise self._vanished(e) from None

    def send_raw(self, data: bytes) -> None:
        serial = _serial()
        try:
            self.s.write(data)
            self.s.flush()
        except (serial.SerialException, OSError) as e:
            raise self._vanished(e) from None

    def readline(self, timeout: float) -> str | None:
        """One line without its ``\\r\\n`` (decoded as latin-1), or None after ``timeout`` seconds."""
        serial = _serial()
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                raw = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return raw.replace(b"\r", b"").decode("latin-1")
            if time.monotonic() >= deadline:
                return None
            if self.closed:
                raise DeviceError(f"serial port {self.name} is closed")
            try:
                chunk = self.s.read(max(1, self.s.in_waiting))
            except (serial.SerialException, OSError, TypeError) as e:
                raise self._vanished(e) from None
            if chunk:
                self.buf += chunk
                if len(self.buf) > 1 << 20:          # a flood without newlines: drop it
                    self.dropped += len(self.buf) - 4096
                    del self.buf[:-4096]

    def drain(self, quiet: float = 0.1, limit: float = 2.0) -> None:
        """Discards input until the line is quiet for ``quiet`` s (at most ``limit`` s)."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if self.readline(quiet) is None:
                break
        self.buf.clear()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.s.close()
            except Exception:  # noqa: BLE001
                pass


def _why(e: Exception) -> str:
    msg = str(e).strip() or type(e).__name__
    return msg.splitlines()[0]
