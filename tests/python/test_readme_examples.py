"""README.md's examples, run as written against the shared server: every
curl and grpcurl command of its shell blocks and every Python block, with
only the addresses (localhost:8000, localhost:8001, localhost:8002) and
the grpcurl path changed. Each must succeed, and each inference must return what its own
request implies (sums and differences for simple and simple_string, halves
for scale_fp16)."""

import base64
import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from http_requests import free_port
from server_process import EXAMPLE_MODELS, REPO_ROOT, copy_model, server_args, start_server

README = REPO_ROOT / "README.md"
GRPCURL = REPO_ROOT / ".deps" / "grpcurl" / "grpcurl"
COMMAND_TIMEOUT_S = 30


def fenced_blocks(text):
    """(language, body) of each fenced code block."""
    return [(match[1], match[2]) for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def shell_commands(block, program):
    """The `program` commands of a shell block. A command goes on over lines
    that end in a backslash, or while a single-quoted argument is open."""
    commands, current = [], None
    for line in block.splitlines():
        if current is None:
            if not line.startswith(program + " "):
                continue
            current = line
        else:
            current += "\n" + line
        if not current.endswith("\\") and current.count("'") % 2 == 0:
            commands.append(current)
            current = None
    assert current is None, f"an unfinished {program} command in README.md:\n{current}"
    return commands


BLOCKS = fenced_blocks(README.read_text())
CURL_COMMANDS = [cmd for lang, body in BLOCKS if lang == "sh" for cmd in shell_commands(body, "curl")]
GRPCURL_COMMANDS = [cmd for lang, body in BLOCKS if lang == "sh" for cmd in shell_commands(body, "grpcurl")]
PYTHON_BLOCKS = [body for lang, body in BLOCKS if lang == "python"]


def test_the_readme_has_the_examples_these_tests_expect():
    # Guards the extraction: a change in README.md's formatting must not
    # silently leave examples untested.
    assert len(CURL_COMMANDS) >= 8, CURL_COMMANDS
    assert len(GRPCURL_COMMANDS) >= 4, GRPCURL_COMMANDS
    assert len(PYTHON_BLOCKS) >= 2
    assert any("\n" in command for command in CURL_COMMANDS), "no multi-line curl command found"
    assert any("\\\n" in command for command in GRPCURL_COMMANDS), "no backslash-continued grpcurl command found"


def command_id(command):
    """The address, method and headers of a command: enough to tell them apart."""
    words = shlex.split(command)[1:]
    return " ".join(word for word in words if word.strip() and not word.startswith(("-", "{")) and word != "POST")


def run_shell(command):
    finished = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, cwd=REPO_ROOT
    )
    assert finished.returncode == 0, f"{command}\nexit {finished.returncode}\n{finished.stdout}\n{finished.stderr}"
    return finished.stdout


def option_values(words, *names):
    return [words[index + 1] for index, word in enumerate(words[:-1]) if word in names]


# --- what each answer must be, from its own request ---------------------------


def expected_v2_outputs(model, request):
    """The outputs (name -> flat data) a v2 request to an example model must give."""
    inputs = {tensor["name"]: tensor for tensor in request["inputs"]}
    if model == "simple":
        a, b = (np.array(inputs[name]["data"]).flatten() for name in ("INPUT0", "INPUT1"))
        return {"OUTPUT0": (a + b).tolist(), "OUTPUT1": (a - b).tolist()}
    if model == "simple_string":
        a, b = (np.array(inputs[name]["data"]).flatten().astype(int) for name in ("INPUT0", "INPUT1"))
        return {"OUTPUT0": [str(n) for n in a + b], "OUTPUT1": [str(n) for n in a - b]}
    raise AssertionError(f"no expectation for a v2 request to {model}")


