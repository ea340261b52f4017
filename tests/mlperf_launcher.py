"""Runs the unmodified MLPerf Tiny runner (mlcommons/tiny benchmark/runner/main.py) against a
pseudo-terminal, presented as a USB serial port.

The runner finds its DUT only by USB VID:PID (``serial.tools.list_ports.comports()``); a pty has
none. This launcher, run with the runner's own venv, makes ``comports()`` list the pty with the
given VID:PID, makes the USB-only device scan (pyusb, for the JS220 power monitor) see no device
when libusb has no usable backend here, then executes main.py as ``__main__`` with the rest of the
command line. Nothing of the runner is changed or copied.

    python mlperf_launcher.py RUNNER_DIR PTY VID PID -- [main.py options]
"""

import os
import runpy
import sys


def main() -> None:
    runner_dir, pty, vid, pid = sys.argv[1:5]
    assert sys.argv[5] == "--", "usage: mlperf_launcher.py RUNNER_DIR PTY VID PID -- [main.py options]"
    from serial.tools import list_ports, list_ports_common

    port = list_ports_common.ListPortInfo(pty, skip_link_detection=True)
    port.vid, port.pid = int(vid, 0), int(pid, 0)
    port.description = "tinygen QEMU pty"
    port.hwid = f"USB VID:PID={port.vid:04X}:{port.pid:04X}"
    list_ports.comports = lambda include_links=False: [port]

    import usb.core

    real_find = usb.core.find

    def find(*a, **k):
        try:
            return real_find(*a, **k)
        except (usb.core.NoBackendError, usb.core.USBError, OSError):
            return [] if k.get("find_all") else None
    usb.core.find = find

    sys.path.insert(0, runner_dir)
    sys.argv = [os.path.join(runner_dir, "main.py"), *sys.argv[6:]]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
