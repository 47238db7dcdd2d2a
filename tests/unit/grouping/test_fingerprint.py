"""Error grouping: one issue per simulated error family, stable across line/column and build hashes."""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.contract import EVENT_ADAPTER, ErrorEvent, StackFrame
from pipeline.grouping import (
    Frame,
    Grouping,
    frames_from_dicts,
    group_error,
    normalize_filename,
    normalize_function,
    normalize_message,
)
from pipeline.simulate import ERROR_FAMILIES, generate_scenario

PRICE = "Cannot read properties of undefined (reading 'price')"


def frames(*in_app: tuple[str, str], vendor: str = "vendor.js", line: int = 10, col: int = 5) -> list[Frame]:
    """A vendor frame, then in-app (file, function) frames, outermost first."""
    out = [Frame(filename=f"https://shop.example.com/static/js/{vendor}", function="dispatch", lineno=1, colno=9921,
                 in_app=False)]
    out += [Frame(filename=f"https://shop.example.com/static/js/{f}", function=fn, lineno=line + i, colno=col)
            for i, (f, fn) in enumerate(in_app)]
    return out


# ---------------------------------------------------------------- the simulator's families


@pytest.fixture(scope="module")
def simulated_errors() -> list[ErrorEvent]:
    start = datetime(2026, 11, 23, 10, tzinfo=timezone.utc)
    out: list[ErrorEvent] = []
    counts: dict[str, int] = defaultdict(int)
    for seed in range(1, 20):  # a few seeds, until every family has >= 30 events
        for event in generate_scenario(150, seed=seed, start=start, malformed_ratio=0.0).events:
            if event.get("type") == "error":
                out.append(EVENT_ADAPTER.validate_python(event))
                counts[out[-1].error.tags["family"]] += 1
        if len(counts) == len(ERROR_FAMILIES) and min(counts.values()) >= 30:
            break
    return out


def test_each_simulated_family_is_exactly_one_group(simulated_errors: list[ErrorEvent]) -> None:
    by_family: dict[str, list[ErrorEvent]] = defaultdict(list)
    for event in simulated_errors:
        by_family[event.error.tags["family"]].append(event)
    assert set(by_family) == {f[0] for f in ERROR_FAMILIES}

    fingerprints: dict[str, set[str]] = {}
    for family, events in by_family.items():
        assert len(events) >= 30, family
        # the variation the grouping must see through really is there
        positions = {(f.lineno, f.colno) for e in events for f in e.error.stacktrace if f.in_app}
        assert len(positions) >= 20, family
        groups = [group_error(e.error.exception_type, e.error.message, e.error.stacktrace, e.error.fingerprint,
                              project=e.project) for e in events]
        fingerprints[family] = {g.fingerprint for g in groups}
        assert len(fingerprints[family]) == 1, (family, {g.components for g in groups})
        assert all(re.fullmatch(r"[0-9a-f]{40}", g.fingerprint) for g in groups)
    chunk_messages = {e.error.message for e in by_family["chunk-load"]}
    assert len(chunk_messages) >= 10  # "Loading chunk {n} failed." with many n, still one group

    all_fps = [fp for fps in fingerprints.values() for fp in fps]
    assert len(all_fps) == len(set(all_fps)) == len(ERROR_FAMILIES)


def test_simulated_family_titles_and_culprits(simulated_errors: list[ErrorEvent]) -> None:
    families = {f[0]: f for f in ERROR_FAMILIES}
    for event in simulated_errors:
        _, exc_type, _, filename, function = families[event.error.tags["family"]]
        g = group_error(event.error.exception_type, event.error.message, event.error.stacktrace)
        assert g.culprit == f"{function} ({filename})"
        assert g.title == f"{exc_type}: {event.error.message}"
        expected = "message" if exc_type == "ChunkLoadError" else "stacktrace"
        assert g.method == expected


# ---------------------------------------------------------------- stack trace grouping


def test_line_and_column_numbers_never_matter() -> None:
    a = group_error("TypeError", PRICE, frames(("checkout.js", "renderTotal"), line=10, col=5))
    b = group_error("TypeError", PRICE, frames(("checkout.js", "renderTotal"), line=311, col=77))
    assert a == b
    assert a.method == "stacktrace"
    assert a.components == ("project:", "frame:checkout.js renderTotal", "type:TypeError")


def test_the_message_does_not_matter_when_there_is_a_stack() -> None:
    a = group_error("TypeError", PRICE, frames(("checkout.js", "renderTotal")))
    b = group_error("TypeError", PRICE.replace("price", "total"), frames(("checkout.js", "renderTotal")))
    assert a.fingerprint == b.fingerprint


