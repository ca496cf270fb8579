"""How `top` is told where the exporter is and how to reach it, and how it refuses what cannot work
(exporter/top/client.py, app.py flags)."""

from __future__ import annotations

import pytest

from exporter.cli import main
from exporter.top.app import build_parser, config_from_args
from exporter.top.client import ClientOptions, load_http_config, normalize_url


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("127.0.0.1:9741", "http://127.0.0.1:9741/metrics"),
        ("http://exporter:9741", "http://exporter:9741/metrics"),
        ("https://[::1]:9741/custom/path", "https://[::1]:9741/custom/path"),
    ],
)
def test_urls_are_completed_as_a_user_expects(given, url):
    assert normalize_url(given) == url


@pytest.mark.parametrize("bad", ["ftp://host/metrics", "http://", ""])
def test_a_url_that_cannot_be_scraped_is_refused(bad):
    with pytest.raises(ValueError, match="--url"):
        normalize_url(bad)


def test_readyz_is_at_the_exporters_root_whatever_the_telemetry_path():
    assert ClientOptions(url="https://h:1/custom/metrics?x=1").readyz_url == "https://h:1/readyz"


def test_http_config_file_reads_basic_auth_and_tls_relative_to_itself(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    path = tmp_path / "http.yml"
    path.write_text(
        "basic_auth: {username: prom, password_file: pw}\n"
        "tls_config: {ca_file: ca.crt, server_name: exporter, insecure_skip_verify: true}\n"
    )
    assert load_http_config(str(path)) == {
        "user": "prom",
        "password": "s3cret",
        "ca_file": str(tmp_path / "ca.crt"),
        "server_name": "exporter",
        "insecure_skip_verify": True,
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("bearer_token: x\n", "unsupported bearer_token"),
        ("basic_auth: {user: x}\n", "basic_auth takes password, password_file, username"),
        ("- a list\n", "expected a mapping"),
        ("basic_auth: [\n", "cannot read"),
    ],
)
def test_a_wrong_http_config_file_is_named(tmp_path, content, message):
    path = tmp_path / "http.yml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_http_config(str(path))


def test_flags_win_over_the_http_config_file(tmp_path):
    (tmp_path / "pw").write_text("from-file")
    (tmp_path / "pw2").write_text("from-flag")
    path = tmp_path / "http.yml"
    path.write_text("basic_auth: {username: file-user, password_file: pw}\n")
    args = build_parser().parse_args(
        ["--http.config.file", str(path), "--user", "flag-user", "--password-file", str(tmp_path / "pw2")]
    )
    client = config_from_args(args).client
    assert (client.user, client.password) == ("flag-user", "from-flag")
    only_file = config_from_args(build_parser().parse_args(["--http.config.file", str(path)])).client
    assert (only_file.user, only_file.password) == ("file-user", "from-file")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--url", "ftp://x"), "--url must be an http(s) URL"),
        (("--interval", "0s"), "argument --interval: must be at least 0.1s, not '0s'"),
        (("--timeout", "soon"), "argument --timeout: expected a duration such as 5s or 500ms, not 'soon'"),
        (("--password-file", "/nonexistent/pw", "--user", "u"), "cannot read the password file"),
        (("--password-file", "/dev/null"), "a password needs --user"),
        (("--url", "https://127.0.0.1:1/metrics", "--tls.ca-file", "/nonexistent/ca"), "TLS client files"),
    ],
)
def test_bad_flags_are_refused_with_the_flag_named(flags, message, capsys):
    assert main(["top", "--once", *flags]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_the_live_view_needs_a_terminal(capsys):
    assert main(["top", "--url", "127.0.0.1:1"]) == 2  # stdout is captured here, as in a pipe
    captured = capsys.readouterr()
    assert "use --once" in captured.err and captured.out == ""
