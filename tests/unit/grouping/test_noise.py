"""Known noise: browser extensions, ResizeObserver loops, cross-origin 'Script error.' without a stack."""

from __future__ import annotations

import pytest

from pipeline.contract import StackFrame
from pipeline.grouping import Frame, NoiseRules, frames_from_dicts, noise_reason

APP = [Frame(filename="https://shop.example.com/static/js/checkout.js", function="renderTotal", lineno=3)]


@pytest.mark.parametrize("url", [
    "chrome-extension://abcdefghijklmnop/content.js", "moz-extension://1234-5678/inject.js",
    "safari-extension://com.x.ext-ABC/script.js", "safari-web-extension://ABCD-1234/content.js",
    "ms-browser-extension://ext/x.js", "webkit-masked-url://hidden/", "  Chrome-Extension://abc/c.js",
])
def test_browser_extension_frames_are_noise(url: str) -> None:
    stack = [*APP, Frame(filename=url, function="inject", in_app=False)]
    assert noise_reason("TypeError", "x is undefined", stack) == "browser-extension"
    assert noise_reason("TypeError", "x is undefined", stack, NoiseRules(drop_browser_extensions=False)) is None


def test_app_frames_and_extension_urls_elsewhere_are_not_extension_noise() -> None:
    assert noise_reason("TypeError", "x is undefined", APP) is None
    # only the frame's own file counts, not a mention in the message or a path segment
    assert noise_reason("Error", "blocked chrome-extension://abc/x.js", APP) is None
    assert noise_reason("Error", "x", [Frame(filename="https://x.com/chrome-extension/a.js")]) is None


@pytest.mark.parametrize("message", [
    "ResizeObserver loop limit exceeded",
    "ResizeObserver loop completed with undelivered notifications.",
    "Uncaught Error: ResizeObserver loop limit exceeded",
])
def test_resize_observer_loop_is_noise(message: str) -> None:
    assert noise_reason("Error", message, []) == "resize-observer-loop"
    assert noise_reason("Error", message, APP) == "resize-observer-loop"
    assert noise_reason("Error", message, [], NoiseRules(drop_resize_observer=False)) is None


def test_other_resize_observer_errors_are_kept() -> None:
    assert noise_reason("TypeError", "ResizeObserver is not defined", []) is None


@pytest.mark.parametrize("message", ["Script error.", "Script error", " Script error. "])
def test_script_error_without_stack_is_noise(message: str) -> None:
    assert noise_reason("Error", message, []) == "script-error-no-stack"
    assert noise_reason("", message, [Frame()]) == "script-error-no-stack"  # an empty placeholder frame
    assert noise_reason("Error", message, [], NoiseRules(drop_script_error_without_stack=False)) is None


def test_script_error_with_a_stack_or_other_text_is_kept() -> None:
    assert noise_reason("Error", "Script error.", APP) is None
    assert noise_reason("Error", "Script error in checkout", []) is None


def test_ordinary_errors_are_kept() -> None:
    assert noise_reason("TypeError", "Cannot read properties of undefined (reading 'price')", APP) is None
    assert noise_reason("ChunkLoadError", "Loading chunk 42 failed.", []) is None


def test_optional_ignore_lists() -> None:
    rules = NoiseRules(ignored_messages=("fb_xd_fragment", ""), ignored_exception_types=("AbortError",))
    assert noise_reason("AbortError", "The user aborted a request.", APP, rules) == "ignored-type"
    assert noise_reason("Error", "fb_xd_fragment is not defined", APP, rules) == "ignored-message"
    assert noise_reason("Error", "anything", APP, rules) is None  # an empty substring matches nothing
    assert noise_reason("AbortError", "The user aborted a request.", APP) is None  # off by default


def test_contract_frames_and_dicts_work() -> None:
    raw = [{"filename": "chrome-extension://abc/content.js", "function": "x", "in_app": False}]
    for stack in (raw, frames_from_dicts(raw), [StackFrame.model_validate(f) for f in raw]):
        assert noise_reason("Error", "boom", stack) == "browser-extension"  # type: ignore[arg-type]
