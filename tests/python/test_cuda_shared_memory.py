"""Triton's CUDA shared-memory extension over gRPC and HTTP, with
tritonclient's own calls. These machines have no GPU, so the server loads
tests/fake_cuda (built as `target/debug/examples/libfake_cuda.so`) under
the NVIDIA driver's name through LD_LIBRARY_PATH: a driver whose two
"devices" keep their memory in POSIX shared memory, and whose IPC handles
hold the name of a `/dev/shm` object. The server's side (registering,
copying inputs out of the "GPU" and outputs into it, bounds, errors,
closing handles) runs as it does on a GPU; only the memory is fake."""

import base64
import re
from multiprocessing import shared_memory

import numpy as np
import pytest

from model_requests import assert_simple_works, simple_data
from protocols import expect_error, module, server_metadata
from server_process import EXAMPLE_MODELS, server_args, stand_in_driver, start_server

TENSOR_BYTES = 16 * 4  # one row of simple's INT32 [16]


@pytest.fixture(scope="module")
def driver_dir(tmp_path_factory):
    return stand_in_driver(tmp_path_factory.mktemp("nvidia-driver"), "fake_cuda", "libcuda.so.1")


@pytest.fixture(scope="module")
def gpu_server(driver_dir):
    """A server of the example models on the fake driver that lets clients
    use shared memory."""
    server = start_server(
        server_args(EXAMPLE_MODELS, extra=["--allow-client-shm=true"]), env={"LD_LIBRARY_PATH": str(driver_dir)}
    )
    yield server
    assert server.stop() == 0, server.log


class FakeGpuMemory:
    """GPU memory as the fake driver sees it: a POSIX shared-memory object,
    whose IPC handle is its name padded to the 64 bytes of a
    cudaIpcMemHandle_t."""

    def __init__(self, byte_size):
        self.memory = shared_memory.SharedMemory(create=True, size=byte_size)
        self.name = self.memory.name.lstrip("/")

    def raw_handle(self):
        """What tritonclient's cuda_shared_memory.get_raw_handle returns:
        the handle in base64."""
        return base64.b64encode(self.name.encode().ljust(64, b"\0"))

    def array(self, offset=0, count=16):
        return np.ndarray((count,), np.int32, buffer=self.memory.buf, offset=offset)

    def close(self):
        self.memory.close()
        self.memory.unlink()


@pytest.fixture
def gpu_memory():
    created = []

    def create(byte_size):
        memory = FakeGpuMemory(byte_size)
        created.append(memory)
        return memory

    yield create
    for memory in created:
        memory.close()


def register(client, protocol, name, memory, device_id, byte_size):
    raw_handle = memory.raw_handle()
    if protocol == "http":
        # The HTTP client puts the handle into JSON as it is given.
        raw_handle = raw_handle.decode()
    client.register_cuda_shared_memory(name, raw_handle, device_id, byte_size)


def cuda_status(client, protocol, name=""):
    """{region name: (device_id, byte_size)}."""
    if protocol == "grpc":
        regions = client.get_cuda_shared_memory_status(name, as_json=True).get("regions", {})
        return {key: (int(value.get("device_id", 0)), int(value["byte_size"])) for key, value in regions.items()}
    regions = client.get_cuda_shared_memory_status(name)
    return {region["name"]: (region["device_id"], region["byte_size"]) for region in regions}


def test_inputs_and_outputs_travel_through_cuda_shared_memory(gpu_server, protocol, gpu_memory):
    a, b = simple_data(1, seed=11)
    inputs_memory, outputs_memory = gpu_memory(2 * TENSOR_BYTES), gpu_memory(2 * TENSOR_BYTES)
    inputs_memory.array(0)[:] = a[0]
    inputs_memory.array(TENSOR_BYTES)[:] = b[0]
    with gpu_server.client(protocol) as client:
        client.unregister_cuda_shared_memory()
        register(client, protocol, "gpu_in", inputs_memory, 0, 2 * TENSOR_BYTES)
        register(client, protocol, "gpu_out", outputs_memory, 1, 2 * TENSOR_BYTES)
        assert cuda_status(client, protocol) == {"gpu_in": (0, 2 * TENSOR_BYTES), "gpu_out": (1, 2 * TENSOR_BYTES)}
        assert cuda_status(client, protocol, "gpu_out") == {"gpu_out": (1, 2 * TENSOR_BYTES)}
        assert "cuda_shared_memory" in server_metadata(client)["extensions"]

        inputs, outputs = [], []
        for index, name in enumerate(("INPUT0", "INPUT1")):
            tensor = module(protocol).InferInput(name, [1, 16], "INT32")
            tensor.set_shared_memory("gpu_in", TENSOR_BYTES, offset=index * TENSOR_BYTES)
            inputs.append(tensor)
        for index, name in enumerate(("OUTPUT0", "OUTPUT1")):
            output = module(protocol).InferRequestedOutput(name)
            output.set_shared_memory("gpu_out", TENSOR_BYTES, offset=index * TENSOR_BYTES)
            outputs.append(output)
        result = client.infer("simple", inputs, outputs=outputs)
        np.testing.assert_array_equal(outputs_memory.array(0), a[0] + b[0])
        np.testing.assert_array_equal(outputs_memory.array(TENSOR_BYTES), a[0] - b[0])
        # The answer names the outputs but carries no data for them.
        if protocol == "http":
            assert result.get_output("OUTPUT0") == {"name": "OUTPUT0", "datatype": "INT32", "shape": [1, 16]}
        else:
            assert result.get_response().raw_output_contents == [b"", b""]

        client.unregister_cuda_shared_memory("gpu_in")
        assert cuda_status(client, protocol) == {"gpu_out": (1, 2 * TENSOR_BYTES)}
        client.unregister_cuda_shared_memory()
        assert cuda_status(client, protocol) == {}
    # Unregistering closed both IPC handles in the driver.
    for memory in (inputs_memory, outputs_memory):
        gpu_server.wait_for_line(re.escape(f"fake cuda: closed {memory.name}"))


