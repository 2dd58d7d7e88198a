"""GCS through object_store's XML-API client.

Reads run against fake-gcs-server (objects seeded through its JSON upload API, since it
cannot take XML-API uploads). Writes run against moto standing in for the GCS XML API
(same paths and verbs; it tests our ``gs://`` plumbing, not Google's semantics).
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from conftest import FAST, FakeGcs, Moto
from volumes import INFO, values

import bigarrays
from bigarrays import BigArray


def test_reads_from_fake_gcs(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.bucket()
    fake_gcs.upload(bucket, "a/layer/info", json.dumps(INFO).encode())
    fake_gcs.upload(bucket, "a/layer/s0/0-5_0-6_0-4", values(0).tobytes(order="F"))
    right = gzip.compress(values(1000).tobytes(order="F"))
    fake_gcs.upload(bucket, "a/layer/s0/5-10_0-6_0-4", right, content_encoding="gzip")
    a = BigArray(f"gs://{bucket}/a/layer", storage_options=fake_gcs.options())
    want = np.concatenate([values(0), values(1000)])
    np.testing.assert_array_equal(a[:, :, :], want)
    np.testing.assert_array_equal(a[3:7, 1:5, 2], want[3:7, 1:5, 2])
    assert a.url == f"gs://{bucket}/a/layer"


def test_missing_and_absent_on_fake_gcs(fake_gcs: FakeGcs) -> None:
    bucket = fake_gcs.bucket()
    fake_gcs.upload(bucket, "l/info", json.dumps(INFO).encode())
    fake_gcs.upload(bucket, "l/s0/0-5_0-6_0-4", values(7).tobytes(order="F"))
    a = BigArray(f"gs://{bucket}/l", storage_options=fake_gcs.options())
    assert not a[5:, :, :].any()
    with pytest.raises(bigarrays.MissingChunkError, match="5-10_0-6_0-4"):
        BigArray(f"gs://{bucket}/l", fill_missing=False, storage_options=fake_gcs.options())[
            :, :, :
        ]
    with pytest.raises(bigarrays.LayerNotFoundError, match=f"gs://{bucket}/nothing"):
        BigArray(f"gs://{bucket}/nothing", storage_options=fake_gcs.options())


def test_google_application_credentials(fake_gcs: FakeGcs, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service account the way users point at it: an environment variable."""
    bucket = fake_gcs.bucket()
    fake_gcs.upload(bucket, "e/info", json.dumps(INFO).encode())
    fake_gcs.upload(bucket, "e/s0/0-5_0-6_0-4", values(3).tobytes(order="F"))
    monkeypatch.setenv("GOOGLE_SERVICE_ACCOUNT", str(fake_gcs.credentials))
    assert BigArray(f"gs://{bucket}/e", storage_options=FAST)[0, 0, 0] == 3


def test_writes_through_the_gcs_client(moto: Moto) -> None:
    bucket = moto.gcs_bucket()
    # A static OAuth token (moto ignores it; Google would check it).
    options = {"google_base_url": moto.endpoint, "bearer_token": "token", **FAST}
    url = f"gs://{bucket}/w"
    a = BigArray.create(
        url, shape=(12, 8, 8), dtype="int16", chunks=(8, 8, 8), storage_options=options
    )
    data = np.arange(12 * 8 * 8, dtype=np.int16).reshape((12, 8, 8), order="F") - 300
    a[:, :, :] = data
    np.testing.assert_array_equal(BigArray(url, storage_options=options)[:, :, :], data)
    head = moto.client().get_object(Bucket=bucket, Key="w/1_1_1/8-12_0-8_0-8")
    assert head["ContentEncoding"] == "gzip"