def test_a_different_in_app_function_or_file_or_type_is_another_group() -> None:
    base = group_error("TypeError", PRICE, frames(("checkout.js", "renderTotal")))
    assert group_error("TypeError", PRICE, frames(("checkout.js", "renderTax"))).fingerprint != base.fingerprint
    assert group_error("TypeError", PRICE, frames(("cart.js", "renderTotal"))).fingerprint != base.fingerprint
    assert group_error("RangeError", PRICE, frames(("checkout.js", "renderTotal"))).fingerprint != base.fingerprint
    deeper = frames(("app.js", "onClick"), ("checkout.js", "renderTotal"))
    assert group_error("TypeError", PRICE, deeper).fingerprint != base.fingerprint


def test_vendor_frames_do_not_matter() -> None:
    a = group_error("TypeError", PRICE, frames(("checkout.js", "renderTotal"), vendor="vendor.js"))
    b = group_error("TypeError", PRICE, frames(("checkout.js", "renderTotal"), vendor="react-dom.production.min.js"))
    extra_vendor = [*frames(("checkout.js", "renderTotal")),
                    Frame(filename="https://cdn.x.com/lodash.js", function="debounce", in_app=False)]
    assert a.fingerprint == b.fingerprint == group_error("TypeError", PRICE, extra_vendor).fingerprint


def test_content_hashes_of_a_new_build_do_not_matter() -> None:
    def at(url: str) -> Grouping:
        return group_error("TypeError", PRICE, [Frame(filename=url, function="renderTotal", lineno=1, colno=3)])

    assert at("https://cdn.x.com/static/js/main.3f9a1c2b.chunk.js?v=2").fingerprint \
        == at("https://cdn.x.com/static/js/main.9be07d41.chunk.js#x").fingerprint \
        == at("/static/js/main.chunk.js").fingerprint
    assert at("/assets/app-Dx8Kq2a1.js").fingerprint == at("/assets/app-BQxkJaPe.js").fingerprint
    assert at("/assets/app-Dx8Kq2a1.js").culprit == "renderTotal (app.js)"


@pytest.mark.parametrize(("url", "name"), [
    ("https://cdn.x.com/static/js/main.3f9a1c2b.chunk.js?v=2", "main.chunk.js"),
    ("https://cdn.x.com/assets/app-Dx8Kq2a1.js", "app.js"),
    ("/assets/index-B_x-3kQ2.js", "assets/index.js"),  # a shared name keeps its directory
    ("chunk-5XRF2ZQ7.js", "chunk.js"),
    ("app.3f9a1c2b4d5e6f7a8b9c.js", "app.js"),
    ("webpack:///./src/checkout.js", "checkout.js"),
    ("C:\\app\\src\\cart.js", "cart.js"),
    ("https://shop.example.com/static/js/checkout.js", "checkout.js"),
    ("my-component.js", "my-component.js"),  # words are not hashes
    ("foo-useState.js", "foo-useState.js"),
    ("react-dom.production.min.js", "react-dom.production.min.js"),
    ("<anonymous>", ""),
    (None, ""),
])
def test_normalize_filename(url: str | None, name: str) -> None:
    assert normalize_filename(url) == name


@pytest.mark.parametrize(("raw", "name"), [
    ("renderTotal", "renderTotal"), ("Cart.add", "Cart.add"), ("<anonymous>", ""), ("?", ""),
    ("Object.<anonymous>", ""), ("async renderTotal", "renderTotal"), ("new Cart", "Cart"),
    ("Cart.add [as onClick]", "Cart.add"), ("renderTotal/<", "renderTotal"), ("Object.track", "track"),
    (None, ""),
])
def test_normalize_function(raw: str | None, name: str) -> None:
    assert normalize_function(raw) == name


def test_module_wins_over_file_and_context_line_only_without_function() -> None:
    with_module = group_error("Error", "x", [Frame(filename="/a/b.js", module="shop/cart", function="add")])
    assert with_module.components[1] == "frame:shop/cart add"
    ctx = [Frame(filename="/a/cart.js", function="<anonymous>", context_line="  total  +=  item.price;")]
    assert group_error("Error", "x", ctx).components[1] == "frame:cart.js total += item.price;"
    named = [Frame(filename="/a/cart.js", function="add", context_line="total += item.price;")]
    other_line = [Frame(filename="/a/cart.js", function="add", context_line="return total;")]
    assert group_error("Error", "x", named).fingerprint == group_error("Error", "x", other_line).fingerprint
    minified = [Frame(filename="/a/cart.js", function=None, context_line="x" * 500)]
    assert group_error("Error", "x", minified).components[1] == "frame:cart.js"


