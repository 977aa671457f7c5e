"""channels.toml: every mistake IT can make is named (file, channel, key) with what to
do, `broadcaster channels check` exits 2 without a traceback, and secrets are only
ever references that resolve at load time and never show."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from broadcaster.config import Secret, load_config
from broadcaster.errors import ConfigError
from tests.support import run_cli

HOOK_SECRET = "geheim-hook-7f3a9c"
FILE_SECRET = "geheim-datei-b41e02"
SERVICE = """[service]
city = "Stadt Koblenz"
info_url = "https://www.koblenz.de/warnung"
listen = "127.0.0.1:8080"
database = "broadcaster.db"
"""


def hook(name: str = "leitstelle", secret: str = '{ env = "HOOK_SECRET" }',
         extra: str = "") -> str:
    return f"""
[[channel]]
name = "{name}"
kind = "webhook"
url = "http://127.0.0.1:8025/webhook/{name}"
secret = {secret}
{extra}
"""


def write(directory: Path, text: str) -> Path:
    path = directory / "channels.toml"
    path.write_text(text, encoding="utf-8")
    return path


def channels_check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli("channels", "check", "--config", str(path),
                   env={"HOOK_SECRET": HOOK_SECRET, "CREDENTIALS_DIRECTORY": "", **env})


def assert_refused(result: subprocess.CompletedProcess[str], path: Path, *parts: str) -> None:
    """Exit 2, one readable message naming the file and the given parts, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert str(path.resolve()) in result.stderr or str(path) in result.stderr
    for part in parts:
        assert part in result.stderr, f"{part!r} not in {result.stderr!r}"


# `channels check` on a valid file


def test_valid_file_is_listed_as_a_table_of_channels(tmp_path: Path) -> None:
    (tmp_path / "partner_secret").write_text(FILE_SECRET + "\n", encoding="utf-8")
    path = write(tmp_path, SERVICE + hook()
                 + hook("partner", '{ file = "partner_secret" }', "exercise = true"))
    result = channels_check(path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["channel", "kind", "target", "lang", "mode", "enabled", "secrets"]
    assert lines[2].split() == ["leitstelle", "webhook", "http://127.0.0.1:8025/webhook/leitstelle",
                                "de", "live", "yes", "secret=env:HOOK_SECRET"]
    assert lines[3].split() == ["partner", "webhook", "http://127.0.0.1:8025/webhook/partner",
                                "de", "exercise", "yes", "secret=file:partner_secret"]
    assert "2 channel(s), configuration valid" in result.stdout


def test_channels_check_never_shows_a_resolved_secret(tmp_path: Path) -> None:
    (tmp_path / "partner_secret").write_text(FILE_SECRET, encoding="utf-8")
    path = write(tmp_path, SERVICE + hook() + hook("partner", '{ file = "partner_secret" }'))
    result = channels_check(path)
    assert result.returncode == 0, result.stderr
    for secret in (HOOK_SECRET, FILE_SECRET):
        assert secret not in result.stdout + result.stderr


def test_config_file_comes_from_broadcaster_config_without_option(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + hook())
    result = run_cli("channels", "check",
                     env={"BROADCASTER_CONFIG": str(path), "HOOK_SECRET": HOOK_SECRET})
    assert result.returncode == 0, result.stderr
    assert "leitstelle" in result.stdout


# `channels check` on broken files: exit 2, file + channel + key + what to do


def test_missing_config_file_says_how_to_name_one(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    assert_refused(channels_check(path), path, "file not found", "--config",
                   "BROADCASTER_CONFIG")


def test_file_that_is_not_toml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + '\n[[channel]]\nname = leitstelle\n')
    assert_refused(channels_check(path), path, "not valid TOML", "line 8, column 8")


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, 'colour = "blau"\n' + SERVICE + hook())
    assert_refused(channels_check(path), path, "key 'colour'", "unknown top-level key",
                   "[service] and [[channel]]")


def test_unknown_service_key_is_named_with_the_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + 'colour = "blau"\n' + hook())
    assert_refused(channels_check(path), path, "key 'service.colour'", "unknown key in [service]",
                   "known keys: city, database")


