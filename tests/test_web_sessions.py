"""Speaker calibration on the page: a browser session's voice, kept in server memory only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sound2sight.web import Limits
from sound2sight.web.sessions import SESSION_ID, VoiceSessions
from test_web import FakePipeline, client_for, voice_wav


class SpeakerFake:
    """The fake pipeline as a speaker-normalised model: keeps what a call was calibrated on."""

    speaker_normalised = True

    def __init__(self) -> None:
        self.fake = FakePipeline()
        self.seen: list[int | None] = []  # len(speaker_recordings) of each call (None: not given)

    def __call__(self, audio, *, speaker_recordings=None, **kw):
        r = self.fake(audio, **kw)
        self.seen.append(None if speaker_recordings is None else len(speaker_recordings))
        n = 0 if speaker_recordings is None else len(speaker_recordings) + 1
        feats = np.full((1, 2, 3, 4), self.fake.calls, np.float16)  # this call's "features"
        return dataclasses.replace(r, calibrated_on=n, voice_features=feats)


def _paint(client, sid=None, **query):
    q = {"n": 0, "k": 0, **({"session": sid} if sid else {}), **query}
    resp = client.post("/api/paint", params=q, content=voice_wav(1.0))
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_opt_in_calibrates_from_the_third_recording_and_forget_resets():
    pipe = SpeakerFake()
    client = client_for(pipe, calibration="opt-in")
    made = client.post("/api/session").json()
    sid = made["session"]
    assert SESSION_ID.match(sid) and made["forget_after_minutes"] == 30
    assert made["calibration"] == {
        "available": True,
        "mode": "opt-in",
        "calibrate_from": 3,
        "recordings": 0,
        "calibrated_on": 0,
    }
    answers = [_paint(client, sid, calibrate="true")["calibration"] for _ in range(4)]
    assert [a["recordings"] for a in answers] == [1, 2, 3, 4]
    assert [a["calibrated_on"] for a in answers] == [0, 0, 3, 4]
    assert pipe.seen == [None, None, 2, 3]  # earlier recordings handed to the pipeline
    # without the opt-in: kept, but not calibrated
    plain = _paint(client, sid)["calibration"]
    assert plain["recordings"] == 5 and plain["calibrated_on"] == 0 and pipe.seen[-1] is None
    gone = client.delete(f"/api/session/{sid}").json()
    assert gone == {"forgotten": True}
    after = _paint(client, sid, calibrate="true")["calibration"]
    assert after["recordings"] == 1 and after["calibrated_on"] == 0
    assert client.delete(f"/api/session/{sid}").json() == {"forgotten": True}
    assert client.delete(f"/api/session/{sid}").json() == {"forgotten": False}


def test_auto_mode_calibrates_unasked_and_sessions_never_share_a_voice():
    assert Limits().calibration == "opt-in"  # the default: BENCHMARKS.md › "listens"
    pipe = SpeakerFake()
    client = client_for(pipe, calibration="auto")
    a, b = (client.post("/api/session").json()["session"] for _ in range(2))
    assert a != b
    for _ in range(2):
        _paint(client, a)
    first_b = _paint(client, b)["calibration"]
    assert first_b["recordings"] == 1 and first_b["calibrated_on"] == 0
    third_a = _paint(client, a)["calibration"]
    assert third_a["recordings"] == 3 and third_a["calibrated_on"] == 3
    assert pipe.seen[-1] == 2  # a's two earlier recordings, none of b's


def test_without_a_session_nothing_is_kept_or_reported():
    pipe = SpeakerFake()
    client = client_for(pipe)
    body = _paint(client)
    assert "calibration" not in body and pipe.seen == [None]


def test_a_model_that_cannot_calibrate_keeps_no_voice():
    client = client_for(FakePipeline(), calibration="opt-in")
    sid = client.post("/api/session").json()["session"]
    body = _paint(client, sid, calibrate="true")
    assert body["calibration"]["available"] is False
    assert body["calibration"]["recordings"] == 0
    assert len(client.app.state.sessions) == 1 and not client.app.state.sessions.recordings(sid)


@pytest.mark.parametrize(
    "query, words",
    [
        ({"session": "short"}, "session"),
        ({"session": "x" * 30 + "/.."}, "session"),
        ({"calibrate": "maybe"}, "calibrate"),
    ],
)
def test_bad_session_queries_are_400(query, words):
    resp = client_for(SpeakerFake()).post("/api/paint", params=query, content=voice_wav(1.0))
    assert resp.status_code == 400 and words in resp.json()["error"]


def test_forgetting_a_malformed_id_is_400():
    resp = client_for(SpeakerFake()).delete("/api/session/not%20an%20id")
    assert resp.status_code == 400 and "session id" in resp.json()["error"]


def test_limits_refuse_an_unknown_calibration_mode():
    with pytest.raises(ValueError, match="calibration: 'always'"):
        Limits(calibration="always")


def test_sessions_expire_and_the_oldest_goes_first():
    now = [0.0]
    store = VoiceSessions(ttl=10.0, max_sessions=2, max_recordings=3, clock=lambda: now[0])
    a = store.new()
    for i in range(5):
        store.add(a, i)
    assert store.recordings(a) == [2, 3, 4]  # the newest three
    now[0] = 11.0  # idle past the ttl: forgotten
    assert store.recordings(a) == [] and len(store) == 0
    b, c = store.new(), store.new()
    store.add(b, "b")
    store.add(c, "c")
    d = store.new()  # a third session: the least recently used (b) goes
    assert store.recordings(b) == [] and store.recordings(c) == ["c"] and d in store._sessions
    with pytest.raises(KeyError, match="session id"):
        store.add("../etc", 1)


def test_off_keeps_no_voice():
    pipe = SpeakerFake()
    client = client_for(pipe, calibration="off")
    sid = client.post("/api/session").json()["session"]
    for _ in range(3):
        body = _paint(client, sid, calibrate="true")
    assert body["calibration"]["calibrated_on"] == 0 and pipe.seen == [None] * 3
    assert body["calibration"]["recordings"] == 0 and not client.app.state.sessions.recordings(sid)