def test_anonymous_in_app_frames_without_file_fall_back_to_message() -> None:
    g = group_error("Error", "boom 42", [Frame(filename="<anonymous>", function="?")])
    assert g.method == "message"
    assert g.culprit == ""


# ---------------------------------------------------------------- message grouping


def test_no_in_app_frames_groups_by_type_and_normalized_message() -> None:
    vendor_only = [Frame(filename="https://cdn.x.com/vendor.js", function="dispatch", in_app=False)]
    a = group_error("Error", "Request 123 failed for user 'bob'", vendor_only)
    b = group_error("Error", "Request 456 failed for user 'alice'", [])
    assert a.method == b.method == "message"
    assert a.fingerprint == b.fingerprint
    assert a.components == ("project:", "type:Error", "message:Request <num> failed for user <quoted>")
    assert a.culprit == ""
    assert group_error("TypeError", "Request 1 failed for user 'x'", []).fingerprint != a.fingerprint
    assert group_error("Error", "Request 1 timed out", []).fingerprint != a.fingerprint


@pytest.mark.parametrize(("raw", "normalized"), [
    ("Order 0b5b0f0e-8c1d-4c57-9a55-3f7d3a3c2a11 not found", "Order <uuid> not found"),
    ("No account for jane.doe+shop@example.com", "No account for <email>"),
    ("Failed to load https://cdn.x.com/a.js?v=3.", "Failed to load <url>."),
    ("socket wss://rt.x.com/ws closed", "socket <url> closed"),
    ("connect to 10.0.0.12 failed", "connect to <ip> failed"),
    ("host 2001:db8::8a2e:370:7334 down", "host <ip> down"),
    ("host fe80::1 down", "host <ip> down"),
    ("bad pointer 0x7ffe", "bad pointer <hex>"),
    ("token 3f9a1c2b4d5e not valid", "token <hex> not valid"),
    ("Cannot read properties of undefined (reading 'price')", "Cannot read properties of undefined (reading <quoted>)"),
    ('Unexpected token "}" in `JSON.parse`', "Unexpected token <quoted> in <quoted>"),
    ("Can't find variable: gtag", "Can't find variable: gtag"),
    ("Loading chunk 42 failed after 1.5s", "Loading chunk <num> failed after <num>s"),
    ("release shop@2.14.0 crashed", "release shop@<num> crashed"),
    ("E1234 in utf8", "E1234 in utf8"),
    ("at 10:30:00", "at <num>:<num>:<num>"),
    ("  many \n\t spaces  ", "many spaces"),
    # the order matters: a URL holding an IP and a number is one <url>; a UUID is not a <hex>
    ("GET http://10.0.0.1:8080/x/42 for 0b5b0f0e-8c1d-4c57-9a55-3f7d3a3c2a11",
     "GET <url> for <uuid>"),
])
def test_normalize_message(raw: str, normalized: str) -> None:
    assert normalize_message(raw) == normalized


def test_normalize_message_truncates_to_512() -> None:
    assert len(normalize_message("word " * 500)) == 512


# ---------------------------------------------------------------- chunk load errors


def test_chunk_load_errors_are_one_group_whatever_the_chunk_or_stack() -> None:
    groups = [group_error("ChunkLoadError", f"Loading chunk {n} failed.\n(error: https://x.com/{n}.js)",
                          frames(("runtime.js", "requireEnsure"), ("app.js", f"route{n}"), line=n), project="shop")
              for n in range(10, 40)]
    groups.append(group_error("Error", "Loading CSS chunk 7 failed. (https://x.com/7.css)", [], project="shop"))
    groups.append(group_error("Error", "Loading chunk vendors-node_modules_x failed.", [], project="shop"))
    assert len({g.fingerprint for g in groups}) == 1
    assert groups[0].method == "message"
    assert groups[0].components == ("project:shop", "chunk-load")
    assert groups[0].title == "ChunkLoadError: Loading chunk 10 failed."
    assert group_error("ChunkLoadError", "Loading chunk 1 failed.", [], project="blog").fingerprint \
        != groups[0].fingerprint
    # a message that merely talks about a chunk is grouped normally
    assert group_error("Error", "Loading chunk metadata failed", []).method == "message"
    assert group_error("Error", "Loading chunk metadata failed", []).components[1] == "type:Error"


# ---------------------------------------------------------------- SDK fingerprint


