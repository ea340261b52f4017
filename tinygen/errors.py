"""The exception hierarchy of tinygen.

Every error a user can cause derives from :class:`TinygenError`; the CLI prints its
message on one line (``tinygen: error: ...``) and exits with :attr:`exit_code`,
never a traceback. Messages name the file, layer, op, tensor or byte at fault
and say what to do.
"""


class TinygenError(Exception):
    """Base class: a problem the user can act on."""

    exit_code = 1


class ModelError(TinygenError):
    """The model file is unreadable, corrupt or inconsistent."""

    exit_code = 2


class UnsupportedError(ModelError):
    """The model uses an op, dtype or quantization tinygen cannot compile."""

    exit_code = 3


class InputError(TinygenError):
    """Inputs (test vectors, calibration or training data) have the wrong shape or dtype."""

    exit_code = 4


class BoardError(TinygenError):
    """Unknown board, or the model does not fit the board."""

    exit_code = 5


class ToolchainError(TinygenError):
    """A required external tool (compiler, QEMU, flasher, CMSIS-NN) is missing or failed."""

    exit_code = 6


class DeviceError(TinygenError):
    """The serial device is absent, silent, vanished or answered nonsense."""

    exit_code = 7


class OutputError(TinygenError):
    """The output folder cannot be written safely."""

    exit_code = 8


class CompilerBug(TinygenError):
    """An internal invariant failed: a bug in tinygen, not in the model. Please report it."""

    exit_code = 9

    def __init__(self, stage: str, msg: str):
        self.stage = stage
        super().__init__(f"internal error in stage '{stage}' (a tinygen bug, please report it with the model): {msg}")
