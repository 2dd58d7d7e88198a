"""S3 through object_store against a moto server: the read/write semantics, configuration
(storage_options, environment, anonymous), CloudVolume's conventions in buckets both ways,
errors, and reading after ``os.fork()``."""

from __future__ import annotations

import gzip
import os
import signal
from pathlib import Path

import cloudfiles.paths
import numpy as np
import pytest
from cloudvolume import CloudVolume
from conftest import Moto, clean_child_env, first_voxel_in_child

import bigarrays
from bigarrays import BigArray

# (dtype, channels, chunks, shape): no shape is a multiple of its chunk size.
CASES = {
    "uint8": ("uint8", 1, (16, 16, 8), (40, 30, 20)),
    "uint16x3": ("uint16", 3, (16, 8, 8), (20, 17, 9)),
    "float32": ("float32", 1, (16, 16, 8), (33, 16, 10)),
    "uint64": ("uint64", 1, (8, 8, 8), (20, 9, 8)),
}
OFFSET = (-5, 3, 100)


def random_volume(seed: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.asfortranarray(rng.standard_normal(shape).astype(dt))
    info = np.iinfo(dt)
    return np.asfortranarray(rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True))


@pytest.fixture(params=list(CASES))
def written(request: pytest.FixtureRequest, moto: Moto) -> tuple[BigArray, np.ndarray, Moto]:
    dtype, channels, chunks, shape = CASES[request.param]
    url = f"s3://{moto.bucket()}/layers/em"
    full = shape + ((channels,) if channels > 1 else ())
    a = BigArray.create(
        url,
        shape=full,
        dtype=dtype,
        chunks=chunks,
        voxel_offset=OFFSET,
        storage_options=moto.options(),
    )
    data = random_volume(7, full, dtype)
    a[a.bounds] = data
    return BigArray(url, storage_options=moto.options()), data, moto


def test_cutouts_match_numpy(written: tuple[BigArray, np.ndarray, Moto]) -> None:
    a, data, _ = written
    lo = np.array(OFFSET)
    hi = lo + np.array(data.shape[:3])
    boxes = {
        "whole": (lo, hi),
        "aligned": (lo, lo + np.array(a.chunks)),
        "unaligned": (lo + 3, hi - 2),
        "edge": (hi - 4, hi),
    }
    for name, (start, stop) in boxes.items():
        got = a[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]]
        s = tuple(slice(x0 - o, x1 - o) for x0, x1, o in zip(start, stop, lo, strict=True))
        np.testing.assert_array_equal(got, data[s], err_msg=name)
    # Outside the bounds reads as 0, inside keeps its values.
    got = a[lo[0] - 3 : lo[0] + 2, lo[1] : lo[1] + 2, lo[2] - 1 : lo[2] + 1]
    assert not got[:3].any() and not got[:, :, 0].any()
    np.testing.assert_array_equal(got[3:, :, 1:], data[:2, :2, :1])


def test_writes_follow_cloudvolume_in_buckets(written: tuple[BigArray, np.ndarray, Moto]) -> None:
    """No key suffix; a gzip body declared with Content-Encoding."""
    a, _, moto = written
    bucket = a.url.split("/")[2]
    s3 = moto.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    chunk_keys = [k for k in keys if not k.endswith("/info")]
    assert chunk_keys and not any(k.endswith((".gz", ".zstd")) for k in keys)
    head = s3.get_object(Bucket=bucket, Key=chunk_keys[0])
    assert head["ContentEncoding"] == "gzip"
    assert head["Body"].read()[:2] == b"\x1f\x8b"
    info = s3.get_object(Bucket=bucket, Key="layers/em/info")
    assert "ContentEncoding" not in info  # read whole today, by range later: never encoded


