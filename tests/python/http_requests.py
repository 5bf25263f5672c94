"""HTTP below tritonclient: exact requests through the standard library, the
real `curl` binary, and raw sockets for what no HTTP client would send.
Every call has a timeout."""

import dataclasses
import http.client
import json
import shutil
import socket
import subprocess
import time

HTTP_TIMEOUT_S = 20
CURL = shutil.which("curl")


@dataclasses.dataclass
class Response:
    status: int
    headers: dict  # names in lower case
    body: bytes

    def json(self):
        return json.loads(self.body)


def free_port():
    """A port nothing listens on now (the kernel's pick, released again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _read_response(response):
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Response(response.status, headers, response.read())


def _host_port(url):
    host, port = url.rsplit(":", 1)
    return host, int(port)


def http_request(url, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT_S):
    """One request on a fresh connection. A dict or list `body` is sent as JSON."""
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    connection = http.client.HTTPConnection(*_host_port(url), timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return _read_response(response)
    finally:
        connection.close()


def headers_only(url, method, path, headers, timeout=HTTP_TIMEOUT_S):
    """Sends a request's headers and no body, whatever Content-Length they
    declare, and reads the answer: what the server can tell from the
    headers alone."""
    connection = http.client.HTTPConnection(*_host_port(url), timeout=timeout)
    try:
        connection.putrequest(method, path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return _read_response(response)
    finally:
        connection.close()


def post(url, path, body, headers=None, timeout=HTTP_TIMEOUT_S):
    return http_request(url, "POST", path, body, headers, timeout)


def expect_error_response(response, status, *fragments):
    """The response is `status` with a JSON body `{"error": "..."}` whose
    message contains every fragment; returns the message."""
    assert response.status == status, f"{response.status}: {response.body[:2000]!r}"
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    for fragment in fragments:
        assert fragment in body["error"], f"expected {fragment!r} in {body['error']!r}"
    return body["error"]


def curl(url, path, *options, data=None, timeout=HTTP_TIMEOUT_S):
    """Runs the real curl against http://{url}{path} with `options`, sending
    `data` (bytes or str) as the body when given; returns the Response (its
    headers hold only the Content-Type)."""
    assert CURL, "curl is not installed"
    # After the body: a line with the status and the Content-Type.
    command = [CURL, "-sS", "--max-time", str(timeout), "-w", "\n%{http_code} %header{content-type}", *options]
    if data is not None:
        command += ["--data-binary", "@-"]
        data = data.encode() if isinstance(data, str) else data
    command.append(f"http://{url}{path}")
    finished = subprocess.run(command, input=data, capture_output=True, timeout=timeout + 10)
    assert finished.returncode == 0, f"curl failed ({finished.returncode}): {finished.stderr.decode()}"
    body, _, trailer = finished.stdout.rpartition(b"\n")
    status, _, content_type = trailer.decode().partition(" ")
    return Response(int(status), {"content-type": content_type}, body)


def raw_exchange(url, payload, close_after_send=False, timeout=5):
    """Sends raw bytes on a new connection and returns every byte the server
    sends back until it closes the connection or `timeout` passes. With
    `close_after_send` the client shuts down its sending side at once, as a
    client that dies mid-request does."""
    received = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(_host_port(url), timeout=timeout) as connection:
        connection.sendall(payload)
        if close_after_send:
            connection.shutdown(socket.SHUT_WR)
        while (remaining := deadline - time.monotonic()) > 0:
            connection.settimeout(remaining)
            try:
                chunk = connection.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
    return received


def status_of(raw_response):
    """The status code of a raw HTTP/1.1 response, or None when there is none."""
    if not raw_response.startswith(b"HTTP/1."):
        return None
    return int(raw_response.split(b" ", 2)[1])


# A `simple` request in pure JSON, and what it must answer.
SIMPLE_A = list(range(16))
SIMPLE_B = [3 * n - 20 for n in range(16)]
SIMPLE_JSON = {
    "inputs": [
        {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": SIMPLE_A},
        {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": SIMPLE_B},
    ]
}


def check_simple_json_answer(answer):
    outputs = {output["name"]: output for output in answer["outputs"]}
    assert outputs["OUTPUT0"]["data"] == [a + b for a, b in zip(SIMPLE_A, SIMPLE_B, strict=True)]
    assert outputs["OUTPUT1"]["data"] == [a - b for a, b in zip(SIMPLE_A, SIMPLE_B, strict=True)]


def assert_http_serves(url):
    """The HTTP endpoint is ready and `simple` answers correctly."""
    assert http_request(url, "GET", "/v2/health/ready").status == 200
    response = post(url, "/v2/models/simple/infer", SIMPLE_JSON)
    assert response.status == 200, response.body
    check_simple_json_answer(response.json())
