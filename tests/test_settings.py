import pytest

from gateway.settings import DEFAULT_PATH, DEV_SECRET_KEY, SettingsError, from_mapping, load


def test_shipped_settings_file_loads_with_documented_defaults():
    settings = load(DEFAULT_PATH, environ={})
    assert settings.server.port == 8080
    assert settings.server.host == "127.0.0.1"
    assert settings.database.url.startswith("sqlite://")
    assert settings.ussd.screen_limit == 160
    assert settings.ussd.session_ttl_seconds == 180
    assert settings.security.secret_key == DEV_SECRET_KEY


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"servr": {}}, "unknown settings section [servr]"),
        ({"ussd": {"screen_limt": 150}}, "unknown settings key ussd.screen_limt"),
        ({"security": {"secret_key": "in-the-file"}}, "unknown settings key security.secret_key"),
        ({"ussd": {"screen_limit": "160"}}, "ussd.screen_limit: expected int"),
        ({"ussd": {"screen_limit": 200}}, "ussd.screen_limit must be between 60 and 182"),
        ({"ussd": {"default_language": "fr"}}, "ussd.default_language"),
        ({"database": {"migrate_on_start": 1}}, "database.migrate_on_start: expected bool"),
        ({"locale": {"timezone": "Mars/Olympus"}}, "unknown time zone"),
        ({"logging": {"format": "xml"}}, "logging.format"),
        ({"server": []}, "[server] must be a table"),
    ],
)
def test_bad_settings_fail_loudly_naming_the_key(raw, message):
    with pytest.raises(SettingsError) as caught:
        from_mapping(raw, environ={})
    assert message in str(caught.value)


def test_secrets_and_database_url_come_from_the_environment():
    settings = from_mapping(
        {}, environ={"GATEWAY_SECRET_KEY": "s3cret", "GATEWAY_DATABASE_URL": "postgres://u@h/db"}
    )
    assert settings.security.secret_key == "s3cret"
    assert settings.database.url == "postgres://u@h/db"
    assert "s3cret" not in repr(settings)


def test_replace_validates():
    settings = from_mapping({}, environ={})
    assert settings.replace(ussd={"screen_limit": 182}).ussd.screen_limit == 182
    with pytest.raises(SettingsError):
        settings.replace(ussd={"screen_limit": 183})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SettingsError, match="settings file not found"):
        load(tmp_path / "nope.toml", environ={})


def test_the_shipped_file_lists_every_tunable():
    """settings.toml is the reference: every key of every section is written there."""
    import dataclasses
    import tomllib

    from gateway.settings import Settings, _env_only

    raw = tomllib.loads(DEFAULT_PATH.read_text())
    for section in dataclasses.fields(Settings):
        cls = type(getattr(Settings(), section.name))
        expected = {f.name for f in dataclasses.fields(cls)} - _env_only(cls)
        assert set(raw.get(section.name, {})) == expected, section.name


def test_provider_secrets_only_from_the_environment():
    settings = from_mapping({}, environ={"GATEWAY_KANNEL_PASSWORD": "kp", "GATEWAY_SMPP_PASSWORD": "sp"})
    assert settings.kannel.password == "kp" and settings.smpp.password == "sp"
    with pytest.raises(SettingsError, match="unknown settings key kannel.password"):
        from_mapping({"kannel": {"password": "x"}}, environ={})
