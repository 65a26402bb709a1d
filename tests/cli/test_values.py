"""The converters of flag values: what they accept, refuse, and how defaults are shown."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpgate.cli.values import (
    duration_arg,
    http_arg,
    parse_address,
    show_duration,
    show_size,
    size_arg,
)


@given(st.integers(min_value=0, max_value=2**40))
def test_a_shown_size_reads_back(number):
    assert size_arg(show_size(number)) == number


@given(st.integers(min_value=0, max_value=4096), st.sampled_from(["", "K", "M", "G", "k", "m", "KB", "mb"]))
def test_size_suffixes(number, suffix):
    scale = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[suffix[:1].upper()]
    assert size_arg(f"{number}{suffix}") == number * scale


@given(st.integers(min_value=0, max_value=10**9) | st.floats(min_value=0, max_value=1e9))
def test_a_shown_duration_reads_back(seconds):
    assert duration_arg(show_duration(seconds)) == seconds


@given(st.text(max_size=12))
def test_converters_raise_one_line_errors(text):
    for convert in (size_arg, duration_arg, http_arg):
        try:
            convert(text)
        except argparse.ArgumentTypeError as error:
            assert "\n" not in str(error)


@given(st.sampled_from(["127.0.0.1", "::1", "mx.example", "0.0.0.0"]), st.integers(min_value=0, max_value=65535))
def test_addresses(host, port):
    written = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert parse_address(written) == (host, port)
    assert http_arg(written) == (host, port)
    assert http_arg(str(port)) == http_arg(f":{port}") == ("127.0.0.1", port)


def test_shown_defaults():
    assert show_size(25 * 1024 * 1024) == "25M"
    assert show_size(1024**3) == "1G"
    assert show_size(1000) == "1000"
    assert show_duration(5 * 86400.0) == "5d"
    assert show_duration(5400) == "90m"
    assert show_duration(0.5) == "0.5"


@pytest.mark.parametrize("text", ["-1", "x", "1.5M", ""])
def test_bad_sizes(text):
    with pytest.raises(argparse.ArgumentTypeError):
        size_arg(text)