def test_plain_writes_and_partial_overwrite(moto: Moto) -> None:
    url = f"s3://{moto.bucket()}/l"
    a = BigArray.create(
        url, shape=(20, 20, 8), dtype="uint8", chunks=(8, 8, 8), compression=None,
        storage_options=moto.options(),
    )  # fmt: skip
    a[:, :, :] = 1
    a[3:11, 5:6, 2:7] = 9  # read-modify-write across chunk edges
    want = np.ones((20, 20, 8), np.uint8)
    want[3:11, 5:6, 2:7] = 9
    np.testing.assert_array_equal(BigArray(url, storage_options=moto.options())[:, :, :], want)
    s3 = moto.client()
    body = s3.get_object(Bucket=url.split("/")[2], Key="l/1_1_1/0-8_0-8_0-8")
    assert "ContentEncoding" not in body and len(body["Body"].read()) == 8 * 8 * 8


def test_missing_chunks(moto: Moto) -> None:
    url = f"s3://{moto.bucket()}/sparse"
    a = BigArray.create(
        url, shape=(16, 8, 8), dtype="uint16", chunks=(8, 8, 8), storage_options=moto.options()
    )
    a[0:8, :, :] = 5
    np.testing.assert_array_equal(a[6:10, 0, 0], [5, 5, 0, 0])
    strict = BigArray(url, fill_missing=False, storage_options=moto.options())
    with pytest.raises(bigarrays.MissingChunkError, match="8-16_0-8_0-8"):
        strict[:, :, :]
    assert strict[0, 0, 0] == 5


def test_environment_configuration(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    """The way users have it: AWS_* variables, AWS_ENDPOINT_URL included."""
    bucket = moto.bucket()
    BigArray.create(
        f"s3://{bucket}/env", shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8),
        storage_options=moto.options(),
    )[:, :, :] = 3  # fmt: skip
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    a = BigArray(f"s3://{bucket}/env", storage_options=FAST_ONLY)
    assert a[1, 2, 3] == 3
    # storage_options override the environment.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert BigArray(f"s3://{bucket}/env", storage_options=moto.options())[0, 0, 0] == 3


FAST_ONLY = {"retries": 2, "timeout": 2, "deadline": 5}


def test_anonymous_public_bucket_and_forbidden(moto: Moto) -> None:
    bucket = moto.bucket()
    url = f"s3://{bucket}/pub"
    BigArray.create(
        url, shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8), storage_options=moto.options()
    )[:, :, :] = 4
    anonymous = {"endpoint": moto.endpoint, "anonymous": True, **FAST_ONLY}
    # A private bucket refuses unsigned requests: a clear permission error naming the URL.
    with pytest.raises(bigarrays.PermissionDeniedError, match=f"s3://{bucket}/pub/info") as e:
        BigArray(url, storage_options=anonymous)
    assert isinstance(e.value, PermissionError) and isinstance(e.value, bigarrays.StoreError)
    moto.make_public(bucket)
    assert BigArray(url, storage_options=anonymous)[7, 7, 7] == 4


def test_storage_options_are_validated_and_secrets_stay_secret(moto: Moto) -> None:
    with pytest.raises(bigarrays.InvalidArgumentError, match="aws_secret_acces_key"):
        BigArray("s3://bucket/x", storage_options={"aws_secret_acces_key": "hunter2"})
    with pytest.raises(bigarrays.InvalidArgumentError, match="retries"):
        BigArray("s3://bucket/x", storage_options={"retries": "many"})
    with pytest.raises(bigarrays.InvalidArgumentError, match="aws_region"):
        BigArray("/tmp/nowhere", storage_options={"aws_region": "x"})
    bucket = moto.bucket()
    with pytest.raises(bigarrays.LayerNotFoundError) as e:
        BigArray(f"s3://{bucket}/none", storage_options=moto.options())
    assert "testing-secret" not in str(e.value)
    a = BigArray.create(
        f"s3://{bucket}/r", shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8),
        storage_options=moto.options(),
    )  # fmt: skip
    assert "testing-secret" not in repr(a) and "testing" not in a.url


