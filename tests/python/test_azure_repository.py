"""Model repositories in Azure Blob Storage
(`--model-repository=as://account/container/path`), against Microsoft's
Azurite emulator, which checks Shared Key signatures, with blobs written by
Microsoft's own Python client. A managed identity's token is handed out by a
stand-in for the identity endpoint that also fronts a public container and
refuses requests without that token."""

import json
import subprocess
import time
import urllib.parse

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import BlobServiceClient

from cloud_repository import OBJECTS, PREFIX, check_copy_then_stop
from http_requests import free_port
from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from server_process import REPO_ROOT, ServerProcess, server_args
from stand_in_http import StandIn, StandInHandler

AZURITE = REPO_ROOT / "tests" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account.
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
PRIVATE, PUBLIC = "models", "public-models"
TOKEN = "eyJ0eXAiOiJKV1QifQ.managed-identity.token"
FEDERATED_TOKEN = "eyJhbGciOiJSUzI1NiJ9.kubernetes-service-account.signature"
CLIENT_SECRET = "Qx8~principal.secret"


def connection_string(endpoint, key=KEY):
    parts = [f"AccountName={ACCOUNT}", f"BlobEndpoint={endpoint}/{ACCOUNT};"]
    if key:
        parts.insert(1, f"AccountKey={key}")
    return "DefaultEndpointsProtocol=http;" + ";".join(parts)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    """Azurite's blob service on an ephemeral port, with a private and a
    public container holding the repository's objects under its prefix."""
    assert AZURITE.is_file(), f"{AZURITE} is missing; scripts/test.sh installs it (npm ci in tests/azurite)"
    port = free_port()
    workspace = tmp_path_factory.mktemp("azurite")
    log = (workspace / "azurite.log").open("w")
    command = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence"]
    # Microsoft's client asks for a newer service version than this Azurite
    # knows; the calls these tests make are older than both.
    command.append("--skipApiVersionCheck")
    # Azurite writes its debug log into its working folder.
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workspace)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        service = BlobServiceClient.from_connection_string(connection_string(endpoint))
        deadline = time.monotonic() + 60
        while True:
            try:
                private = service.create_container(PRIVATE)
                break
            except ServiceRequestError:
                assert process.poll() is None and time.monotonic() < deadline, "Azurite did not start"
                time.sleep(0.3)
        public = service.create_container(PUBLIC, public_access="container")
        for container in (private, public):
            for name, content in OBJECTS.items():
                container.upload_blob(f"{PREFIX}/{name}", content)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def infer_simple(server):
    with server.client("http") as client:
        wire = default_wire(client)
        a, b = simple_data(2)
        check_simple_result(wire.infer(client, "simple", simple_inputs(a, b, wire)), a, b)


def test_a_shared_key_signs_the_requests_and_the_copy_goes_at_stop(launch_server, azurite, tmp_path):
    mount = tmp_path / "mount"
    mount.mkdir()
    env = {"AZURE_STORAGE_CONNECTION_STRING": connection_string(azurite), "TRITON_AZURE_MOUNT_DIRECTORY": str(mount)}
    server = launch_server(f"as://{ACCOUNT}/{PRIVATE}/{PREFIX}", env=env)
    infer_simple(server)
    check_copy_then_stop(server, mount)


def test_a_wrong_key_stops_the_start_with_azures_answer(azurite):
    wrong = "a2V5IHRoYXQgaXMgbm90IHRoZSBhY2NvdW50J3M="
    env = {"AZURE_STORAGE_CONNECTION_STRING": connection_string(azurite, key=wrong)}
    repository = f"as://{ACCOUNT}/{PRIVATE}/{PREFIX}"
    server = ServerProcess(server_args(repository), env=env)
    assert server.wait_exit(30) == 1
    assert f"cannot copy model repository '{repository}'" in server.log, server.log
    assert "Azure Storage answered 403 AuthorizationFailure" in server.log, server.log


def test_a_public_container_needs_no_credentials(launch_server, azurite):
    env = {"AZURE_STORAGE_CONNECTION_STRING": connection_string(azurite, key=None)}
    server = launch_server(f"as://{ACCOUNT}/{PUBLIC}/{PREFIX}", env=env)
    infer_simple(server)


