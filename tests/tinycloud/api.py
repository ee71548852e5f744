"""TinyCloud's API, faked on 127.0.0.1: GET /images answers the images it is given."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional


class FakeTinyCloud:
    def __init__(self, images: List[dict], account: str = "acct-1"):
        self.images, self.account = images, account
        self.status: Optional[int] = None      # answer every request with this status instead
        self.requests: List[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests.append(self.path)
                status = fake.status or (200 if self.path == "/images" else 404)
                body = json.dumps({"account": fake.account, "images": fake.images} if status == 200
                                  else {"error": "nope"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
