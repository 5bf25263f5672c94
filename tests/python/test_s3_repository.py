"""Model repositories in S3 (`--model-repository=s3://host:port/bucket/path`,
Triton's form for an S3-compatible service), against moto's S3 server with
its authentication on, so every request the server makes must carry a valid
SigV4 signature of an IAM user allowed to read the bucket. The server serves
a local copy that a load request or a poll brings up to date, and deletes
it when it stops."""

import json
import pathlib
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest

from cloud_repository import ODD_CONTENT, ODD_FILE, PREFIX, check_copy_then_stop
from http_requests import free_port
from model_requests import check_simple_result, default_wire, simple_data, simple_inputs
from server_process import EXAMPLE_MODELS, REPO_ROOT, ServerProcess, server_args, wait_until
from stand_in_http import StandIn, StandInHandler

BUCKET = "models"


ACCOUNT = "123456789012"  # moto's account
ROLE = "models-reader"
ALLOW_EVERYTHING = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@pytest.fixture(scope="module")
def s3_service(tmp_path_factory):
    """moto's S3 (and IAM and STS) server on an ephemeral port. Its first
    three requests (an IAM user, its policy and its key) go unauthenticated;
    every later one must be signed by a key moto knows: the user's, or the
    temporary one of the role `models-reader`."""
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    process = subprocess.Popen(
        [str(pathlib.Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={"INITIAL_NO_AUTH_ACTION_COUNT": "3", "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                iam.create_user(UserName="triton")
                break
            except Exception:
                assert process.poll() is None and time.monotonic() < deadline, "moto's server did not start"
                time.sleep(0.2)
        iam.put_user_policy(UserName="triton", PolicyName="all", PolicyDocument=json.dumps(ALLOW_EVERYTHING))
        key = iam.create_access_key(UserName="triton")["AccessKey"]
        credentials = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        signed = dict(
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )
        iam = boto3.client("iam", **signed)
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/triton"}, "Action": "sts:*"}
            ],
        }
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))
        iam.put_role_policy(RoleName=ROLE, PolicyName="all", PolicyDocument=json.dumps(ALLOW_EVERYTHING))
        s3 = boto3.client("s3", **signed)
        s3.create_bucket(Bucket=BUCKET)
        yield s3, endpoint, credentials
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def bucket(s3_service):
    """An empty repository prefix holding the example model `simple` and a
    file with an awkward name; emptied after the test."""
    s3, endpoint, credentials = s3_service
    upload_model(s3, "simple")
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{ODD_FILE}", Body=ODD_CONTENT)
    yield s3, f"s3://{endpoint.removeprefix('http://')}/{BUCKET}/{PREFIX}", credentials
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])


def upload_model(s3, name):
    """Uploads the example model `simple` under `name`."""
    source = EXAMPLE_MODELS / "simple"
    config = (source / "config.pbtxt").read_text().replace('name: "simple"', f'name: "{name}"')
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}/config.pbtxt", Body=config.encode())
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}/1/model.onnx", Body=(source / "1" / "model.onnx").read_bytes())


def delete_model(s3, name):
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{name}/").get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])


def infer_simple(client, model):
    wire = default_wire(client)
    a, b = simple_data(2)
    check_simple_result(wire.infer(client, model, simple_inputs(a, b, wire)), a, b)


def test_models_serve_from_a_copy_that_goes_when_the_server_stops(launch_server, bucket, tmp_path, protocol):
    _, repository, credentials = bucket
    mount = tmp_path / "mount"
    mount.mkdir()
    env = dict(credentials, AWS_DEFAULT_REGION="us-east-1", TRITON_AWS_MOUNT_DIRECTORY=str(mount))
    server = launch_server(repository, env=env)
    with server.client(protocol) as client:
        infer_simple(client, "simple")
        index = client.get_model_repository_index(as_json=True) if protocol == "grpc" else client.get_model_repository_index()
        assert [model["name"] for model in (index["models"] if protocol == "grpc" else index)] == ["simple"]
    check_copy_then_stop(server, mount)


