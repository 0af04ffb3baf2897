"""How the timing loop runs a session once: ``sess.run`` on the host, or IO binding with inputs
and outputs on the device (CUDA: copies stay out of the timed region; CUDA graphs need output
buffers at fixed addresses); and the progress line of a timing."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

import numpy as np

from fuser.runtime.providers import ProviderChoice


class PlainRunner:
    """``sess.run(None, feeds)``: on CUDA this times host<->device copies too."""

    def __init__(self, sess, feeds: Mapping[str, np.ndarray]):
        self._sess = sess
        self._feeds = {i.name: feeds[i.name] for i in sess.get_inputs()}
        self._names = [o.name for o in sess.get_outputs()]

    def __call__(self) -> None:
        self._sess.run(None, self._feeds)

    def outputs(self) -> dict[str, np.ndarray]:
        return dict(zip(self._names, self._sess.run(self._names, self._feeds), strict=True))


class IOBindingRunner:
    """Inputs copied to ``device`` once; each call runs and waits for the outputs on device.

    ``outputs_like`` (name -> array of the output's shape and dtype) pre-allocates output
    buffers at fixed addresses, which CUDA graphs need; otherwise onnxruntime allocates them.
    """

    def __init__(self, sess, feeds: Mapping[str, np.ndarray], device: str = "cpu", *,
                 outputs_like: Mapping[str, np.ndarray] | None = None):
        import onnxruntime as ort

        self._sess = sess
        self._binding = sess.io_binding()
        self._names = [o.name for o in sess.get_outputs()]
        self._values = []  # keep bound OrtValues alive as long as the binding
        for inp in sess.get_inputs():
            array = np.ascontiguousarray(feeds[inp.name])
            value = ort.OrtValue.ortvalue_from_numpy(array, device, 0)
            self._values.append(value)
            self._binding.bind_ortvalue_input(inp.name, value)
        for name in self._names:
            if outputs_like is None:
                self._binding.bind_output(name, device)
            else:
                like = outputs_like[name]
                value = ort.OrtValue.ortvalue_from_shape_and_type(list(like.shape), like.dtype,
                                                                  device, 0)
                self._values.append(value)
                self._binding.bind_ortvalue_output(name, value)
        self._binding.synchronize_inputs()
        self._ran = False

    def __call__(self) -> None:
        self._sess.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()
        self._ran = True

    def outputs(self) -> dict[str, np.ndarray]:
        """The last run's outputs, copied to the host (runs once if never run)."""
        if not self._ran:
            self()
        return dict(zip(self._names, self._binding.copy_outputs_to_cpu(), strict=True))


def runner_kind(choice: ProviderChoice, *, io_binding: bool | None = None,
                cuda_graph: bool = False) -> str:
    """"binding" on CUDA, with CUDA graphs or when asked; "plain" otherwise."""
    if choice.used == "cuda" or cuda_graph:
        return "binding"
    return "binding" if io_binding else "plain"


def make_runner(sess, feeds: Mapping[str, np.ndarray], kind: str, device: str = "cpu", *,
                outputs_like: Mapping[str, np.ndarray] | None = None):
    """A callable that runs ``sess`` once on ``feeds`` (see PlainRunner, IOBindingRunner)."""
    if kind == "plain":
        return PlainRunner(sess, feeds)
    if kind == "binding":
        return IOBindingRunner(sess, feeds, device, outputs_like=outputs_like)
    raise ValueError(f"unknown runner kind {kind!r}")


class Progress:
    """Progress on stderr: on a terminal one status line (rich's, with a spinner), rewritten
    in place; elsewhere (a log, a CI job, a pipe) a plain line at most every ``LOG_EVERY``
    seconds, the first once the work has taken that long, so that short work prints
    nothing. ``enabled``: True (always the terminal's line), False (nothing), None (by what
    stderr is; nothing when logging is quieter than warnings: the CLI's ``-q``)."""

    #: Seconds between two lines in a log.
    LOG_EVERY = 5.0

    def __init__(self, enabled: bool | None):
        self._stream = sys.stderr
        isatty = getattr(self._stream, "isatty", None)
        terminal = bool(isatty and isatty())
        quiet = not logging.getLogger("fuser").isEnabledFor(logging.WARNING)
        self.enabled = (terminal and not quiet) if enabled is None else enabled
        self._log = enabled is None and not terminal and not quiet  # plain lines, now and then
        self._status = None  # rich's status line, while shown
        self._last = time.monotonic()

    def show(self, text: str) -> None:
        if self._log:
            now = time.monotonic()
            if now - self._last >= self.LOG_EVERY:
                self._stream.write(f"{text}\n")
                self._stream.flush()
                self._last = now
        elif self.enabled:
            if self._status is None:
                from rich.console import Console  # imported when a terminal shows it

                # asked for (True) whatever stderr is; by default, stderr is a terminal
                self._status = Console(file=self._stream, force_terminal=True).status(text)
                self._status.start()
            else:
                self._status.update(text)

    def clear(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
