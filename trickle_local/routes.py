"""The app's routes served as `chalice local` serves them (custom authorizers included), in a thread."""

from __future__ import annotations

import threading
from typing import Any

from chalice import Chalice
from chalice.config import Config
from chalice.local import LocalChalice, LocalDevServer, create_local_server

from trickle_local.ports import PortInUseError, in_use


class RouteServer:
    def __init__(
        self, app: Chalice, config: dict[str, Any], stage: str, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        chalice_config = Config(chalice_stage=stage, config_from_disk=config)
        try:
            if isinstance(app, LocalChalice):  # already prepared by an earlier server in this process
                self._server = LocalDevServer(app, chalice_config, host, port)
            else:
                self._server = create_local_server(app, chalice_config, host, port)
        except OSError as exc:
            if in_use(exc):
                raise PortInUseError(port, "routes") from None
            raise
        # stop() waits for the loop's next look at its shutdown flag: every 50 ms, not the default 0.5 s
        self._thread = threading.Thread(
            target=self._server.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="routes",
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RouteServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
