"""Personalizer's model export, import and reset, model and log properties, log delete.

Over the API harness (in-memory stores, fake clock): the answers in both versions, what
reached the model store and the audit log, and that a refused import published nothing.
The fixtures and helpers are the configuration tests' (``test_personalizer_config``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import timedelta

from app.personalizer.loop import PERSONALIZER_VW_ARGS
from learnloop.policy import VWPolicy
from tests.unit.test_api_harness import Harness, trained_model
from tests.unit.test_personalizer_config import (
    LOOP,
    assert_error,
    call,
    current,
    h,
    release,
)

__all__ = ["h"]  # the fixture, shared


# -- model -------------------------------------------------------------------------------


def test_export_without_release_is_a_fresh_model(h: Harness) -> None:
    response = call(h, "GET", "model")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert "--cb_explore_adf" in VWPolicy("", response.content)._ws.get_arguments()
    assert current(h) is None


def test_import_export_roundtrip_and_audit(h: Harness) -> None:
    model = trained_model(PERSONALIZER_VW_ARGS, 2)
    h.clock.advance(10)
    response = call(
        h, "PUT", "model", content=model, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 204, response.text
    imported = current(h)
    assert imported is not None
    assert (imported.version, imported.source, imported.vw_args) == (
        1,
        "import",
        PERSONALIZER_VW_ARGS,
    )
    assert call(h, "GET", "model").content == model
    assert call(h, "GET", "model", stable=True).content == model
    (record,) = h.client.portal.call(h.app.state.audit.records, LOOP, 10)  # type: ignore[union-attr]
    assert (record.action, record.version, record.by) == ("import", 1, "personalizer-api")

    signed = call(h, "GET", "model", params={"signed": "true"}).content
    with zipfile.ZipFile(io.BytesIO(signed)) as archive:
        assert archive.read("model.vw") == model
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["sha256"] == hashlib.sha256(model).hexdigest()
    assert call(h, "PUT", "model", content=signed).status_code == 204
    assert (current(h) or imported).version == 2


def test_garbage_import_publishes_nothing(h: Harness) -> None:
    for body in (b"", b"not a model at all" * 20, trained_model(PERSONALIZER_VW_ARGS, 1)[:40]):
        assert_error(call(h, "PUT", "model", content=body), 400, "InvalidModelImportFormat")
    cb_adf = VWPolicy("--cb_adf")
    not_exploring = cb_adf.to_bytes()
    cb_adf.close()
    assert_error(call(h, "PUT", "model", content=not_exploring), 400, "InvalidModelImportFormat")
    assert current(h) is None


def test_tampered_signed_archive_is_refused(h: Harness) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.vw", trained_model(PERSONALIZER_VW_ARGS, 1))
        archive.writestr("manifest.json", json.dumps({"sha256": "0" * 64}))
    response = call(h, "PUT", "model", content=buffer.getvalue())
    assert_error(response, 400, "InvalidModelImportSignature")
    assert current(h) is None


def test_import_is_preview_only(h: Harness) -> None:
    response = call(h, "PUT", "model", stable=True, content=b"x")
    assert response.status_code in (404, 405)
    assert "error" in response.json()


def test_reset_publishes_a_fresh_model(h: Harness) -> None:
    release(h, 1, PERSONALIZER_VW_ARGS, timedelta(minutes=1))
    response = call(h, "DELETE", "model", stable=True)
    assert response.status_code == 204
    reset = current(h)
    assert reset is not None
    assert (reset.version, reset.source, reset.examples_learned) == (2, "reset", 0)
    (record,) = h.client.portal.call(h.app.state.audit.records, LOOP, 10)  # type: ignore[union-attr]
    assert (record.action, record.previous_version) == ("reset", 1)


def test_model_properties(h: Harness) -> None:
    first = call(h, "GET", "model/properties").json()
    assert first == {
        "creationTime": "2026-03-01T12:00:00Z",
        "lastModifiedTime": "2026-03-01T12:00:00Z",
    }
    h.clock.advance(60)
    assert call(h, "GET", "model/properties").json() == first  # stable until a release

    release(h, 1, PERSONALIZER_VW_ARGS, timedelta(minutes=2))
    h.clock.advance(180)  # 12:04
    assert (
        call(h, "PUT", "model", content=trained_model(PERSONALIZER_VW_ARGS, 0)).status_code == 204
    )
    release(h, 3, PERSONALIZER_VW_ARGS, timedelta(minutes=7))
    props = call(h, "GET", "model/properties", stable=True).json()
    assert props == {
        "creationTime": "2026-03-01T12:04:00Z",
        "lastModifiedTime": "2026-03-01T12:07:00Z",
    }


# -- logs --------------------------------------------------------------------------------


def test_log_properties_and_logical_delete(h: Harness) -> None:
    assert call(h, "GET", "logs/properties").json() == {"dateRange": {"from": None, "to": None}}
    store = h.app.state.personalizer
    span = {"from": "2026-03-01T11:00:00+00:00", "to": "2026-03-01T11:30:00+00:00"}
    h.client.portal.call(store.put, LOOP, "state", "logs", span)  # type: ignore[union-attr]
    for stable in (False, True):
        answered = call(h, "GET", "logs/properties", stable=stable).json()
        assert answered == {
            "dateRange": {"from": "2026-03-01T11:00:00Z", "to": "2026-03-01T11:30:00Z"}
        }

    h.clock.advance(5)
    assert call(h, "DELETE", "logs").status_code == 204
    state = h.client.portal.call(store.get, LOOP, "state", "logs")  # type: ignore[union-attr]
    assert state == {"cleared": "2026-03-01T12:00:05+00:00"}
    assert call(h, "GET", "logs/properties").json() == {"dateRange": {"from": None, "to": None}}