def check_curl_answer(words, answer):
    url = next(word for word in words if "127.0.0.1" in word)
    path = url.split("/", 1)[1] if "/" in url else ""
    headers = dict(value.split(": ", 1) for value in option_values(words, "-H"))
    data = option_values(words, "-d", "--data", "--data-binary")
    request = json.loads(data[0]) if data else None
    if path in ("v2/health/ready", "v2/health/live"):
        assert answer == ""
    elif path == "health":
        assert json.loads(answer) == {"status": "ready"}
    elif path == "metrics":
        assert re.search(r'^nv_inference_count\{model="simple",version="1"\} \d+$', answer, re.M), answer
    elif re.fullmatch(r"v2/models/\w+", path):
        assert json.loads(answer)["name"] == path.rsplit("/", 1)[1]
    elif re.fullmatch(r"v2/models/\w+/config", path):
        assert json.loads(answer)["name"] == path.split("/")[2]
    elif path == "predict" and "X-Vertex-Ai-Triton-Redirect" in headers:
        target = headers["X-Vertex-Ai-Triton-Redirect"]
        assert re.fullmatch(r"v2/models/\w+/config", target), f"no expectation for the redirect to {target}"
        assert json.loads(answer)["name"] == target.split("/")[2]
    elif path.endswith("/infer") or (path == "predict" and "inputs" in request):
        model = headers["model_name"] if path == "predict" else path.split("/")[2]
        outputs = {output["name"]: output["data"] for output in json.loads(answer)["outputs"]}
        assert outputs == expected_v2_outputs(model, request)
    elif path.endswith("/generate"):
        # The generate extension: inputs and outputs as flat members.
        model = path.split("/")[2]
        as_v2 = {"inputs": [{"name": name, "data": data} for name, data in request.items() if name.startswith("INPUT")]}
        answer = json.loads(answer)
        assert answer["model_name"] == model
        assert {name: answer[name] for name in ("OUTPUT0", "OUTPUT1")} == expected_v2_outputs(model, as_v2)
    elif path == "v2/logging":
        settings = json.loads(answer)
        assert set(settings) == {"log_file", "log_info", "log_warning", "log_error", "log_verbose_level", "log_format"}
        # A change answers with every setting, the changed ones as asked.
        assert {key: settings[key] for key in request or {}} == (request or {})
    elif path.endswith("trace/setting"):
        settings = json.loads(answer)
        names = {"trace_level", "trace_rate", "trace_count", "log_frequency", "trace_file", "trace_mode"}
        assert set(settings) == names, settings
        # A set value is answered as asked; a cleared one follows the
        # global setting (the shared server's default rate).
        for key, value in (request or {}).items():
            assert settings[key] == (value if value is not None else "1000"), settings
    elif path == "v2/repository/index":
        assert {"name": "simple", "version": "1", "state": "READY", "reason": ""} in json.loads(answer)
    elif re.fullmatch(r"v2/repository/models/\w+/(load|unload)", path):
        # Success is a 200 with an empty body, as in Triton.
        assert answer == ""
    elif path == "ping":
        assert answer == ""
    elif path == "invocations":
        # The SageMaker server's model is simple.
        outputs = {output["name"]: output["data"] for output in json.loads(answer)["outputs"]}
        assert outputs == expected_v2_outputs("simple", request)
    elif path == "models" and request is not None:
        # A SageMaker multi-model load: a 200 with an empty body.
        assert answer == ""
    elif path == "models":
        # The archive, under the root the test put in /tmp/mme's place.
        listed = {model["modelName"]: model["modelUrl"] for model in json.loads(answer)["models"]}
        assert listed.keys() == {"abc123"} and listed["abc123"].endswith("/abc123/model"), listed
    elif re.fullmatch(r"models/\w+/invoke", path):
        # The README's archive holds simple.
        outputs = {output["name"]: output["data"] for output in json.loads(answer)["outputs"]}
        assert outputs == expected_v2_outputs("simple", request)
    elif re.fullmatch(r"models/\w+", path):
        assert answer == ""
    elif path == "predict":
        assert headers["model_name"] == "scale_fp16", "no expectation for instances of another model"
        halves = [[value * 0.5 for value in row] for row in request["instances"]]
        assert json.loads(answer) == {"predictions": halves}
    else:
        raise AssertionError(f"no expectation for the README's {' '.join(words)}")


@pytest.fixture(scope="module")
def explicit_server():
    """The example repository in model control mode explicit, every model
    loaded at start, for the README's load and unload commands (the shared
    server runs in mode none, which refuses them)."""
    args = server_args(EXAMPLE_MODELS, extra=["--model-control-mode=explicit", "--load-model=*"])
    server = start_server(args)
    yield server
    assert server.stop() == 0, server.log


@pytest.fixture(scope="module")
def sagemaker_address():
    """A server with the SageMaker routes for simple, for the README's
    localhost:8080 commands."""
    port = free_port()
    args = server_args(EXAMPLE_MODELS, extra=["--allow-sagemaker=true", f"--sagemaker-port={port}"])
    server = start_server(args, env={"SAGEMAKER_TRITON_DEFAULT_MODEL_NAME": "simple"})
    yield f"127.0.0.1:{port}"
    assert server.stop() == 0, server.log


# Where the README's multi-model example unpacks its archive.
MULTI_MODEL_ROOT = "/tmp/mme"


