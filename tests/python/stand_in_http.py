"""HTTP stand-ins for the cloud services the storage tests play (token
endpoints, metadata servers, fronts of emulators): a quiet request handler
with reply helpers, served on an ephemeral local port by a thread."""

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def relay_get(self, origin):
        """Answers with what `origin` answers to this GET."""
        try:
            with urllib.request.urlopen(origin + self.path) as answer:
                self.reply(answer.status, answer.read(), [("Content-Type", answer.headers.get("Content-Type", ""))])
        except urllib.error.HTTPError as error:
            self.reply(error.code, error.read())


class StandIn:
    """`handler` (a StandInHandler subclass) served at `origin` until close()."""

    def __init__(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