def test_system_and_cuda_regions_share_one_set_of_names(gpu_server, protocol, gpu_memory):
    memory = gpu_memory(TENSOR_BYTES)
    system = shared_memory.SharedMemory(create=True, size=TENSOR_BYTES)
    try:
        with gpu_server.client(protocol) as client:
            client.unregister_cuda_shared_memory()
            client.unregister_system_shared_memory()
            client.register_system_shared_memory("taken", "/" + system.name.lstrip("/"), TENSOR_BYTES)
            expect_error(
                client,
                lambda: register(client, protocol, "taken", memory, 0, TENSOR_BYTES),
                "ALREADY_EXISTS",
                "shared memory region 'taken' already in manager",
            )
            expect_error(
                client,
                lambda: client.get_cuda_shared_memory_status("taken"),
                "NOT_FOUND",
                "'taken' is registered as system shared memory, not CUDA shared memory",
            )
            expect_error(
                client,
                lambda: client.get_cuda_shared_memory_status("nothing"),
                "NOT_FOUND",
                "Unable to find cuda shared memory region: 'nothing'",
            )
            # Unregistering CUDA regions leaves the system ones.
            client.unregister_cuda_shared_memory("taken")
            client.unregister_cuda_shared_memory()
            assert [region["name"] if protocol == "http" else region for region in system_names(client, protocol)] == [
                "taken"
            ]
            client.unregister_system_shared_memory()
    finally:
        system.close()
        system.unlink()


def system_names(client, protocol):
    status = client.get_system_shared_memory_status(**({"as_json": True} if protocol == "grpc" else {}))
    return sorted(status.get("regions", {})) if protocol == "grpc" else status


def test_registrations_the_driver_or_the_allocation_refuse_say_why(gpu_server, protocol, gpu_memory):
    memory = gpu_memory(TENSOR_BYTES)
    with gpu_server.client(protocol) as client:
        client.unregister_cuda_shared_memory()
        expect_error(
            client,
            lambda: register(client, protocol, "far", memory, 7, TENSOR_BYTES),
            "INVALID_ARGUMENT",
            "failed to register CUDA shared memory region 'far'",
            "no CUDA device 7",
            "invalid device ordinal",
        )
        expect_error(
            client,
            lambda: register(client, protocol, "big", memory, 0, 2 * TENSOR_BYTES),
            "INVALID_ARGUMENT",
            f"byte_size {2 * TENSOR_BYTES} is larger than the {TENSOR_BYTES} bytes of the CUDA allocation",
        )
        # The refused region's handle was closed again.
        gpu_server.wait_for_line(re.escape(f"fake cuda: closed {memory.name}"))
        short = base64.b64encode(b"\0" * 8)
        expect_error(
            client,
            lambda: client.register_cuda_shared_memory(
                "short", short.decode() if protocol == "http" else short, 0, TENSOR_BYTES
            ),
            "INVALID_ARGUMENT",
            "raw_handle must be the 64 bytes of a cudaIpcMemHandle_t, not 8 bytes",
        )
        gone = FakeGpuMemory(TENSOR_BYTES)
        gone.close()
        expect_error(
            client,
            lambda: register(client, protocol, "gone", gone, 0, TENSOR_BYTES),
            "INVALID_ARGUMENT",
            "cuIpcOpenMemHandle failed: invalid argument",
        )
        assert cuda_status(client, protocol) == {}

        register(client, protocol, "small", memory, 0, TENSOR_BYTES)
        tensor = module(protocol).InferInput("INPUT0", [1, 16], "INT32")
        tensor.set_shared_memory("small", TENSOR_BYTES, offset=8)
        other = module(protocol).InferInput("INPUT1", [1, 16], "INT32")
        other.set_data_from_numpy(np.zeros((1, 16), np.int32))
        expect_error(
            client,
            lambda: client.infer("simple", [tensor, other]),
            "INVALID_ARGUMENT",
            f"{TENSOR_BYTES} bytes at offset 8 do not fit shared memory region 'small' of {TENSOR_BYTES} bytes",
        )
        client.unregister_cuda_shared_memory()
        assert_simple_works(client)


def test_without_an_nvidia_driver_registering_says_so(launch_server, protocol, gpu_memory):
    memory = gpu_memory(TENSOR_BYTES)
    server = launch_server(EXAMPLE_MODELS, extra=["--allow-client-shm=true"])
    with server.client(protocol) as client:
        assert cuda_status(client, protocol) == {}
        expect_error(
            client,
            lambda: register(client, protocol, "gpu", memory, 0, TENSOR_BYTES),
            "INVALID_ARGUMENT",
            "failed to register CUDA shared memory region 'gpu': CUDA shared memory needs the NVIDIA driver",
            "libcuda.so.1",
        )
        assert_simple_works(client)


def test_cuda_shared_memory_is_off_unless_clients_are_allowed_shared_memory(client, protocol):
    expect_error(client, lambda: client.get_cuda_shared_memory_status(), "UNAVAILABLE", "--allow-client-shm=true")
    expect_error(client, lambda: client.unregister_cuda_shared_memory(), "UNAVAILABLE", "--allow-client-shm=true")