@pytest.fixture(scope="module")
def multi_model_address(tmp_path_factory):
    """A SageMaker multi-model endpoint over a copy of the README's archive
    (/tmp/mme/abc123/model holding simple), for its /models commands."""
    root = tmp_path_factory.mktemp("mme")
    copy_model(EXAMPLE_MODELS / "simple", root / "abc123", name="model")
    port = free_port()
    extra = [
        "--allow-sagemaker=true",
        f"--sagemaker-port={port}",
        "--model-control-mode=explicit",
        f"--sagemaker-multi-model-directory={root}",
    ]
    server = start_server(server_args(tmp_path_factory.mktemp("start"), extra=extra))
    yield f"127.0.0.1:{port}", str(root)
    assert server.stop() == 0, server.log


@pytest.mark.parametrize("command", CURL_COMMANDS, ids=command_id)
def test_curl_example(request, server, command):
    if "/v2/repository/models/" in command:
        server = request.getfixturevalue("explicit_server")
    if "localhost:8080/models" in command:
        address, root = request.getfixturevalue("multi_model_address")
        command = command.replace("localhost:8080", address).replace(MULTI_MODEL_ROOT, root)
    if "localhost:8080" in command:
        command = command.replace("localhost:8080", request.getfixturevalue("sagemaker_address"))
    command = command.replace("localhost:8000", server.http_url).replace("localhost:8002", server.metrics_url)
    # --fail-with-body: any status of 400 or more fails the command.
    runnable = re.sub(r"^curl ", "curl -sS --fail-with-body --max-time 20 ", command)
    answer = run_shell(runnable)
    check_curl_answer(shlex.split(command), answer)


def check_grpcurl_answer(words, answer):
    method = next((word for word in words if "/" in word and not word.startswith("-")), None)
    if "list" in words:
        services = answer.split()
        assert "inference.GRPCInferenceService" in services and "grpc.health.v1.Health" in services
    elif method == "grpc.health.v1.Health/Check":
        assert json.loads(answer) == {"status": "SERVING"}
    elif method == "inference.GRPCInferenceService/ModelMetadata":
        assert json.loads(answer)["name"] == json.loads(option_values(words, "-d")[0])["name"]
    elif method == "inference.GRPCInferenceService/RepositoryIndex":
        assert {"name": "simple", "version": "1", "state": "READY"} in json.loads(answer)["models"]
    elif method == "inference.GRPCInferenceService/TraceSetting":
        settings = json.loads(answer)["settings"]
        assert settings["trace_level"] == {"value": ["OFF"]}
        assert settings["trace_mode"] == {"value": ["triton"]}
    elif method == "inference.GRPCInferenceService/ModelInfer":
        request = json.loads(option_values(words, "-d")[0])
        assert request["model_name"] == "simple"
        as_v2 = {"inputs": [{"name": t["name"], "data": t["contents"]["int_contents"]} for t in request["inputs"]]}
        response = json.loads(answer)
        raw = [np.frombuffer(base64.b64decode(data), dtype="<i4").tolist() for data in response["rawOutputContents"]]
        names = [output["name"] for output in response["outputs"]]
        assert dict(zip(names, raw, strict=True)) == expected_v2_outputs("simple", as_v2)
    else:
        raise AssertionError(f"no expectation for the README's {' '.join(words)}")


@pytest.mark.skipif(not GRPCURL.is_file(), reason=f"{GRPCURL} is missing; run scripts/fetch-grpcurl.sh")
@pytest.mark.parametrize("command", GRPCURL_COMMANDS, ids=command_id)
def test_grpcurl_example(grpc_url, command):
    command = command.replace("localhost:8001", grpc_url)
    runnable = re.sub(r"^grpcurl ", f"{shlex.quote(str(GRPCURL))} -max-time 20 ", command)
    check_grpcurl_answer(shlex.split(command), run_shell(runnable))


def python_example_id(block):
    protocol = re.search(r"import tritonclient\.(\w+)", block)[1]
    return f"{protocol}-sequence" if "sequence_id" in block else protocol


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=python_example_id)
def test_python_example(server, block):
    code = block.replace("localhost:8000", server.http_url).replace("localhost:8001", server.grpc_url)
    finished = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, cwd=REPO_ROOT
    )
    assert finished.returncode == 0, f"exit {finished.returncode}\n{finished.stdout}\n{finished.stderr}"
    if "sequence_id" in block:
        # The sequence example prints its running sums, as its comment says.
        assert finished.stdout.splitlines() == ["[[1]]", "[[3]]", "[[6]]"]
        return
    # Each other example prints simple's OUTPUT0 for INPUT0 0..15 and INPUT1 ones.
    assert finished.stdout.splitlines()[0] == str(np.arange(1, 17).reshape(1, 16))
