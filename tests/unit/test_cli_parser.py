"""The one `numbind` parser: five commands, help on every option, exit codes from main()."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from numbind.cli import build_parser, main

COMMANDS = ("serve", "admin", "tokenize", "platform", "carrier", "federation", "log")


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def test_every_command_and_option_has_help() -> None:
    missing: list[str] = []
    commands = 0
    for path, parser in _walk(build_parser()):
        commands += 1
        for action in parser._actions:
            name = "/".join(action.option_strings) or action.dest
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"numbind {' '.join(path)} {name}")
            if isinstance(action, argparse._SubParsersAction):
                described = {c.dest for c in action._choices_actions if c.help}
                missing += [
                    f"numbind {' '.join((*path, n))} (no one-line description)"
                    for n in action.choices
                    if n not in described
                ]
        if path and not parser.description:
            # `numbind X --help` opens with what X does, not just its usage line.
            missing.append(f"numbind {' '.join(path)} (no description)")
    assert not missing, "\n".join(missing)
    assert commands > 20  # the walk really went down the tree


def test_a_parser_action_without_help_is_caught() -> None:
    # The walk above must fail on what it looks for: an option added without help.
    parser = build_parser()
    for path, sub in _walk(parser):
        if path == ("carrier", "report"):
            sub.add_argument("--undocumented")
    missing = [
        a.dest for _, p in _walk(parser) for a in p._actions if not a.help and a.option_strings
    ]
    assert missing == ["undocumented"]


def test_root_help_lists_every_command_with_a_line_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = dict(re.findall(r"^    (\w+)\s{2,}(\S.*)$", out, re.MULTILINE))
    assert tuple(listed) == COMMANDS
    assert all(len(text) > 10 for text in listed.values())
    assert "00:00 in the time zone of --region (default CN, +08:00)" in " ".join(out.split())


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["carrier", "query"], "--tenure-start"),
        (["carrier", "revoke"], "--tenure-start"),
        (["platform", "check-reassigned"], "--since"),
    ],
)
def test_date_options_say_what_a_date_alone_means(
    capsys: pytest.CaptureFixture[str], command: list[str], option: str
) -> None:
    assert main([*command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert option in out
    assert "YYYY-MM-DD (00:00 that day in the time zone of --region; CN: +08:00)" in out


def test_usage_errors_are_exit_2_and_returned_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err
    assert main(["carrier", "revoke", "--bundle", "x", "--phone", "1"]) == 2
    assert "required" in capsys.readouterr().err
    # A value argparse rejects itself: the message never quotes it (it may be a number).
    assert main(["platform", "check-reassigned", "--bundle", "b", "--phone", "1",
                 "--since", "13800138000"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--since" in err and "13800138000" not in err
    # Checks only the handler can make (the pairing of repeated options) are usage errors
    # too, reported with the command's own usage line, before any file is opened.
    argv = ["platform", "check-reassigned", "--bundle", "missing", "--phone", "1"]
    assert main([*argv, "--phone", "2", "--since", "2024-01-01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: numbind platform check-reassigned")
    assert "give one --since per --phone" in err and "got 2 --phone and 1 --since" in err
    # A date alone where the region has several offsets that day: usage error, naming them.
    assert main([*argv, "--since", "2024-07-01", "--region", "US"]) == 2
    err = capsys.readouterr().err
    assert "--since 1: a date alone is ambiguous in region US" in err
    assert "UTC-04:00" in err and "UTC-07:00" in err


def test_options_argparse_cannot_check_alone_are_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["platform", "publish", "--bundle", "b", "--file", "missing.csv"]
    assert main([*base, "--region", "XX"]) == 2
    assert "--region: got 'XX', want a region code" in capsys.readouterr().err
    assert main([*base, "--batch-size", "0"]) == 2
    assert "--batch-size: got 0, want 1..10000" in capsys.readouterr().err
    assert main([*base, "--in-flight", "0"]) == 2
    assert "--in-flight: got 0" in capsys.readouterr().err
    assert main([*base]) == 1
    assert capsys.readouterr().err == "numbind: error: bundle directory b does not exist\n"
    assert main([*base[:-1], "missing"]) == 1  # no extension: the content is sniffed
    assert capsys.readouterr().err == "numbind: error: missing: No such file or directory\n"


def test_a_bad_number_among_options_is_named_by_its_place(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["carrier", "query", "--bundle", "missing", "--subject", "s"]
    argv += ["--phone", "13800138000", "--tenure-start", "2024-01-01"]
    argv += ["--phone", "1380013", "--tenure-start", "2024-01-01T00:00:00Z"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == "numbind: error: number 2: not a valid number for its region\n"


def test_failures_are_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tokenize", "--bundle", "/nonexistent-bundle", "13800138000"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("numbind: error: ") and len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`numbind admin stats | head -2` printed "numbind: error: [Errno 32] Broken pipe"."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from numbind.cli import federation, main\n"
        "def gone(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "federation._show = gone\n"
        "sys.exit(main(['federation', 'show', '--data-dir', sys.argv[1]]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert (run.returncode, run.stderr) == (141, ""), run