class IdentityEndpoint(StandIn):
    """App Service's and Container Apps' managed identity endpoint, and a
    front of Azurite that lets through only requests with its token."""

    SECRET = "identity-header-secret"

    def __init__(self, azurite_origin):
        endpoint = self
        self.token_requests = []
        self.refused = 0

        class Handler(StandInHandler):
            def do_POST(self):
                # Microsoft Entra ID's token endpoint, for AKS Workload
                # Identity and for service principals with a client secret.
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                endpoint.token_requests.append(form)
                grant = {"grant_type": ["client_credentials"], "scope": ["https://storage.azure.com/.default"]}
                federated = {
                    "client_assertion": [FEDERATED_TOKEN],
                    "client_assertion_type": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
                    "client_id": ["workload-app-id"],
                    **grant,
                }
                secret = {"client_id": ["principal-app-id"], "client_secret": [CLIENT_SECRET], **grant}
                if self.path != "/tenant-id/oauth2/v2.0/token" or form not in (federated, secret):
                    return self.reply(400, json.dumps({"error": "invalid_client", "got": form}))
                answer = {"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}
                self.reply(200, json.dumps(answer), [("Content-Type", "application/json")])

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/msi/token":
                    query = urllib.parse.parse_qs(url.query)
                    endpoint.token_requests.append(query)
                    if self.headers.get("X-IDENTITY-HEADER") != IdentityEndpoint.SECRET:
                        return self.reply(401, b"wrong identity header")
                    answer = {"access_token": TOKEN, "expires_on": str(int(time.time()) + 3600), "token_type": "Bearer"}
                    return self.reply(200, json.dumps(answer).encode(), [("Content-Type", "application/json")])
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    endpoint.refused += 1
                    return self.reply(401, b"<Error><Code>NoAuthenticationInformation</Code></Error>")
                self.relay_get(azurite_origin)

        super().__init__(Handler)


def test_a_managed_identity_token_authorizes_the_requests(launch_server, azurite):
    identity = IdentityEndpoint(azurite)
    try:
        env = {
            "AZURE_STORAGE_AUTH_TYPE": "managed_identity",
            "AZURE_STORAGE_CLIENT_ID": "user-assigned-client-id",
            "IDENTITY_ENDPOINT": f"{identity.origin}/msi/token",
            "IDENTITY_HEADER": IdentityEndpoint.SECRET,
            "AZURE_STORAGE_CONNECTION_STRING": connection_string(identity.origin, key=None),
        }
        server = launch_server(f"as://{ACCOUNT}/{PUBLIC}/{PREFIX}", env=env)
        infer_simple(server)
        (query,) = identity.token_requests
        assert query["resource"] == ["https://storage.azure.com/"]
        assert query["client_id"] == ["user-assigned-client-id"]
        assert identity.refused == 0
    finally:
        identity.close()


def default_chain(identity, client_id, **proofs):
    """The environment of Azure's default credential chain asking the
    stand-in Entra ID for application `client_id` of tenant-id, with the
    client secret or federated token file in `proofs`."""
    return {
        "AZURE_STORAGE_AUTH_TYPE": "default",
        "AZURE_CLIENT_ID": client_id,
        "AZURE_TENANT_ID": "tenant-id",
        "AZURE_AUTHORITY_HOST": identity.origin,
        "AZURE_STORAGE_CONNECTION_STRING": connection_string(identity.origin, key=None),
        **proofs,
    }


def test_an_aks_workload_identity_exchanges_its_federated_token(launch_server, azurite, tmp_path):
    identity = IdentityEndpoint(azurite)
    try:
        token_file = tmp_path / "azure-identity-token"
        token_file.write_text(FEDERATED_TOKEN + "\n")
        env = default_chain(identity, "workload-app-id", AZURE_FEDERATED_TOKEN_FILE=str(token_file))
        server = launch_server(f"as://{ACCOUNT}/{PUBLIC}/{PREFIX}", env=env)
        infer_simple(server)
        assert len(identity.token_requests) == 1 and identity.refused == 0
        assert "the workload identity of application workload-app-id" in server.log
    finally:
        identity.close()


def test_a_service_principal_secret_comes_first_in_the_default_chain(launch_server, azurite, tmp_path):
    identity = IdentityEndpoint(azurite)
    try:
        # Both a client secret and a federated token: Azure's
        # DefaultAzureCredential (and so Triton) uses the secret.
        token_file = tmp_path / "azure-identity-token"
        token_file.write_text(FEDERATED_TOKEN)
        env = default_chain(
            identity, "principal-app-id", AZURE_CLIENT_SECRET=CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE=str(token_file)
        )
        server = launch_server(f"as://{ACCOUNT}/{PUBLIC}/{PREFIX}", env=env)
        infer_simple(server)
        (form,) = identity.token_requests
        assert form["client_secret"] == [CLIENT_SECRET] and "client_assertion" not in form
        assert identity.refused == 0
        assert "the client secret of application principal-app-id" in server.log
        assert CLIENT_SECRET not in server.log
    finally:
        identity.close()
