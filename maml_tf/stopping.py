"""Why a training run ends early: a stop signal, or a loss that is no longer a number.

Both trainers (supervised and RL) share these. Signals are turned into a *request* while an
iteration or a checkpoint write is in progress, so the checkpoint saved on SIGINT/SIGTERM
holds exactly the iterations its name says and a second Ctrl-C cannot cut the save short.
Outside those sections (building the model, loading data) there is nothing to save, so a
signal stops the process at once. The entry points (main.py, rl/main.py) install the handler
and turn :class:`Stopped` into one line and exit status 128 + signal number, the shell's
convention for "stopped by a signal": ``train && test`` chains do not go on with an
unfinished run.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The run was stopped by a signal (after saving, when there was anything to save).

    A KeyboardInterrupt subclass so that no ``except Exception`` on the way swallows it.
    """

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class NonFiniteError(ArithmeticError):
    """A loss or gradient became NaN or infinite; training stopped before applying it."""


def _write_stderr(text: str) -> None:
    # os.write, not print: a signal may arrive while the main thread is inside a print to the
    # same buffered stream, and a nested print would raise "reentrant call".
    try:
        os.write(2, text.encode())
    except OSError:
        pass


class StopSignals:
    """SIGINT/SIGTERM handler with deferral inside :meth:`deferred` sections.

    Use as a context manager around a run (installs the handlers, restores the previous ones).
    An instance that was never installed is a valid "never stops" object for scripts and tests.
    Installing also overrides an *ignored* SIGINT (a shell starts background jobs with SIGINT
    ignored), so ``kill -INT`` stops a background run cleanly too.

    Example:
        >>> import signal
        >>> from maml_tf.stopping import StopSignals
        >>> with StopSignals() as stop:                 # installs the SIGINT/SIGTERM handlers
        ...     with stop.deferred():                   # an iteration in progress
        ...         signal.raise_signal(signal.SIGTERM)   # only requests the stop (stderr says so)
        ...         print(stop.requested == signal.SIGTERM)
        True
        >>> stopped = stop.stop("after iteration 41: saved ckpt-41")   # raised after the save
        >>> str(stopped), stopped.exit_status          # exit status 128 + 15
        ('Stopped by SIGTERM after iteration 41: saved ckpt-41', 143)
    """

    def __init__(self):
        self.requested: Optional[int] = None
        self._depth = 0
        self._previous = {}

    # -- installation ------------------------------------------------------------------------
    def __enter__(self) -> "StopSignals":
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    # -- behaviour ---------------------------------------------------------------------------
    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self._depth == 0:
            raise Stopped(signum, f"Stopped by {name} outside a training iteration; nothing "
                                  f"to save")
        if self.requested is None:
            self.requested = signum
            _write_stderr(f"{name} received: finishing the current iteration and saving a "
                          f"checkpoint, then stopping (further signals wait for the save)\n")
        else:
            _write_stderr(f"{name} received again: still saving, please wait\n")

    @contextlib.contextmanager
    def deferred(self):
        """Within this block signals only set :attr:`requested`; the caller polls it."""
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1

    def stop(self, message: str) -> Stopped:
        """The exception to raise once the requested stop has been honoured (after saving):
        ``message`` follows "Stopped by SIGNAME"."""
        return Stopped(self.requested,
                       f"Stopped by {signal.Signals(self.requested).name} {message}")


@contextlib.contextmanager
def children_ignore_interrupts():
    """Processes started inside this block ignore SIGINT (inherited through exec).

    Ctrl-C in a terminal signals the whole foreground process group: worker processes (the RL
    sampler's) would die at once and break the iteration the parent is finishing before its
    save. The parent alone decides when to stop and closes its workers itself.
    """
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_status(body, user_errors: tuple) -> int:
    """Runs an entry point's ``body()`` and turns how it ended into the process's exit status.

    Why one function: both command lines (main.py, rl/main.py) promise the same contract, and
    it is what scripts and the fault-injection table rely on: 0 done; 128 + signal number when
    stopped by SIGINT/SIGTERM (after its save; the message on stderr); 2 for a user-facing
    error of ``user_errors`` (bad data, checkpoint, run folder, export or cluster: one line,
    no traceback); 3 when training met a non-finite loss or gradient.

    An entry point ends with ``sys.exit(exit_status(lambda: run(cfg), user_errors))``.

    Example:
        >>> from maml_tf.stopping import NonFiniteError, exit_status
        >>> exit_status(lambda: None, user_errors=(ValueError,))
        0
        >>> def diverging():
        ...     raise NonFiniteError("iteration 7: the loss is not finite")
        >>> exit_status(diverging, user_errors=(ValueError,))     # "error: ..." on stderr
        3
    """
    try:
        body()
    except Stopped as stopped:
        print(str(stopped), file=sys.stderr)
        return stopped.exit_status
    except tuple(user_errors) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NonFiniteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    return 0
