from __future__ import annotations

import pytest

from pipeline.sessions.clicks import Click, DeadClickRule, RageClickRule, dead_click_kind, detect_rage_clicks


def burst(gaps_ms: list[int], dxs: list[float] | None = None, selector: str = "#pay") -> list[Click]:
    t, x, out = 0, 100.0, [Click(0, selector, x=100.0, y=50.0)]
    for i, gap in enumerate(gaps_ms):
        t += gap
        x += (dxs[i] if dxs else 0)
        out.append(Click(t, selector, x=x, y=50.0))
    return out


@pytest.mark.parametrize(("gap", "rage"), [(999, 1), (1000, 1), (1001, 0)])
def test_gap_threshold_is_inclusive(gap: int, rage: int) -> None:
    assert len(detect_rage_clicks(burst([gap, gap]))) == rage


@pytest.mark.parametrize(("dx", "rage"), [(29, 1), (30, 1), (31, 0)])
def test_distance_threshold_is_manhattan_and_inclusive(dx: float, rage: int) -> None:
    assert len(detect_rage_clicks(burst([200, 200], [dx, -dx]))) == rage
    # Manhattan: 20 + 11 = 31 px apart breaks even though each axis alone is small
    clicks = [Click(0, "#a", x=0, y=0), Click(100, "#a", x=20, y=11), Click(200, "#a", x=40, y=22)]
    assert detect_rage_clicks(clicks) == []


def test_burst_of_six_counts_once_with_its_final_count() -> None:
    [rage] = detect_rage_clicks(burst([300] * 5))
    assert rage.clicks == 6 and rage.first_ts_ms == 0 and rage.detected_ts_ms == 600


def test_two_clicks_are_not_rage_and_other_element_breaks_burst() -> None:
    assert detect_rage_clicks(burst([100])) == []
    mixed = [Click(0, "#a"), Click(100, "#a"), Click(200, "#b"), Click(300, "#a")]
    assert detect_rage_clicks(mixed) == []


def test_two_bursts_separated_by_a_pause_count_twice() -> None:
    clicks = burst([100, 100]) + [Click(c.ts_ms + 5000, c.selector, x=c.x, y=c.y) for c in burst([100, 100])]
    assert [r.clicks for r in detect_rage_clicks(clicks)] == [3, 3]


def test_custom_thresholds() -> None:
    rule = RageClickRule(min_clicks=4, max_gap_ms=500, max_distance_px=10)
    assert detect_rage_clicks(burst([400, 400]), rule) == []
    assert len(detect_rage_clicks(burst([400, 400, 400]), rule)) == 1


@pytest.mark.parametrize(
    ("click", "kind"),
    [
        (Click(0, "#b", observed=True), "unresponsive"),
        (Click(0, "#b", observed=True, interactive=False), "non_interactive"),
        (Click(0, "#b", observed=True, dom_mutation_ms=2500), None),
        (Click(0, "#b", observed=True, dom_mutation_ms=2501), "unresponsive"),
        (Click(0, "#b", observed=True, navigated=True), None),
        (Click(0, "#b", observed=True, scrolled=True), None),
        (Click(0, "#b", observed=True, observed_for_ms=1200), None),  # page left before the window ended
        (Click(0, "#b", observed=False), None),  # no observation: undecidable
    ],
)
def test_dead_click_decision(click: Click, kind: str | None) -> None:
    assert dead_click_kind(click, DeadClickRule(window_ms=2500)) == kind
