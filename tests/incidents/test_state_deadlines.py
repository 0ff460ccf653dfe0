"""The table of state breach deadlines, the practice's file over it, and the shortest rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.cli import main
from app.core.config import get_settings
from app.incidents import state_deadlines
from app.incidents.state_deadlines import DEFAULTS, HIPAA, Deadline, DeadlineFileError

codes = st.from_regex(r"\AUS-[A-Z]{2}\Z")
entries = st.builds(Deadline, codes, st.integers(min_value=1, max_value=365), st.just("§"))


def test_the_shipped_table_has_the_30_day_states_each_with_a_source() -> None:
    table = state_deadlines.table(DEFAULTS)
    for code in ("US-CO", "US-FL", "US-WA"):
        assert table[code].days == 30
    assert table["US-CO"].source == "Colo. Rev. Stat. 6-1-716(2)"
    assert table["US-FL"].source == "Fla. Stat. 501.171(4)(a)"
    assert len(table) == len(DEFAULTS)  # each jurisdiction once
    assert all(entry.source and 0 < entry.days < HIPAA.days for entry in DEFAULTS)


@given(st.lists(entries, unique_by=lambda e: e.jurisdiction), st.lists(codes))
def test_the_shortest_deadline_is_the_fewest_days_that_applies(
    table_entries: list[Deadline], affected: list[str]
) -> None:
    table = state_deadlines.table(table_entries)
    rule = state_deadlines.shortest(affected, table)
    applying = [HIPAA] + [table[code] for code in affected if code in table]
    assert rule.days == min(entry.days for entry in applying)
    assert rule in applying
    assert rule.days <= HIPAA.days
    # Neither the order nor repeats of the affected accounts change it.
    assert state_deadlines.shortest(list(reversed(affected)) * 2, table) == rule
    # Adding a jurisdiction can only shorten it.
    for code in table:
        assert state_deadlines.shortest([*affected, code], table).days <= rule.days


def test_no_jurisdiction_or_an_unlisted_one_is_hipaas_60_days() -> None:
    table = state_deadlines.table(DEFAULTS)
    assert state_deadlines.shortest([], table) == HIPAA
    assert state_deadlines.shortest(["US-NY", "FR-75"], table) == HIPAA
    assert state_deadlines.shortest(["US-VT", "US-CO", "US-NY"], table).jurisdiction == "US-CO"


def test_the_practices_file_overrides_and_extends_the_defaults() -> None:
    text = json.dumps(
        [
            {"jurisdiction": "US-CO", "days": 20, "source": "Counsel's reading"},
            {"jurisdiction": "US-NY", "days": 10, "source": "Practice policy"},
        ]
    )
    table = state_deadlines.parse(text)
    assert table["US-CO"] == Deadline("US-CO", 20, "Counsel's reading")
    assert table["US-NY"] == Deadline("US-NY", 10, "Practice policy")
    assert table["US-FL"].days == 30


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "not JSON"),
        ('{"US-CO": 30}', "list"),
        ('[{"jurisdiction": "us-co", "days": 30, "source": "x"}]', "0.jurisdiction"),
        ('[{"jurisdiction": "US-CO", "days": 0, "source": "x"}]', "0.days"),
        ('[{"jurisdiction": "US-CO", "days": "30", "source": "x"}]', "0.days"),
        ('[{"jurisdiction": "US-CO", "days": 30}]', "0.source"),
        ('[{"jurisdiction": "US-CO", "days": 30, "source": "x", "more": 1}]', "0.more"),
        (
            '[{"jurisdiction": "US-CO", "days": 30, "source": "x"},'
            ' {"jurisdiction": "US-CO", "days": 20, "source": "y"}]',
            "listed twice",
        ),
    ],
)
def test_a_bad_file_is_refused_with_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(DeadlineFileError) as caught:
        state_deadlines.parse(text)
    assert why in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_file_stops_the_server_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "deadlines.json"
    bad.write_text('[{"jurisdiction": "Colorado", "days": 30, "source": "x"}]')
    monkeypatch.setenv("CONFIDE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CONFIDE_BREACH_DEADLINES_FILE", str(bad))
    get_settings.cache_clear()
    try:
        assert main(["serve"]) == 2
        missing = tmp_path / "nowhere.json"
        monkeypatch.setenv("CONFIDE_BREACH_DEADLINES_FILE", str(missing))
        get_settings.cache_clear()
        assert main(["serve"]) == 2
    finally:
        get_settings.cache_clear()
    assert not (tmp_path / "data").exists()  # refused before anything was made
    first, second = capsys.readouterr().err.splitlines()
    assert first.startswith(f"confide: CONFIDE_BREACH_DEADLINES_FILE: {bad}: 0.jurisdiction: ")
    assert second == (
        f"confide: CONFIDE_BREACH_DEADLINES_FILE: cannot read {missing}: No such file or directory"
    )