def test_unknown_channel_key_names_channel_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + hook(extra='colour = "blau"'))
    assert_refused(channels_check(path), path, "channel 'leitstelle'", "key 'colour'",
                   "unknown key for kind 'webhook'", "known keys:", "secret", "url")


def test_duplicate_channel_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + hook() + hook())
    assert_refused(channels_check(path), path, "channel 'leitstelle'", "key 'name'",
                   "duplicate channel name", "its own name")


def test_unknown_kind_is_named_with_the_known_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + '\n[[channel]]\nname = "taube"\nkind = "pigeon"\n')
    assert_refused(channels_check(path), path, "channel 'taube'", "key 'kind'",
                   "unknown kind 'pigeon'", "known kinds:", "webhook")


def test_channel_without_name_is_named_by_its_position(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + hook() + '\n[[channel]]\nkind = "webhook"\n')
    assert_refused(channels_check(path), path, "channel '#2'", "key 'name'",
                   "every channel needs a name")


def test_literal_secret_is_refused_and_not_repeated(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + hook(secret='"hunter2-literal"'))
    result = channels_check(path)
    assert_refused(result, path, "channel 'leitstelle'", "key 'secret'",
                   "must not be written into the file", '{ env = "NAME" }', '{ file = "name" }')
    assert "hunter2-literal" not in result.stderr


@pytest.mark.parametrize("reference", ['{ env = "A", file = "b" }', '{ vault = "x" }', "42",
                                       '{ env = "" }'])
def test_malformed_secret_reference_is_refused(tmp_path: Path, reference: str) -> None:
    path = write(tmp_path, SERVICE + hook(secret=reference))
    assert_refused(channels_check(path), path, "channel 'leitstelle'", "key 'secret'", "env")


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + hook(secret='{ env = "LEITSTELLE_SECRET_UNSET" }'))
    assert_refused(channels_check(path), path, "channel 'leitstelle'", "key 'secret'",
                   "environment variable LEITSTELLE_SECRET_UNSET is not set",
                   "EnvironmentFile")


def test_missing_credential_file_names_where_it_was_looked_for(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    path = write(tmp_path, SERVICE + hook(secret='{ file = "hook_secret" }'))
    result = channels_check(path, CREDENTIALS_DIRECTORY=str(credentials))
    assert_refused(result, path, "channel 'leitstelle'", "key 'secret'",
                   "credential file 'hook_secret' not found", str(credentials / "hook_secret"),
                   str(tmp_path.resolve() / "hook_secret"), "LoadCredential=")


def test_credential_that_is_a_directory_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "hook_secret").mkdir()
    path = write(tmp_path, SERVICE + hook(secret='{ file = "hook_secret" }'))
    assert_refused(channels_check(path), path, "channel 'leitstelle'", "key 'secret'",
                   "hook_secret", "cannot be read", "owner and mode")


def test_credential_that_is_not_utf8_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "hook_secret").write_bytes(b"\xff\xfe\x00binary")
    path = write(tmp_path, SERVICE + hook(secret='{ file = "hook_secret" }'))
    assert_refused(channels_check(path), path, "channel 'leitstelle'", "key 'secret'",
                   "hook_secret", "cannot be read", "not UTF-8")


def test_empty_credential_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hook_secret").write_text(" \n", encoding="utf-8")
    path = write(tmp_path, SERVICE + hook(secret='{ file = "hook_secret" }'))
    assert_refused(channels_check(path), path, "channel 'leitstelle'", "key 'secret'",
                   "hook_secret", "is empty")


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [('url = "ftp://x"', "url", "http:// or https://"),
     ("timeout = -1", "timeout", "positive number"),
     ('languages = "de"', "languages", '["de"]'),
     ('on_unknown = "maybe"', "on_unknown", '"retry" or "hold"'),
     ('exercise = "yes"', "exercise", "must be a boolean (true/false), not string")],
)
def test_bad_channel_value_names_channel_and_key(
    tmp_path: Path, extra: str, key: str, words: str
) -> None:
    block = hook(extra=extra)
    if extra.startswith("url"):
        block = block.replace('url = "http://127.0.0.1:8025/webhook/leitstelle"\n', "")
    path = write(tmp_path, SERVICE + block)
    assert_refused(channels_check(path), path, "channel 'leitstelle'", f"key '{key}'", words)


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [('timezone = "Europe/Koblenz"', "service.timezone", "Europe/Berlin"),
     ('exercise_banner = " "', "service.exercise_banner", "must not be empty"),
     ('info_url = "koblenz.de"', "service.info_url", "http:// or https://")],
)
def test_bad_service_value_names_the_key(tmp_path: Path, line: str, key: str, words: str) -> None:
    text = SERVICE.replace('info_url = "https://www.koblenz.de/warnung"\n', "") + line + "\n"
    path = write(tmp_path, text + hook())
    assert_refused(channels_check(path), path, f"key '{key}'", words)