def test_sdk_fingerprint_overrides_the_stack() -> None:
    a = group_error("TypeError", PRICE, frames(("checkout.js", "renderTotal")), ["checkout", "price"], project="shop")
    b = group_error("RangeError", "other", frames(("cart.js", "add")), ["checkout", "price"], project="shop")
    assert a.method == b.method == "sdk"
    assert a.fingerprint == b.fingerprint
    assert a.components == ("project:shop", "sdk:checkout", "sdk:price")
    assert group_error("TypeError", PRICE, [], ["checkout", "total"], project="shop").fingerprint != a.fingerprint
    assert group_error("TypeError", PRICE, [], ["checkout", "price"], project="blog").fingerprint != a.fingerprint
    # title and culprit still come from the error itself
    assert a.culprit == "renderTotal (checkout.js)"
    assert a.title == f"TypeError: {PRICE}"


def test_sdk_fingerprint_default_variable_expands_to_the_default_grouping() -> None:
    stack = frames(("checkout.js", "renderTotal"))
    default = group_error("TypeError", PRICE, stack)
    alone = group_error("TypeError", PRICE, stack, ["{{ default }}"])
    assert alone.method == "sdk"
    assert alone.fingerprint == default.fingerprint  # ["{{ default }}"] is the default grouping
    split = group_error("TypeError", PRICE, stack, ["{{ default }}", "tenant-a"])
    assert split.components == (*default.components, "sdk:tenant-a")
    assert split.fingerprint != group_error("TypeError", PRICE, stack, ["{{default}}", "tenant-b"]).fingerprint
    moved = group_error("TypeError", PRICE, frames(("checkout.js", "renderTotal"), line=99), ["{{default}}", "tenant-a"])
    assert moved.fingerprint == split.fingerprint


def test_empty_sdk_fingerprint_is_ignored() -> None:
    stack = frames(("checkout.js", "renderTotal"))
    assert group_error("TypeError", PRICE, stack, []) == group_error("TypeError", PRICE, stack, None)
    assert group_error("TypeError", PRICE, stack, []).method == "stacktrace"


# ---------------------------------------------------------------- title, culprit, inputs


def test_title_and_culprit() -> None:
    stack = frames(("app.js", "onClick"), ("checkout.js", "renderTotal"))
    stack.append(Frame(filename="https://cdn.x.com/lodash.js", function="get", in_app=False))  # innermost, vendor
    g = group_error("TypeError", f"{PRICE}\n    at renderTotal (checkout.js:12:5)", stack)
    assert g.title == f"TypeError: {PRICE}"
    assert g.culprit == "renderTotal (checkout.js)"
    assert group_error("Error", "", []).title == "Error"
    assert group_error("", "boom", []).title == "Error: boom"
    long = group_error("Error", "x" * 500, [])
    assert len(long.title) == 200 and long.title.endswith("…")
    # contact data in the title is kept as sent (scrubbing happens upstream)
    assert group_error("Error", "no user bob@x.com at 10.0.0.1", []).title == "Error: no user bob@x.com at 10.0.0.1"
    no_function = group_error("Error", "x", [Frame(filename="/static/js/app-Dx8Kq2a1.js", function="<anonymous>")])
    assert no_function.culprit == "app.js"


def test_contract_frames_and_dicts_group_the_same() -> None:
    raw = [{"filename": "https://x.com/static/js/vendor.js", "function": "dispatch", "lineno": 1, "in_app": False},
           {"filename": "https://x.com/static/js/api.js", "function": "request", "lineno": 12, "colno": 7}]
    from_dicts = group_error("TypeError", "Failed to fetch", frames_from_dicts(raw))
    from_contract = group_error("TypeError", "Failed to fetch", [StackFrame.model_validate(f) for f in raw])
    plain = group_error("TypeError", "Failed to fetch", raw)  # type: ignore[arg-type]
    assert from_dicts == from_contract == plain
    assert from_dicts.culprit == "request (api.js)"
    assert frames_from_dicts(raw)[1].in_app is True  # the contract's default


def test_the_package_is_pure() -> None:
    """Stdlib and the package itself only: no I/O library (Kafka, ClickHouse, aiohttp) and no third party."""
    root = Path(__file__).resolve().parents[3] / "pipeline" / "grouping"
    allowed = set(sys.stdlib_module_names) | {"pipeline"}
    for path in sorted(root.glob("*.py")):
        roots: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
        assert roots <= allowed, (path.name, roots - allowed)
        pipeline_imports: list[Any] = [n for n in ast.walk(ast.parse(path.read_text()))
                                       if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("pipeline")]
        assert all((n.module or "").startswith("pipeline.grouping") for n in pipeline_imports), path.name