def test_truncated_object_names_the_key(moto: Moto) -> None:
    bucket = moto.bucket()
    url = f"s3://{bucket}/t"
    a = BigArray.create(
        url, shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8), storage_options=moto.options()
    )
    a[:, :, :] = 1
    s3 = moto.client()
    key = "t/1_1_1/0-8_0-8_0-8"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=body[: len(body) // 2], ContentEncoding="gzip")
    with pytest.raises(bigarrays.ChunkDecodeError, match=key):
        a[:, :, :]


def test_gzip_with_and_without_header(moto: Moto) -> None:
    bucket = moto.bucket()
    url = f"s3://{bucket}/g"
    a = BigArray.create(
        url, shape=(16, 8, 8), dtype="uint8", chunks=(8, 8, 8), storage_options=moto.options()
    )
    s3 = moto.client()
    left, right = np.full(512, 1, np.uint8), np.full(512, 2, np.uint8)
    s3.put_object(
        Bucket=bucket, Key="g/1_1_1/0-8_0-8_0-8", Body=gzip.compress(left.tobytes()),
        ContentEncoding="gzip",
    )  # fmt: skip
    s3.put_object(Bucket=bucket, Key="g/1_1_1/8-16_0-8_0-8", Body=gzip.compress(right.tobytes()))
    np.testing.assert_array_equal(a[6:10, 0, 0], [1, 1, 2, 2])


def test_read_after_fork(moto: Moto) -> None:
    """A process that read through the tokio runtime forks; the child reads too."""
    url = f"s3://{moto.bucket()}/fork"
    a = BigArray.create(
        url, shape=(16, 16, 8), dtype="uint8", chunks=(8, 8, 8), storage_options=moto.options()
    )
    a[:, :, :] = 6
    assert a[:, :, :].sum() == 6 * 16 * 16 * 8  # the parent's runtime is now running
    pid = os.fork()
    if pid == 0:  # the child: exit codes only, never return into pytest
        code = 1
        signal.alarm(30)  # a hung runtime kills the child instead of the test run
        try:
            child = BigArray(url, storage_options=moto.options())
            code = 0 if child[:, :, :].sum() == 6 * 16 * 16 * 8 and a[3, 3, 3] == 6 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert a[0, 0, 0] == 6  # and the parent still reads


# -- CloudVolume in the bucket, both ways ----------------------------------------------------

CV_SECRETS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


def cloudvolume(moto: Moto, bucket: str, path: str, **kwargs: object) -> CloudVolume:
    # cloud-files reaches a custom S3 endpoint through an alias protocol (its own aliases for
    # Princeton's S3 servers work the same way): motos3://bucket/path.
    cloudfiles.paths.add_alias("motos3", f"s3://{moto.endpoint}/")
    return CloudVolume(f"motos3://{bucket}/{path}", secrets=CV_SECRETS, progress=False, **kwargs)


@pytest.mark.parametrize("compress", [None, False, "br"], ids=["gzip", "raw", "br"])
def test_cloudvolume_writes_bigarrays_reads(moto: Moto, compress: bool | str | None) -> None:
    bucket = moto.bucket()
    info = CloudVolume.create_new_info(
        num_channels=2, layer_type="image", data_type="uint16", encoding="raw",
        resolution=[4, 4, 40], voxel_offset=[-3, 5, 7], chunk_size=[8, 8, 4],
        volume_size=[19, 11, 9],
    )  # fmt: skip
    cv = cloudvolume(moto, bucket, "cv", info=info, compress=compress)
    cv.commit_info()
    data = random_volume(3, (19, 11, 9, 2), "uint16")
    cv[:, :, :] = data
    keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert not any(k.endswith((".gz", ".br")) for k in keys)  # Content-Encoding, no suffix
    if compress == "br":  # brotli has no magic number: only the header says what it is
        chunk = next(k for k in keys if k.startswith("cv/4_4_40/"))
        assert moto.client().head_object(Bucket=bucket, Key=chunk)["ContentEncoding"] == "br"
    a = BigArray(f"s3://{bucket}/cv", storage_options=moto.options())
    np.testing.assert_array_equal(a[a.bounds], data)
    np.testing.assert_array_equal(a[0:10, 6:9, 8:15], data[3:13, 1:4, 1:8])


@pytest.mark.parametrize("compression", ["gzip", None, "br"])
def test_bigarrays_writes_cloudvolume_reads(moto: Moto, compression: str | None) -> None:
    bucket = moto.bucket()
    a = BigArray.create(
        f"s3://{bucket}/ba", shape=(19, 11, 9), dtype="float32", chunks=(8, 8, 4),
        voxel_offset=(2, -4, 0), resolution=(8, 8, 40), compression=compression,
        storage_options=moto.options(),
    )  # fmt: skip
    data = random_volume(4, (19, 11, 9), "float32")
    a[a.bounds] = data
    if compression == "br":
        keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket)["Contents"]]
        chunk = next(k for k in keys if k.startswith("ba/8_8_40/"))
        assert moto.client().head_object(Bucket=bucket, Key=chunk)["ContentEncoding"] == "br"
        np.testing.assert_array_equal(a[a.bounds], data)
    cv = cloudvolume(moto, bucket, "ba")
    got = np.asarray(cv[2:21, -4:7, 0:9])[..., 0]
    np.testing.assert_array_equal(got.view(np.uint32), data.view(np.uint32))


