"""Errors raised by nono.

Every error nono raises derives from :class:`NonoError`; the CLI catches that
base once, prints ``nono: <message>`` (plus the hint with ``-v``) and exits 1.

* NonoError
  + KernelError      a syscall failed or the kernel lacks a required feature
  + PolicyError      the requested policy is malformed or contradictory
  + SandboxError     applying the sandbox or launching the program failed
"""


class NonoError(Exception):
    """Base class. ``hint`` says what the user can do about it."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message plus the hint, for humans."""
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class KernelError(NonoError):
    """A kernel interface failed or is missing (carries ``syscall`` and ``errno``)."""

    def __init__(self, message: str, *, syscall: str = "", errno: int = 0, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.syscall = syscall
        self.errno = errno


class PolicyError(NonoError):
    """The policy cannot be built as asked (bad path, contradictory flags, ...)."""

    def __init__(self, message: str, *, path: str = "", hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.path = path


class SandboxError(NonoError):
    """The sandbox could not be applied, or the program could not be started."""