# Loading in-process: defaults, secret references


def test_service_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SERVICE + hook()), {"HOOK_SECRET": HOOK_SECRET})
    assert config.service.exercise_banner == "+++ ÜBUNG +++"
    assert config.service.default_language == "de"
    assert config.service.timezone == "Europe/Berlin"
    assert config.service.templates == tmp_path.resolve() / "templates"
    assert config.service.database == tmp_path.resolve() / "broadcaster.db"
    channel = config.channels[0]
    assert (channel.languages, channel.exercise, channel.enabled) == (("de",), False, True)
    assert (channel.timeout, channel.give_up_after) == (10.0, 3600.0)


def test_env_reference_resolves(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SERVICE + hook()), {"HOOK_SECRET": HOOK_SECRET})
    secret = config.channels[0].settings.secret
    assert isinstance(secret, Secret)
    assert secret.reveal() == HOOK_SECRET
    assert secret.source == "env:HOOK_SECRET"


def test_file_reference_prefers_the_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "hook_secret").write_text("from-credentials\n", encoding="utf-8")
    (tmp_path / "hook_secret").write_text("beside-the-config\n", encoding="utf-8")
    path = write(tmp_path, SERVICE + hook(secret='{ file = "hook_secret" }'))
    config = load_config(path, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.channels[0].settings.secret.reveal() == "from-credentials"


def test_file_reference_falls_back_to_the_config_folder(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()  # present, but without this credential
    (tmp_path / "hook_secret").write_text("beside-the-config\n", encoding="utf-8")
    path = write(tmp_path, SERVICE + hook(secret='{ file = "hook_secret" }'))
    for environ in ({}, {"CREDENTIALS_DIRECTORY": str(credentials)}):
        config = load_config(path, environ)
        assert config.channels[0].settings.secret.reveal() == "beside-the-config"


def test_file_reference_with_an_absolute_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "etc" / "broadcaster"
    elsewhere.mkdir(parents=True)
    (elsewhere / "hook.key").write_text(FILE_SECRET, encoding="utf-8")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    path = write(config_dir, SERVICE + hook(secret=f'{{ file = "{elsewhere / "hook.key"}" }}'))
    config = load_config(path, {})
    assert config.channels[0].settings.secret.reveal() == FILE_SECRET


def test_resolved_secrets_never_show_in_repr_or_str(tmp_path: Path) -> None:
    (tmp_path / "partner_secret").write_text(FILE_SECRET, encoding="utf-8")
    path = write(tmp_path, SERVICE + hook() + hook("partner", '{ file = "partner_secret" }'))
    config = load_config(path, {"HOOK_SECRET": HOOK_SECRET})
    shown = [repr(config), str(config), *(repr(c) for c in config.channels),
             *(str(c.settings) for c in config.channels),
             *(f"{c.settings.secret}" for c in config.channels)]
    for text in shown:
        assert HOOK_SECRET not in text
        assert FILE_SECRET not in text
    assert "Secret(env:HOOK_SECRET)" in repr(config)
    assert "Secret(file:partner_secret)" in repr(config)
    assert sorted(config.secret_values()) == sorted([HOOK_SECRET, FILE_SECRET])


def test_config_error_carries_file_channel_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, SERVICE + hook(secret='{ env = "UNSET_FOR_TEST" }'))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.file == str(path.resolve())
    assert (caught.value.channel, caught.value.key) == ("leitstelle", "secret")
