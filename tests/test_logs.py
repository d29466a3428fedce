"""JSON logs: one object per line with ts/level/event; secrets redacted."""

from __future__ import annotations

import io

import orjson

from daemon.logs import configure_logging, get_logger, register_secret


def test_json_lines_with_redaction() -> None:
    buf = io.BytesIO()
    configure_logging("info", stream=buf)
    register_secret("sk-live-very-secret")
    log = get_logger("t")
    log.info("login", user="alice", api_key="sk-live-very-secret", token="abc.def.ghi")
    log.info("echo", note="header Bearer sk-live-very-secret here",
             nested={"x": ["sk-live-very-secret"]})
    log.debug("hidden")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (orjson.loads(x) for x in lines)
    assert first["event"] == "login" and first["level"] == "info" and first["ts"].endswith("Z")
    assert first["api_key"] == "***" and first["token"] == "***" and first["user"] == "alice"
    assert "sk-live-very-secret" not in buf.getvalue().decode()
    assert second["nested"] == {"x": ["***"]}
    configure_logging("debug", stream=buf)
    get_logger("t").debug("shown")
    assert orjson.loads(buf.getvalue().splitlines()[-1])["event"] == "shown"


def test_credential_named_fields_are_masked_whatever_their_spelling() -> None:
    buf = io.BytesIO()
    configure_logging("info", stream=buf)
    fields = {"X-Api-Key": "k1", "NewToken": "k2", "db_password": "k3", "Authorization": "k4",
              "user": "alice", "order_id": 7}
    log = get_logger("t")
    for _ in range(2):  # the second line goes through the cached field-name check
        log.info("login", **fields)
    for line in buf.getvalue().splitlines():
        got = orjson.loads(line)
        assert [got[k] for k in fields] == ["***", "***", "***", "***", "alice", 7]