def test_aws_profile_files(moto: Moto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """~/.aws/credentials and ~/.aws/config profiles, chosen by AWS_PROFILE or storage_options."""
    bucket = moto.bucket()
    url = f"s3://{bucket}/prof"
    BigArray.create(
        url, shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8), storage_options=moto.options()
    )[:, :, :] = 8
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "credentials").write_text(
        "[default]\naws_access_key_id = wrong\n\n"
        "[moto]\naws_access_key_id = testing\naws_secret_access_key = testing-secret\n"
    )
    (tmp_path / "config").write_text(
        f"[profile moto]\nregion = us-east-1\nendpoint_url = {moto.endpoint}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "moto")
    assert BigArray(url, storage_options=FAST_ONLY)[1, 1, 1] == 8
    monkeypatch.delenv("AWS_PROFILE")
    assert BigArray(url, storage_options={"profile": "moto", **FAST_ONLY})[2, 2, 2] == 8
    with pytest.raises(bigarrays.InvalidArgumentError, match="nope"):
        BigArray(url, storage_options={"profile": "nope", **FAST_ONLY})


def test_no_credentials_anywhere_goes_unsigned_at_once(moto: Moto, tmp_path: Path) -> None:
    # An S3-compatible endpoint that is not AWS: the instance-metadata service cannot be the
    # answer, so nothing waits on it; requests go unsigned, and a private bucket's refusal
    # says where credentials were looked for (public buckets: tests/test_credentials.py).
    bucket = moto.bucket()
    BigArray.create(
        f"s3://{bucket}/l", shape=(8, 8, 8), dtype="uint8", storage_options=moto.options()
    )
    message, seconds = first_voxel_in_child(
        f"s3://{bucket}/l", {"endpoint": moto.endpoint, **FAST_ONLY}, clean_child_env(tmp_path)
    )
    assert message.startswith("PermissionDeniedError"), message
    assert "no AWS credentials" in message and '"anonymous": True' in message, message
    assert "AWS_ACCESS_KEY_ID" in message and ".aws/credentials" in message, message
    assert "169.254.169.254" not in message.split("(")[0], message
    assert seconds < 2, seconds


def test_no_credentials_on_aws_names_the_sources_after_the_metadata_service(
    tmp_path: Path,
) -> None:
    # On AWS itself an instance role may answer, so the metadata service is asked; where it
    # does not answer (here: no network), the error says what was looked for.
    options = {"region": "us-east-1", "metadata_endpoint": "http://127.0.0.1:9", **FAST_ONLY}
    message, seconds = first_voxel_in_child(
        "s3://some-bucket/l", options, clean_child_env(tmp_path)
    )
    assert message.startswith("PermissionDeniedError"), message
    assert "no AWS credentials" in message and "instance metadata" in message, message
    assert seconds < 30, seconds
