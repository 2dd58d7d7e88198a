"""Credentials that just work, against loopback stand-ins (docs/CLOUD.md, "Credentials").

- AWS: web identity and ``role_arn`` + ``source_profile`` against moto's STS
  (AssumeRoleWithWebIdentity, AssumeRole), ``credential_process`` scripts (run, parsed,
  re-run before expiry), ``request_payer``.
- GCS: gcloud's authorized-user ADC file (``CLOUDSDK_CONFIG``) refreshed at a token
  endpoint in this file, ``user_project`` / ``requester_pays`` with ``GOOGLE_CLOUD_PROJECT``.
- No credentials anywhere: public data is read unsigned at once, never after waiting on a
  metadata service.
- Secrets never appear in reprs, errors or pickles.

The environment is cleared of every credential source first (``AWS_*``, ``GOOGLE_*``,
``CLOUDSDK_*``, ``GCE_*``, and ``HOME`` pointed at an empty directory), so nothing on the
machine running the tests leaks in.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import stat
import sys
import textwrap
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FakeGcs, Moto, clean_child_env, first_voxel_in_child
from volumes import INFO, values

import bigarrays
from bigarrays import BigArray

FAST = {"retries": 1, "timeout": 2, "deadline": 5}
SECRET = "planted-S3CR3T-value"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No credentials anywhere: returns the empty HOME."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "GOOGLE_", "CLOUDSDK_", "GCE_")):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def private_layer(moto: Moto, name: str = "l") -> tuple[str, np.ndarray]:
    """A layer in a fresh private moto bucket (written with static keys)."""
    url = f"s3://{moto.bucket()}/{name}"
    data = np.arange(8 * 8 * 8, dtype=np.uint8).reshape(8, 8, 8)
    a = BigArray.create(
        url, shape=(8, 8, 8), dtype="uint8", chunks=(8, 8, 8), storage_options=moto.options()
    )
    a[a.bounds] = data
    return url, data


def moto_only(moto: Moto) -> dict[str, Any]:
    """Where moto is, and no credentials."""
    return {"endpoint": moto.endpoint, "region": "us-east-1", **FAST}


# -- AWS: STS ------------------------------------------------------------------------------


def test_web_identity_token_file_and_role_arn(moto: Moto, clean_env: Path, monkeypatch) -> None:
    url, data = private_layer(moto)
    token = clean_env / "token"
    token.write_text("eyJ.a-kubernetes-service-account-token.sig\n")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/reader")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.endpoint)
    np.testing.assert_array_equal(BigArray(url, storage_options=moto_only(moto))[:, :, :], data)
    # The token is read on each refresh: a token file that is gone is an error naming it.
    token.unlink()
    with pytest.raises(bigarrays.StoreError, match="web identity token file") as e:
        BigArray(url, storage_options=moto_only(moto))
    assert str(token) in str(e.value)


def write_profiles(home: Path, credentials: str, config: str) -> None:
    (home / ".aws").mkdir(exist_ok=True)
    (home / ".aws" / "credentials").write_text(textwrap.dedent(credentials))
    (home / ".aws" / "config").write_text(textwrap.dedent(config))


def test_role_arn_with_source_profile(moto: Moto, clean_env: Path, monkeypatch) -> None:
    url, data = private_layer(moto)
    write_profiles(
        clean_env,
        f"""
        [base]
        aws_access_key_id = AKIDBASE
        aws_secret_access_key = {SECRET}
        """,
        """
        [profile reader]
        role_arn = arn:aws:iam::123456789012:role/reader
        source_profile = base
        role_session_name = test-session
        [profile orphan]
        role_arn = arn:aws:iam::123456789012:role/reader
        source_profile = nowhere
        """,
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto.endpoint)
    options = {**moto_only(moto), "profile": "reader"}
    np.testing.assert_array_equal(BigArray(url, storage_options=options)[:, :, :], data)
    with pytest.raises(bigarrays.InvalidArgumentError, match='source_profile "nowhere"'):
        BigArray(url, storage_options={**options, "profile": "orphan"})
    # ...unless keys with precedence make the profile's role moot.
    keys = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret"}
    assert BigArray(url, storage_options={**options, **keys, "profile": "orphan"})[0, 0, 0] == 0
    # STS refusing (here: not answering) is an error naming STS and the role, no secret.
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")
    with pytest.raises(bigarrays.StoreError, match="STS at http://127.0.0.1:9") as e:
        BigArray(url, storage_options=options)
    assert "role/reader" in str(e.value) and SECRET not in str(e.value)


# -- AWS: credential_process ---------------------------------------------------------------


def process_script(home: Path, expires_in_s: float | None, fail: bool = False) -> Path:
    """A credential_process that counts its runs in ``runs`` next to it."""
    script = home / "creds.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import datetime, json, sys
            with open({str(home / "runs")!r}, "a") as f:
                f.write("x")
            if {fail!r}:
                print("token service said no", file=sys.stderr)
                sys.exit(3)
            out = {{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": {SECRET!r},
                   "SessionToken": "session-{SECRET}"}}
            if {expires_in_s!r} is not None:
                when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
                    seconds={expires_in_s!r})
                out["Expiration"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
            print(json.dumps(out))
            """
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def runs(home: Path) -> int:
    path = home / "runs"
    return len(path.read_text()) if path.exists() else 0


