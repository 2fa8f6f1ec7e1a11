import pytest

from aimc_lsh.studies.cli import (
    StudyParser,
    UsageError,
    format_duration,
    parse_duration,
    parse_durations,
    parse_float_list,
    parse_int_list,
    parse_name_list,
)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("1", 1.0),
        ("1s", 1.0),
        ("2min", 120.0),
        ("1h", 3600.0),
        ("1.5d", 129_600.0),
        ("1w", 604_800.0),
        ("1mo", 2_592_000.0),
        ("10y", 315_360_000.0),
        ("1e3", 1000.0),
        (" 0 ", 0.0),
    ],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1 parsec", "abc", "1hh"])
def test_parse_duration_rejects_garbage(text):
    with pytest.raises(UsageError, match="cannot read time"):
        parse_duration(text)


def test_negative_time_is_named():
    with pytest.raises(UsageError, match="negative"):
        parse_duration("-1h")


def test_format_duration_round_trips_the_defaults():
    for label in ("1s", "1h", "1d", "1w", "1mo", "1y", "10y", "90s", "2min"):
        assert format_duration(parse_duration(label)) == label
    assert format_duration(1.5) == "1.5s"


def test_duration_lists():
    assert parse_durations("1d,1s,1h") == [1.0, 3600.0, 86400.0]
    for bad in ("", "1s,,1h", "1s,1s", "1h,3600"):
        with pytest.raises(UsageError):
            parse_durations(bad)


def test_number_and_name_lists():
    assert parse_int_list("0,1,5", "seed", minimum=0) == [0, 1, 5]
    assert parse_float_list("0,0.5", "scale", minimum=0.0) == [0.0, 0.5]
    assert parse_name_list("b,a", "placement", ["a", "b"]) == ["b", "a"]
    with pytest.raises(UsageError, match="below the minimum"):
        parse_int_list("-1", "seed", minimum=0)
    with pytest.raises(UsageError, match="not a number"):
        parse_float_list("x", "scale")
    with pytest.raises(UsageError, match="unknown placement c; allowed: a, b"):
        parse_name_list("a,c", "placement", ["a", "b"])


def test_parser_errors_are_one_line(capsys):
    parser = StudyParser(prog="study.py")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--n", "x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("study.py: error: argument --n")
