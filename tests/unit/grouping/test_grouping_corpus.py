"""Grouping corpus: stack traces as bundlers and platforms really name their files, two releases each.

Each row is one error seen in release A and again in release B (new content hashes, build ids, version
folders) and says whether the two must be one issue. Same function in the same source file: one issue
across releases. Another file or another function: another issue. The rules: docs/grouping.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pipeline.grouping import frames_from_dicts, group_error, normalize_filename


def js(url: str, function: str = "renderTotal", line: int = 1, col: int = 1234) -> list[dict[str, Any]]:
    """A browser stack (outermost first): a vendor frame, then the app's frame at ``url``."""
    return [
        {"filename": "https://shop.example.com/assets/vendor.js", "function": "dispatch", "lineno": 2,
         "colno": 9921, "in_app": False},
        {"filename": url, "function": function, "lineno": line, "colno": col, "in_app": True},
    ]


@dataclass(frozen=True)
class Case:
    name: str
    release_a: list[dict[str, Any]]
    release_b: list[dict[str, Any]]
    same_issue: bool
    exception_type: str = "TypeError"


ORIGIN = "https://shop.example.com"

CASES = [
    # ---- the same file in two releases: one issue
    Case("webpack [contenthash] 20 hex (default)",
         js(f"{ORIGIN}/static/js/main.3f9a1c2b4d5e6f7a8b9c.js"), js(f"{ORIGIN}/static/js/main.0d1e2f3a4b5c6d7e8f90.js",
                                                                      line=3, col=88), True),
    Case("webpack [contenthash:8]", js(f"{ORIGIN}/static/js/main.3f9a1c2b.js"),
         js(f"{ORIGIN}/static/js/main.9be07d41.js"), True),
    Case("webpack [contenthash:7] short hash", js(f"{ORIGIN}/static/js/main.8f3a2c1.js"),
         js(f"{ORIGIN}/static/js/main.1d0e9b7.js"), True),
    Case("create-react-app numbered chunk", js(f"{ORIGIN}/static/js/787.8f3a2c1d.chunk.js"),
         js(f"{ORIGIN}/static/js/787.0b1c2d3e.chunk.js"), True),
    Case("webpack 4 split chunk with ~", js(f"{ORIGIN}/static/js/vendors~main.8f3a2c1d.chunk.js"),
         js(f"{ORIGIN}/static/js/vendors~main.77aa01fe.chunk.js"), True),
    Case("Vite/Rollup name-[hash] base64url", js(f"{ORIGIN}/assets/index-DiwrgTda.js"),
         js(f"{ORIGIN}/assets/index-B_x-3kQ2.js"), True),
    Case("Vite/Rollup component chunk, hash with - and _", js(f"{ORIGIN}/assets/Checkout-BQxkJaPe.js"),
         js(f"{ORIGIN}/assets/Checkout-C-9_zQ1a.js"), True),
    Case("Rollup 2 name-[hash] hex", js(f"{ORIGIN}/dist/bundle-5f2a3c1d.js"), js(f"{ORIGIN}/dist/bundle-a0b9c8d7.js"),
         True),
    Case("esbuild name-[hash] base32", js(f"{ORIGIN}/out/chunk-5XRF2ZQ7.js"), js(f"{ORIGIN}/out/chunk-QJVHMXEA.js"),
         True),
    Case("Parcel 2 name.[hash]", js(f"{ORIGIN}/index.5f2a3c1d.js"), js(f"{ORIGIN}/index.e31bb0bc.js"), True),
    Case("Parcel 1 src.[hash]", js(f"{ORIGIN}/src.e31bb0bc.js"), js(f"{ORIGIN}/src.4c5d6e7f.js"), True),
    Case("Angular main.[16 hex]", js(f"{ORIGIN}/main.3f9a1c2b4d5e6f70.js"), js(f"{ORIGIN}/main.ab12cd34ef56ab78.js"),
         True),
    Case("Next.js pages/_app-<hash>", js(f"{ORIGIN}/_next/static/chunks/pages/_app-3f9a1b2c4d5e6f70.js"),
         js(f"{ORIGIN}/_next/static/chunks/pages/_app-0a1b2c3d4e5f6a7b.js"), True),
    Case("Next.js static/chunks/<n>-<hash>", js(f"{ORIGIN}/_next/static/chunks/796-b1c2d3e4f5a60718.js"),
         js(f"{ORIGIN}/_next/static/chunks/796-0f1e2d3c4b5a6978.js"), True),
    Case("Next.js app router page-<hash>", js(f"{ORIGIN}/_next/static/chunks/app/cart/page-0a1b2c3d4e5f6a7b.js"),
         js(f"{ORIGIN}/_next/static/chunks/app/cart/page-99aa88bb77cc66dd.js"), True),
    Case("Next.js /_next/static/<buildId>/", js(f"{ORIGIN}/_next/static/B1vHq8JQ2o9kzTq4xQd1a/pages/index.js"),
         js(f"{ORIGIN}/_next/static/x7Rt0PqLm3NvWz9Yk2Hb5/pages/index.js"), True),
    Case("?v= cache buster and # fragment", js(f"{ORIGIN}/js/app.js?v=1.4.2"), js(f"{ORIGIN}/js/app.js?v=1.5.0#main"),
         True),
    Case("CDN version folder", js("https://cdn.example.com/widget/v1.4.2/index.js"),
         js("https://cdn.example.com/widget/v1.5.0/index.js"), True),
    Case("CDN package@version", js("https://unpkg.com/shop-widget@1.4.2/dist/widget.min.js"),
         js("https://unpkg.com/shop-widget@1.5.0/dist/widget.min.js"), True),
    Case("timestamp cache buster in the name", js(f"{ORIGIN}/js/app.1701234567.js"),
         js(f"{ORIGIN}/js/app.1701299999.js"), True),
    Case("line and column move with the build", js(f"{ORIGIN}/js/app.8f3a2c1d.js", line=1, col=10),
         js(f"{ORIGIN}/js/app.0b1c2d3e.js", line=1, col=4410), True),
    Case("Vite dev server ?t= timestamp", js("http://localhost:5173/src/cart/Total.tsx?t=1700000000000"),
         js("http://localhost:5173/src/cart/Total.tsx?t=1700000999999"), True),
    # ---- other platforms (module or file) across releases
    Case("Node: module from the SDK, release path changes",
         [{"filename": "/srv/releases/20261201/dist/cart.js", "module": "dist:cart", "function": "addItem"}],
         [{"filename": "/srv/releases/20261208/dist/cart.js", "module": "dist:cart", "function": "addItem"}], True),
    Case("Java: module and function",
         [{"filename": "Cart.java", "module": "com.shop.Cart", "function": "add", "lineno": 41}],
         [{"filename": "Cart.java", "module": "com.shop.Cart", "function": "add", "lineno": 57}], True,
         "java.lang.IllegalStateException"),
    Case("Go: module cache path with version",
         [{"abs_path": "/go/pkg/mod/github.com/shop/api@v1.4.2/cart.go",
           "filename": "/go/pkg/mod/github.com/shop/api@v1.4.2/cart.go", "function": "(*Cart).Add"}],
         [{"abs_path": "/go/pkg/mod/github.com/shop/api@v1.5.0/cart.go",
           "filename": "/go/pkg/mod/github.com/shop/api@v1.5.0/cart.go", "function": "(*Cart).Add"}], True,
         "*errors.errorString"),
    Case("Rust: file and path function", [{"filename": "src/cart.rs", "function": "shop::cart::add"}],
         [{"filename": "src/cart.rs", "function": "shop::cart::add", "lineno": 99}], True, "panic"),
    Case("Python: module", [{"filename": "shop/cart.py", "module": "shop.cart", "function": "add"}],
         [{"filename": "shop/cart.py", "module": "shop.cart", "function": "add", "lineno": 3}], True, "KeyError"),
    # ---- different files or functions: different issues, whatever the hashes
    Case("main.js vs vendor.js", js(f"{ORIGIN}/static/js/main.3f9a1c2b.js"), js(f"{ORIGIN}/static/js/vendor.3f9a1c2b.js"),
         False),
    Case("Next.js app router: cart/page vs checkout/page",
         js(f"{ORIGIN}/_next/static/chunks/app/cart/page-0a1b2c3d4e5f6a7b.js"),
         js(f"{ORIGIN}/_next/static/chunks/app/checkout/page-0a1b2c3d4e5f6a7b.js"), False),
    Case("Next.js pages: products/[id] vs orders/[id]",
         js(f"{ORIGIN}/_next/static/chunks/pages/products/[id]-a1b2c3d4e5f60718.js"),
         js(f"{ORIGIN}/_next/static/chunks/pages/orders/[id]-a1b2c3d4e5f60718.js"), False),
    Case("source index.js in two folders", js("webpack:///./src/components/Button/index.js"),
         js("webpack:///./src/components/Modal/index.js"), False),
    Case("a word after the name is not a hash: index-Button vs index-Modal",
         js(f"{ORIGIN}/js/index-Button.js"), js(f"{ORIGIN}/js/index-Modal.js"), False),
    Case("camel-case words are not hashes: index-CartItem vs index-CartList",
         js(f"{ORIGIN}/js/index-CartItem.js"), js(f"{ORIGIN}/js/index-CartList.js"), False),
    Case("kebab-case words are not hashes: run-get-user vs run-set-user",
         js(f"{ORIGIN}/js/run-get-user.js"), js(f"{ORIGIN}/js/run-set-user.js"), False),
    Case("lower-case 8-letter words are not hashes: app-settings vs app-checkout",
         js(f"{ORIGIN}/js/app-settings.js"), js(f"{ORIGIN}/js/app-checkout.js"), False),
    Case("same file, another function", js(f"{ORIGIN}/static/js/main.3f9a1c2b.js", "renderTotal"),
         js(f"{ORIGIN}/static/js/main.9be07d41.js", "renderTax"), False),
    Case("Next.js numbered chunks differ", js(f"{ORIGIN}/_next/static/chunks/796-b1c2d3e4f5a60718.js"),
         js(f"{ORIGIN}/_next/static/chunks/231-b1c2d3e4f5a60718.js"), False),
    Case("Java: another class", [{"module": "com.shop.Cart", "function": "add"}],
         [{"module": "com.shop.Wishlist", "function": "add"}], False, "java.lang.IllegalStateException"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_grouping_corpus(case: Case) -> None:
    a = group_error(case.exception_type, "boom", frames_from_dicts(case.release_a), project="shop")
    b = group_error(case.exception_type, "boom", frames_from_dicts(case.release_b), project="shop")
    assert a.method == b.method == "stacktrace"
    if case.same_issue:
        assert a.fingerprint == b.fingerprint, (a.components, b.components)
        assert a.culprit == b.culprit
    else:
        assert a.fingerprint != b.fingerprint, a.components


@pytest.mark.parametrize(("url", "name"), [
    ("https://shop.example.com/static/js/main.8f3a2c1.js", "main.js"),
    ("https://shop.example.com/assets/index-DiwrgTda.js", "assets/index.js"),
    ("https://shop.example.com/_next/static/chunks/pages/_app-3f9a1b2c4d5e6f70.js", "_app.js"),
    ("https://shop.example.com/_next/static/chunks/796-b1c2d3e4f5a60718.js", "796.js"),
    ("https://shop.example.com/_next/static/chunks/app/cart/page-0a1b2c3d4e5f6a7b.js", "cart/page.js"),
    ("https://cdn.example.com/widget/v1.4.2/index.js", "widget/index.js"),
    ("https://shop.example.com/out/chunk-5XRF2ZQ7.js", "chunk.js"),
    ("https://shop.example.com/3f9a1c2b4d5e6f70.js", "<hash>.js"),  # a name that is only a hash
    ("/js/index-Button.js", "index-Button.js"),
    ("/js/app-Strength.js", "app.js"),  # known false positive: 4 consonants in a row read as random
])
def test_corpus_file_names(url: str, name: str) -> None:
    assert normalize_filename(url) == name