@pytest.mark.parametrize("expires_in_s", [None, 3600, 60])
def test_credential_process(moto: Moto, clean_env: Path, expires_in_s: float | None) -> None:
    url, data = private_layer(moto)
    script = process_script(clean_env, expires_in_s)
    write_profiles(
        clean_env, "", f"[profile proc]\ncredential_process = {sys.executable} {script} --x\n"
    )
    a = BigArray(url, storage_options={**moto_only(moto), "profile": "proc"})
    for _ in range(3):
        np.testing.assert_array_equal(a[:, :, :], data)
    if expires_in_s == 60:
        # Inside the refresh window: run again before each use, never used expired.
        assert runs(clean_env) >= 4, runs(clean_env)
    else:
        assert runs(clean_env) == 1, runs(clean_env)


def test_credential_process_failure_names_the_profile_not_the_secret(
    moto: Moto, clean_env: Path
) -> None:
    url, _ = private_layer(moto)
    script = process_script(clean_env, None, fail=True)
    write_profiles(
        clean_env, "", f"[profile proc]\ncredential_process = {sys.executable} {script} {SECRET}\n"
    )
    with pytest.raises(bigarrays.StoreError) as e:
        BigArray(url, storage_options={**moto_only(moto), "profile": "proc"})
    message = str(e.value)
    assert 'credential_process of AWS profile "proc"' in message, message
    assert "token service said no" in message and SECRET not in message, message


# -- requester pays, and the GCS authorized-user flow, against a recording server -----------


