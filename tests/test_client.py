"""streamcl.client against a live server."""

from __future__ import annotations

import pytest
from live_server import elec2_events, live_server

from streamcl.client import APIError, Client


def test_client_ingests_predicts_and_reads_the_model() -> None:
    with live_server(api_token="t") as (url, _), Client(url, token="t") as client:
        events = elec2_events(50)
        assert len(client.ingest(events)) == 50
        features = events[0]["features"]
        prediction = client.predict([features])[0]
        assert prediction.label in (0, 1) and set(prediction.probabilities) == {"0", "1"}
        assert client.model()["events_learned"] == 50
        with pytest.raises(APIError) as info:
            client.predict([{**features, "typo": 1.0}])
        assert (info.value.status, info.value.reason) == (422, "unknown_feature")
        assert info.value.field == "instances.0.features.typo"
        with pytest.raises(APIError) as info:
            Client(url).ingest(events[:1])
        assert info.value.status == 401
