"""Model repositories in Google Cloud Storage (`--model-repository=gs://...`,
as Vertex AI passes `AIP_STORAGE_URI`), against gcp-storage-emulator's JSON
API. Credentials are checked by a stand-in for Google's token endpoint and
metadata server, which also fronts the emulator and refuses storage requests
without the token it issued: a service account's JWT must verify against
its public key."""

import base64
import json
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloud_repository import OBJECTS, PREFIX, check_copy_then_stop
from http_requests import free_port
from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from server_process import REPO_ROOT, ServerProcess, server_args
from stand_in_http import StandIn, StandInHandler

BUCKET = "vertex-models"
ACCESS_TOKEN = "ya29.issued-by-the-test"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
# Workload identity federation: the other provider's token, and what
# Google's security token service gives for it before impersonation.
SUBJECT_TOKEN = "eyJhbGciOiJSUzI1NiJ9.kubernetes-service-account.signature"
FEDERATED_TOKEN = "ya29.federated-by-the-test"
AUDIENCE = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/k8s"
IMPERSONATION_PATH = "/v1/projects/-/serviceAccounts/reader@p.iam.gserviceaccount.com:generateAccessToken"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """gcp-storage-emulator on an ephemeral port, with the bucket."""
    port = free_port()
    log = (tmp_path_factory.mktemp("gcs") / "emulator.log").open("w")
    command = [str(pathlib.Path(sys.executable).parent / "gcp-storage-emulator"), "start"]
    command += ["--host=127.0.0.1", f"--port={port}", "--in-memory", f"--default-bucket={BUCKET}"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{origin}/storage/v1/b/{BUCKET}").close()
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.monotonic() < deadline, "the emulator did not start"
                time.sleep(0.2)
        yield origin
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def upload(origin, name, data):
    query = urllib.parse.urlencode({"uploadType": "media", "name": name})
    request = urllib.request.Request(
        f"{origin}/upload/storage/v1/b/{BUCKET}/o?{query}", data=data, method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )  # fmt: skip
    urllib.request.urlopen(request).close()


def object_names(origin):
    with urllib.request.urlopen(f"{origin}/storage/v1/b/{BUCKET}/o") as answer:
        return [item["name"] for item in json.load(answer).get("items", [])]


def delete(origin, name):
    url = f"{origin}/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}"
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE")).close()


@pytest.fixture
def bucket(emulator):
    """The repository's objects under its prefix; emptied after the test."""
    for name, content in OBJECTS.items():
        upload(emulator, f"{PREFIX}/{name}", content)
    yield f"gs://{BUCKET}/{PREFIX}"
    for name in object_names(emulator):
        delete(emulator, name)


def nothing_listens():
    """An origin where nothing answers: no metadata server here."""
    return f"127.0.0.1:{free_port()}"


def infer_simple(server):
    with server.client("http") as client:
        wire = default_wire(client)
        a, b = simple_data(2)
        check_simple_result(wire.infer(client, "simple", simple_inputs(a, b, wire)), a, b)


class GoogleEndpoints(StandIn):
    """Google's token endpoint and metadata server, and a front of the
    emulator that only lets requests with the issued token through.
    `service_account` is the public key and email a JWT must match."""

    def __init__(self, emulator_origin, service_account=None, sts_token=FEDERATED_TOKEN):
        endpoints = self
        self.grants = []
        self.refused = 0

        class Handler(StandInHandler):
            def token(self, value=ACCESS_TOKEN):
                self.reply(200, json.dumps({"access_token": value, "expires_in": 3600}))

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                if self.path == IMPERSONATION_PATH:
                    # IAM credentials: the federated token buys the account's.
                    endpoints.grants.append("impersonate")
                    if self.headers.get("Authorization") != f"Bearer {FEDERATED_TOKEN}":
                        return self.reply(401, b'{"error": "not the federated token"}')
                    if json.loads(body).get("scope") != [SCOPE]:
                        return self.reply(400, body.encode())
                    answer = {"accessToken": ACCESS_TOKEN, "expireTime": "2099-01-01T00:00:00Z"}
                    return self.reply(200, json.dumps(answer))
                form = urllib.parse.parse_qs(body)
                grant = form["grant_type"][0]
                endpoints.grants.append(grant)
                if grant == "urn:ietf:params:oauth:grant-type:token-exchange":
                    expected = {
                        "audience": [AUDIENCE],
                        "grant_type": [grant],
                        "requested_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
                        "scope": ["https://www.googleapis.com/auth/cloud-platform"],
                        "subject_token": [SUBJECT_TOKEN],
                        "subject_token_type": ["urn:ietf:params:oauth:token-type:jwt"],
                    }
                    if self.path != "/sts" or form != expected:
                        return self.reply(400, json.dumps({"error": "invalid_grant", "got": form}).encode())
                    return self.token(sts_token)
                if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                    problem = endpoints.check_jwt(form["assertion"][0])
                    if problem:
                        return self.reply(400, json.dumps({"error": "invalid_grant", "why": problem}).encode())
                elif grant != "refresh_token" or form["refresh_token"] != ["user-refresh-token"]:
                    return self.reply(400, b'{"error": "invalid_grant"}')
                self.token()

            def do_GET(self):
                if self.path.startswith("/computeMetadata/"):
                    if self.headers.get("Metadata-Flavor") != "Google":
                        return self.reply(403, b"missing Metadata-Flavor")
                    endpoints.grants.append("metadata")
                    return self.token()
                if self.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
                    endpoints.refused += 1
                    return self.reply(401, b'{"error": {"code": 401, "message": "no valid token"}}')
                self.relay_get(emulator_origin)

        self.service_account = service_account
        super().__init__(Handler)

    def check_jwt(self, assertion):
        """Why the JWT is not the account's, or None."""
        header, claims, signature = assertion.split(".")
        unpad = lambda part: base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))  # noqa: E731
        public_key, email = self.service_account
        try:
            public_key.verify(unpad(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception as error:
            return f"bad signature: {error!r}"
        claims = json.loads(unpad(claims))
        expected = {"iss": email, "scope": SCOPE, "aud": f"{self.origin}/token"}
        if any(claims.get(key) != value for key, value in expected.items()):
            return f"wrong claims: {claims}"
        if not claims["iat"] <= time.time() + 5 < claims["exp"]:
            return f"wrong times: {claims}"
        return None


def test_models_serve_from_a_public_bucket_copy_that_goes_when_the_server_stops(launch_server, emulator, bucket, tmp_path):
    mount = tmp_path / "mount"
    mount.mkdir()
    env = {"STORAGE_EMULATOR_HOST": emulator, "GCE_METADATA_HOST": nothing_listens(), "TRITON_GCS_MOUNT_DIRECTORY": str(mount)}
    server = launch_server(bucket, env=env)
    infer_simple(server)
    check_copy_then_stop(server, mount)


def test_a_service_account_key_is_exchanged_for_a_token(launch_server, emulator, bucket, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "model-reader@project.iam.gserviceaccount.com"
    google = GoogleEndpoints(emulator, service_account=(key.public_key(), email))
    try:
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        credentials = tmp_path / "key.json"
        credentials.write_text(
            json.dumps(
                {"type": "service_account", "client_email": email, "private_key": pem.decode(),
                 "token_uri": f"{google.origin}/token"}
            )
        )  # fmt: skip
        env = {"STORAGE_EMULATOR_HOST": google.origin, "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
        server = launch_server(bucket, env=env)
        infer_simple(server)
        assert google.grants == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        assert google.refused == 0
    finally:
        google.close()


def test_an_authorized_user_and_the_attached_account_get_tokens(launch_server, emulator, bucket, tmp_path):
    google = GoogleEndpoints(emulator)
    try:
        credentials = tmp_path / "user.json"
        credentials.write_text(
            json.dumps(
                {"type": "authorized_user", "client_id": "client", "client_secret": "secret",
                 "refresh_token": "user-refresh-token", "token_uri": f"{google.origin}/token"}
            )
        )  # fmt: skip
        user = launch_server(
            bucket, env={"STORAGE_EMULATOR_HOST": google.origin, "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
        )
        infer_simple(user)
        attached = launch_server(
            bucket, env={"STORAGE_EMULATOR_HOST": google.origin, "GCE_METADATA_HOST": google.origin.removeprefix("http://")}
        )
        infer_simple(attached)
        assert google.grants == ["refresh_token", "metadata"]
        assert google.refused == 0
    finally:
        google.close()


def external_account(google, credential_source, impersonate):
    account = {
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{google.origin}/sts",
        "credential_source": credential_source,
    }
    if impersonate:
        account["service_account_impersonation_url"] = google.origin + IMPERSONATION_PATH
    return json.dumps(account)


def test_an_external_account_token_file_is_exchanged_then_impersonates(launch_server, emulator, bucket, tmp_path):
    # As on a Kubernetes cluster outside Google Cloud: the projected service
    # account token, Google's security token service, then the service
    # account the workload identity pool may impersonate.
    google = GoogleEndpoints(emulator)
    try:
        (tmp_path / "token").write_text(SUBJECT_TOKEN + "\n")
        credentials = tmp_path / "federation.json"
        credentials.write_text(external_account(google, {"file": str(tmp_path / "token")}, impersonate=True))
        env = {"STORAGE_EMULATOR_HOST": google.origin, "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
        server = launch_server(bucket, env=env)
        infer_simple(server)
        assert google.grants == ["urn:ietf:params:oauth:grant-type:token-exchange", "impersonate"]
        assert google.refused == 0
        assert "as reader@p.iam.gserviceaccount.com" in server.log
    finally:
        google.close()


class SubjectTokenUrl(StandInHandler):
    """Another identity provider's token URL, answering JSON to requests
    with its header."""

    def do_GET(self):
        if self.path != "/identity" or self.headers.get("Metadata") != "True":
            return self.reply(400, b"missing Metadata header")
        self.reply(200, json.dumps({"access_token": SUBJECT_TOKEN, "expires_in": 3600}))


def test_an_external_account_token_url_is_exchanged_for_a_direct_token(launch_server, emulator, bucket, tmp_path):
    # As on Azure: a URL answering JSON, whose access_token is the subject
    # token; the federated token itself reads the bucket.
    google = GoogleEndpoints(emulator, sts_token=ACCESS_TOKEN)
    provider = StandIn(SubjectTokenUrl)
    try:
        source = {
            "url": f"{provider.origin}/identity",
            "headers": {"Metadata": "True"},
            "format": {"type": "json", "subject_token_field_name": "access_token"},
        }
        credentials = tmp_path / "federation.json"
        credentials.write_text(external_account(google, source, impersonate=False))
        env = {"STORAGE_EMULATOR_HOST": google.origin, "GOOGLE_APPLICATION_CREDENTIALS": str(credentials)}
        server = launch_server(bucket, env=env)
        infer_simple(server)
        assert google.grants == ["urn:ietf:params:oauth:grant-type:token-exchange"]
        assert google.refused == 0
    finally:
        provider.close()
        google.close()


def test_a_request_without_the_token_is_refused_and_stops_the_start(emulator, bucket):
    google = GoogleEndpoints(emulator)
    try:
        env = {"STORAGE_EMULATOR_HOST": google.origin, "GCE_METADATA_HOST": nothing_listens()}
        server = ServerProcess(server_args(bucket), env=env)
        assert server.wait_exit(30) == 1
        expected = f"cannot copy model repository '{bucket}': listing gs://{BUCKET}: Google Cloud Storage answered 401: no valid token"
        assert expected in server.log, server.log
    finally:
        google.close()


def test_vertex_ai_storage_uri_in_a_bucket_is_the_repository(launch_server, emulator, bucket):
    env = {"AIP_STORAGE_URI": bucket, "STORAGE_EMULATOR_HOST": emulator, "GCE_METADATA_HOST": nothing_listens()}
    server = launch_server(env=env)
    infer_simple(server)
    assert "from AIP_STORAGE_URI (Vertex AI)" in server.log