def test_tritons_cloud_credential_file_chooses_keys_by_the_longest_prefix(launch_server, bucket, tmp_path):
    _, repository, keys = bucket
    bucket_prefix = repository.split(f"/{PREFIX}")[0]
    entry = {"key_id": keys["AWS_ACCESS_KEY_ID"], "secret_key": keys["AWS_SECRET_ACCESS_KEY"], "region": "us-east-1"}
    wrong = {"key_id": "AKIAWRONGWRONGWRONG1", "secret_key": "wrong"}
    credential_file = tmp_path / "cloud_credential.json"
    credential_file.write_text(json.dumps({"s3": {"": wrong, bucket_prefix: entry}}))
    # The environment's keys are wrong too: the file's entry stands in for them.
    env = {"TRITON_CLOUD_CREDENTIAL_PATH": str(credential_file), "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "x"}
    server = launch_server(repository, env=env)
    with server.client("http") as client:
        infer_simple(client, "simple")


def test_a_load_request_fetches_what_was_uploaded_since_the_start(launch_server, bucket, protocol):
    s3, repository, credentials = bucket
    server = launch_server(repository, extra=["--model-control-mode=explicit"], env=credentials)
    with server.client(protocol) as client:
        assert not client.is_model_ready("simple")
        upload_model(s3, "uploaded_later")
        client.load_model("uploaded_later")
        infer_simple(client, "uploaded_later")


def test_polling_follows_the_bucket(launch_server, bucket, protocol):
    s3, repository, credentials = bucket
    server = launch_server(
        repository, extra=["--model-control-mode=poll", "--repository-poll-secs=1"], env=credentials
    )
    with server.client(protocol) as client:
        infer_simple(client, "simple")
        upload_model(s3, "added")
        wait_until(lambda: client.is_model_ready("added"), "the model uploaded to the bucket loads")
        infer_simple(client, "added")
        delete_model(s3, "simple")
        wait_until(lambda: not client.is_model_ready("simple"), "the model deleted from the bucket unloads")
        infer_simple(client, "added")


@pytest.mark.parametrize(
    "case, expected",
    [
        ("wrong secret", "403 SignatureDoesNotMatch"),
        ("missing bucket", "404 NoSuchBucket"),
    ],
)
def test_a_repository_that_cannot_be_read_stops_the_start(bucket, case, expected):
    _, repository, credentials = bucket
    if case == "wrong secret":
        credentials = dict(credentials, AWS_SECRET_ACCESS_KEY="not-the-secret")
    else:
        repository = repository.replace(f"/{BUCKET}/", "/no-such-bucket/")
    server = ServerProcess(server_args(repository), env=credentials)
    assert server.wait_exit(30) == 1
    assert f"cannot copy model repository '{repository}'" in server.log and expected in server.log, server.log


class CredentialEndpoints(StandIn):
    """The EC2 instance metadata service (IMDSv2) and a container
    credentials endpoint, on one local port, handing out `keys` as an
    instance role's or a task's temporary credentials; `calls` records
    (method, path) of each request."""

    IMDS_TOKEN = "imds-session-token"

    def __init__(self, keys, container_token):
        endpoints = self
        self.calls = []
        answer = {
            "Code": "Success",
            "AccessKeyId": keys["AccessKeyId"],
            "SecretAccessKey": keys["SecretAccessKey"],
            "Token": keys["SessionToken"],
            "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600)),
        }

        class Handler(StandInHandler):
            def do_PUT(self):
                endpoints.calls.append(("PUT", self.path))
                ttl = self.headers.get("x-aws-ec2-metadata-token-ttl-seconds")
                if self.path == "/latest/api/token" and ttl:
                    self.reply(200, CredentialEndpoints.IMDS_TOKEN)
                else:
                    self.reply(400, "bad token request")

            def do_GET(self):
                endpoints.calls.append(("GET", self.path))
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path.startswith(base):
                    if self.headers.get("x-aws-ec2-metadata-token") != CredentialEndpoints.IMDS_TOKEN:
                        self.reply(401, "IMDSv2 needs the session token")
                    elif self.path == base:
                        self.reply(200, ROLE + "\n")
                    elif self.path == base + ROLE:
                        self.reply(200, json.dumps(answer))
                    else:
                        self.reply(404, "no such role")
                elif self.path == "/container-credentials":
                    if self.headers.get("authorization") != container_token:
                        self.reply(403, "wrong authorization token")
                    else:
                        self.reply(200, json.dumps(answer))
                else:
                    self.reply(404, "not found")

        super().__init__(Handler)


@pytest.fixture
def credential_endpoints(s3_service, bucket):
    """The endpoints, handing out temporary credentials of the role
    `models-reader` that moto issued (it checks their session token)."""
    _, endpoint, keys = s3_service
    sts = boto3.client(
        "sts",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
    )
    role = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{ROLE}", RoleSessionName="instance")
    endpoints = CredentialEndpoints(role["Credentials"], container_token="pod-identity-token")
    yield endpoints
    endpoints.close()


def test_an_ec2_instance_role_signs_the_requests(launch_server, bucket, credential_endpoints):
    _, repository, _ = bucket
    server = launch_server(repository, env={"AWS_EC2_METADATA_SERVICE_ENDPOINT": credential_endpoints.origin})
    with server.client("http") as client:
        infer_simple(client, "simple")
    role_path = f"/latest/meta-data/iam/security-credentials/{ROLE}"
    assert credential_endpoints.calls[:3] == [
        ("PUT", "/latest/api/token"),
        ("GET", "/latest/meta-data/iam/security-credentials/"),
        ("GET", role_path),
    ]


def test_container_credentials_sign_the_requests(launch_server, bucket, credential_endpoints, tmp_path):
    _, repository, _ = bucket
    token_file = tmp_path / "token"
    token_file.write_text("pod-identity-token\n")
    env = {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{credential_endpoints.origin}/container-credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
    }
    server = launch_server(repository, env=env)
    with server.client("http") as client:
        infer_simple(client, "simple")
    assert credential_endpoints.calls == [("GET", "/container-credentials")]


def test_an_eks_web_identity_assumes_its_role(launch_server, s3_service, bucket, tmp_path):
    _, endpoint, _ = s3_service
    _, repository, _ = bucket
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.service-account.signature")
    # AssumeRoleWithWebIdentity is not signed (the token is the proof), and
    # moto would refuse an unsigned request: its next request goes through
    # unchecked, and the server's S3 requests are checked against the
    # role's temporary key.
    reset = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=b"1", method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(reset).close()
    env = {
        "AWS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{ROLE}",
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ENDPOINT_URL_STS": endpoint,
    }
    server = launch_server(repository, env=env)
    with server.client("http") as client:
        infer_simple(client, "simple")
    assert "credentials: the web identity of role arn:aws:iam::123456789012:role/models-reader" in server.log
