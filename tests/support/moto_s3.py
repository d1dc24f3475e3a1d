"""moto's S3 server for tests, serialised so its conditional writes are atomic like real S3's.

Shared by the storage contract tests and the media race test (tests/integration/test_media_race.py).
"""

from __future__ import annotations

import threading


class SerializedMotoServer:
    """moto's S3 server on a real loopback socket, handling one request at a time.

    Why not plain ``ThreadedMotoServer``: moto 5.x *does* enforce If-Match / If-None-Match on
    PutObject, but it checks the condition and then stores the object in two unlocked steps, on one
    thread per request. Racing writers can therefore both pass the check: forcing frequent GIL switches
    (``sys.setswitchinterval(1e-6)``) lost 2-4 of 400 increments in the cross-process counter, and
    concurrent GET/PUT of one key also produced sporadic 500s ("I/O operation on closed file"). Real
    S3 makes a conditional write atomic; serialising requests gives moto that same property, so the
    tests judge this client and its CAS loop rather than moto's thread-safety. Same moto WSGI app,
    same werkzeug server and request handler as ``ThreadedMotoServer``, plus one lock.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        lock = threading.Lock()

        def serialized(environ, start_response):
            with lock:
                return list(app(environ, start_response))  # the whole response is built under the lock

        self._server = make_server(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()