class Recorder:
    """A loopback server standing in for S3 (path style), GCS's XML API and Google's token
    endpoint: serves one Precomputed layer at ``/<bucket>/l/``, answers ``POST /token``
    with a fresh access token, and records each request's headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.tokens: list[dict[str, list[str]]] = []
        self.require_bearer = False
        self.lock = threading.Lock()
        info = json.dumps(INFO).encode()
        chunk = values(7).tobytes(order="F")
        self.objects = {"/bkt/l/info": info, "/bkt/l/s0/0-5_0-6_0-4": chunk}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, code: int, body: bytes, full: int | None = None) -> None:
                self.send_response(code)
                if full is not None:  # an object: what S3 and GCS send with one
                    self.send_header("ETag", '"v1"')
                    self.send_header("Last-Modified", "Thu, 01 Jan 2026 00:00:00 GMT")
                if code == 206:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    end = start + len(body) - 1
                    self.send_header("Content-Range", f"bytes {start}-{end}/{full}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with recorder.lock:
                    recorder.tokens.append(urllib.parse.parse_qs(body.decode()))
                    n = len(recorder.tokens)
                token = {"access_token": f"tok-{n}", "expires_in": 3600, "token_type": "Bearer"}
                self.answer(200, json.dumps(token).encode())

            def do_GET(self) -> None:
                # GCS's client sends the object name percent-encoded, as Google takes it.
                path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with recorder.lock:
                    recorder.requests.append(("GET", path, headers))
                auth = self.headers.get("Authorization", "")
                if recorder.require_bearer and not auth.startswith("Bearer tok-"):
                    self.answer(401, b"<Error><Code>AuthenticationRequired</Code></Error>")
                elif path in recorder.objects:
                    data = recorder.objects[path]
                    ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                    if ranged and int(ranged.group(1)) < len(data):
                        start = int(ranged.group(1))
                        stop = int(ranged.group(2)) + 1 if ranged.group(2) else len(data)
                        self.answer(206, data[start : min(stop, len(data))], len(data))
                    else:
                        self.answer(200, data, len(data))
                else:
                    self.answer(404, b"<Error><Code>NoSuchKey</Code></Error>")

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def headers(self, name: str) -> set[str]:
        with self.lock:
            return {h.get(name.lower(), "") for _, _, h in self.requests}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_s3_request_payer(recorder: Recorder, clean_env: Path) -> None:
    options = {
        "endpoint": recorder.url,
        "aws_access_key_id": "AKID",
        "aws_secret_access_key": SECRET,
        **FAST,
    }
    a = BigArray("s3://bkt/l", storage_options={**options, "requester_pays": True})
    assert a[0, 0, 0] == 7
    assert recorder.headers("x-amz-request-payer") == {"requester"}
    recorder.requests.clear()
    assert BigArray("s3://bkt/l", storage_options={**options, "request_payer": "true"})[0, 0, 0]
    assert recorder.headers("x-amz-request-payer") == {"requester"}


def test_gcs_authorized_user_from_gcloud_config_dir(
    recorder: Recorder, clean_env: Path, monkeypatch
) -> None:
    gcloud = clean_env / "elsewhere"
    gcloud.mkdir()
    adc = {
        "type": "authorized_user",
        "client_id": "client.apps.googleusercontent.com",
        "client_secret": SECRET,
        "refresh_token": f"refresh-{SECRET}",
        "token_uri": f"{recorder.url}/token",
        "quota_project_id": "quota-proj",
    }
    (gcloud / "application_default_credentials.json").write_text(json.dumps(adc))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))
    recorder.require_bearer = True
    options = {"google_base_url": recorder.url, **FAST}
    a = BigArray("gs://bkt/l", storage_options=options)
    np.testing.assert_array_equal(a[0:5, 0:6, 0:4], values(7))
    # One refresh, with the file's refresh token; every request carries the token.
    assert len(recorder.tokens) == 1
    assert recorder.tokens[0]["grant_type"] == ["refresh_token"]
    assert recorder.tokens[0]["refresh_token"] == [f"refresh-{SECRET}"]
    assert recorder.headers("Authorization") == {"Bearer tok-1"}
    # No billing project unless asked for.
    assert recorder.headers("x-goog-user-project") == {""}
    # requester_pays bills GOOGLE_CLOUD_PROJECT, else the file's quota project;
    # user_project names one outright.
    recorder.requests.clear()
    assert BigArray("gs://bkt/l", storage_options={**options, "requester_pays": True})[0, 0, 0]
    assert recorder.headers("x-goog-user-project") == {"quota-proj"}
    recorder.requests.clear()
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-proj")
    assert BigArray("gs://bkt/l", storage_options={**options, "requester_pays": True})[0, 0, 0]
    assert recorder.headers("x-goog-user-project") == {"env-proj"}
    recorder.requests.clear()
    assert BigArray("gs://bkt/l", storage_options={**options, "user_project": "mine"})[0, 0, 0]
    assert recorder.headers("x-goog-user-project") == {"mine"}


def test_gcs_refresh_refused_says_so_without_secrets(
    recorder: Recorder, clean_env: Path, monkeypatch
) -> None:
    adc = {
        "type": "authorized_user",
        "client_id": "c",
        "client_secret": SECRET,
        "refresh_token": SECRET,
        "token_uri": "http://127.0.0.1:9/token",
    }
    path = clean_env / "adc.json"
    path.write_text(json.dumps(adc))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    with pytest.raises(bigarrays.StoreError, match="authorized user") as e:
        BigArray("gs://bkt/l", storage_options={"google_base_url": recorder.url, **FAST})
    assert str(path) in str(e.value) and SECRET not in str(e.value)
    with pytest.raises(bigarrays.InvalidArgumentError, match="requester_pays needs a project"):
        BigArray(
            "gs://bkt/l",
            storage_options={"anonymous": True, "requester_pays": True, "google_base_url": "x"},
        )


# -- no credentials anywhere: unsigned at once ----------------------------------------------


def test_public_s3_bucket_with_no_credentials_reads_at_once(moto: Moto, tmp_path: Path) -> None:
    url, data = private_layer(moto)
    bucket = url.split("/")[2]
    env = clean_child_env(tmp_path)
    # Private: refused, and the refusal says where credentials were looked for.
    message, _ = first_voxel_in_child(url, {"endpoint": moto.endpoint, **FAST}, env)
    assert message.startswith("PermissionDeniedError"), message
    assert "no AWS credentials found" in message and "unsigned" in message, message
    moto.make_public(bucket)
    message, seconds = first_voxel_in_child(url, {"endpoint": moto.endpoint, **FAST}, env)
    assert message == str(data[0, 0, 0]), message
    print(f"s3 time to first voxel, no credentials: {seconds:.3f} s")
    # A stall detector, not a speed test: waiting on a metadata service takes seconds.
    assert seconds < 3, seconds


def test_public_gcs_bucket_with_no_credentials_reads_at_once(
    fake_gcs: FakeGcs, tmp_path: Path
) -> None:
    bucket = fake_gcs.bucket()
    fake_gcs.upload(bucket, "e/info", json.dumps(INFO).encode())
    fake_gcs.upload(bucket, "e/s0/0-5_0-6_0-4", values(3).tobytes(order="F"))
    env = clean_child_env(tmp_path)
    options = {"google_base_url": fake_gcs.base, **FAST}
    message, seconds = first_voxel_in_child(f"gs://{bucket}/e", options, env)
    assert message == "3", message
    print(f"gcs time to first voxel, no credentials: {seconds:.3f} s")
    assert seconds < 3, seconds


# -- secrets never leave -------------------------------------------------------------------


def test_secrets_stay_out_of_reprs_errors_and_pickles(
    moto: Moto, clean_env: Path, monkeypatch
) -> None:
    url, data = private_layer(moto)
    options = {**moto.options(), "aws_secret_access_key": SECRET}
    a = BigArray(url, storage_options=options)
    assert SECRET not in repr(a) and SECRET not in a.url
    with pytest.raises(bigarrays.BigArrayError) as e:
        BigArray(url + "-absent", storage_options=options)
    assert SECRET not in str(e.value) and SECRET not in repr(e.value)
    with pytest.raises(bigarrays.InvalidArgumentError) as e:
        BigArray(url, storage_options={**options, "aws_secret_acces_key": SECRET})
    assert SECRET not in str(e.value)
    blob = pickle.dumps(a)
    assert SECRET.encode() not in blob and b"testing-secret" not in blob
    _reopen, (_url, kwargs, dropped) = a.__reduce__()
    assert "aws_access_key_id" not in kwargs["storage_options"]
    assert "endpoint" in kwargs["storage_options"]  # what is not secret stays
    # A worker re-opens with its own credentials (here: the environment's)...
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    np.testing.assert_array_equal(pickle.loads(blob)[:, :, :], data)
    # ...and one that has none is told why.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(bigarrays.PermissionDeniedError) as e:
        pickle.loads(blob)
    notes = " ".join(getattr(e.value, "__notes__", []))
    if sys.version_info >= (3, 11):
        assert "secrets are never pickled" in notes and "aws_secret_access_key" in notes


def test_url_passwords_stay_out_of_pickles(http_server: Any) -> None:
    BigArray.create(str(http_server.root / "p"), shape=(4, 4, 4), dtype="uint8", chunks=(4, 4, 4))
    url = http_server.url.replace("http://", f"http://user:{SECRET}@") + "/p"
    a = BigArray(url, storage_options=FAST)
    assert SECRET not in repr(a)
    blob = pickle.dumps(a)
    assert SECRET.encode() not in blob
    assert pickle.loads(blob).shape == a.shape
