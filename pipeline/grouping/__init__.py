"""Error grouping and noise filtering: pure functions (stdlib only, no I/O).

* :func:`group_error` -> :class:`Grouping` (fingerprint, method, title, culprit, components): which issue an
  error belongs to, Sentry-like (SDK fingerprint, else in-app stack frames, else normalized message).
* :func:`noise_reason` -> why an error is known noise (browser extensions, ResizeObserver loops,
  ``Script error.`` without a stack), or None.
"""

from pipeline.grouping.fingerprint import (
    DEFAULT_VARIABLE,
    Frame,
    FrameLike,
    Grouping,
    default_components,
    frames_from_dicts,
    group_error,
    is_chunk_load_error,
    normalize_context_line,
    normalize_filename,
    normalize_function,
    normalize_message,
)
from pipeline.grouping.noise import DEFAULT_NOISE_RULES, EXTENSION_SCHEMES, NoiseRules, noise_reason

__all__ = [
    "DEFAULT_NOISE_RULES", "DEFAULT_VARIABLE", "EXTENSION_SCHEMES", "Frame", "FrameLike", "Grouping", "NoiseRules",
    "default_components", "frames_from_dicts", "group_error", "is_chunk_load_error", "normalize_context_line",
    "normalize_filename", "normalize_function", "normalize_message", "noise_reason",
]
