"""The Open Inference Protocol (KServe v2), spoken by an independent client: tritonclient."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from live_server import live_server
from tritonclient.utils import InferenceServerException

from streamcl.service import Service

FEATURES = ("period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Service]]:
    with live_server(learn=300) as running:
        yield running


def _inputs(rows: int, skip: str = "") -> list[triton.InferInput]:
    out = []
    for name in FEATURES:
        if name == skip:
            continue
        tensor = triton.InferInput(name, [rows], "FP64")
        tensor.set_data_from_numpy(np.full(rows, 0.5), binary_data=False)
        out.append(tensor)
    return out


def _outputs() -> list[triton.InferRequestedOutput]:
    return [
        triton.InferRequestedOutput("label", binary_data=False),
        triton.InferRequestedOutput("probabilities", binary_data=False),
    ]


def test_tritonclient_gets_a_prediction(server: tuple[str, Service]) -> None:
    url = server[0]
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("streamcl")
    meta = client.get_model_metadata("streamcl")
    assert {i["name"] for i in meta["inputs"]} == set(FEATURES)
    result = client.infer("streamcl", _inputs(3), outputs=_outputs())
    labels = result.as_numpy("label")
    probs = result.as_numpy("probabilities")
    assert labels.shape == (3,) and set(labels.tolist()) <= {0, 1}
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # the same instance through /v1/predict gives the same answer
    v1 = httpx.post(
        f"{url}/v1/predict", json={"instances": [{"features": dict.fromkeys(FEATURES, 0.5)}]}
    ).json()
    assert v1["predictions"][0]["label"] == labels[0]


def test_a_missing_feature_tensor_is_refused_naming_it(server: tuple[str, Service]) -> None:
    client = triton.InferenceServerClient(server[0].removeprefix("http://"))
    with pytest.raises(InferenceServerException) as info:
        client.infer("streamcl", _inputs(2, skip="nswprice"), outputs=_outputs())
    assert info.value.status() == "422"
    assert "inputs.nswprice" in str(info.value)


def test_unknown_model_is_404_and_binary_tensors_are_415(server: tuple[str, Service]) -> None:
    url = server[0]
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    assert not client.is_model_ready("other")
    # outputs asked in binary are answered in JSON, which the client reads as well
    assert client.infer("streamcl", _inputs(1)).as_numpy("label").shape == (1,)
    binary = _inputs(1)
    binary[0].set_data_from_numpy(np.full(1, 0.5), binary_data=True)
    with pytest.raises(InferenceServerException) as info:
        client.infer("streamcl", binary)
    assert info.value.status() == "415"
    r = httpx.post(f"{url}/v2/models/other/infer", json={"inputs": []})
    assert r.status_code == 404 and r.json()["field"] == "name"


@pytest.mark.parametrize(
    ("tensor", "reason"),
    [
        ({"name": "nswprice", "shape": [1], "datatype": "BYTES", "data": ["x"]}, "type_mismatch"),
        ({"name": "nswprice", "shape": [2], "datatype": "FP64", "data": [1.0]}, "bad_shape"),
        ({"name": "nswprice", "shape": [1], "datatype": "FP64", "data": ["x"]}, "bad_type"),
        ({"name": "nswprice", "shape": [1], "datatype": "FP64", "data": [1e300]}, "non_finite"),
        ({"name": "bogus", "shape": [1], "datatype": "FP64", "data": [1.0]}, "unknown_feature"),
    ],
)
def test_bad_tensors_are_422_naming_the_input(
    server: tuple[str, Service], tensor: dict[str, object], reason: str
) -> None:
    others = [
        {"name": f, "shape": [1], "datatype": "FP64", "data": [0.5]}
        for f in FEATURES
        if f != tensor["name"]
    ]
    r = httpx.post(f"{server[0]}/v2/models/streamcl/infer", json={"inputs": [tensor, *others]})
    assert r.status_code == 422, r.text
    body = r.json()  # the protocol's {"error": message}, with the common fields beside it
    assert body["reason"] == reason and body["error"].startswith(reason)
    assert body["field"].startswith("inputs.")
