"""What the tests of repositories in cloud storage (S3, Google Cloud
Storage, Azure) share: the layout they upload, and the check that the
server served a local copy of it and deleted that copy when it stopped."""

from server_process import EXAMPLE_MODELS

# Where the repository lies inside its bucket or container.
PREFIX = "team/repository"
# A file whose name needs encoding (space, '+', parentheses) in every
# cloud's request signatures and URLs, uploaded beside the model.
ODD_FILE = "simple/notes (v1)+x.txt"
ODD_CONTENT = b"not a model file"
SIMPLE = EXAMPLE_MODELS / "simple"

# The objects of the repository: name under PREFIX -> content.
OBJECTS = {
    "simple/config.pbtxt": (SIMPLE / "config.pbtxt").read_bytes(),
    "simple/1/model.onnx": (SIMPLE / "1" / "model.onnx").read_bytes(),
    ODD_FILE: ODD_CONTENT,
}


def check_copy_then_stop(server, mount):
    """The only folder in `mount` is the server's copy of OBJECTS, and it
    is gone once the server has stopped."""
    (copy,) = list(mount.iterdir())
    for name, content in OBJECTS.items():
        assert (copy / name).read_bytes() == content, name
    assert server.stop() == 0
    assert list(mount.iterdir()) == []
