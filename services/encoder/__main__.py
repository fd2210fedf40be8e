"""``python -m services.encoder``: serve the model repository over gRPC until SIGTERM."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from trajlab.service_main import RunningService, run_service

if TYPE_CHECKING:
    from services.encoder.settings import EncoderSettings


def build(settings: EncoderSettings) -> RunningService:
    # onnxruntime is imported only now, after logging is set up.
    from services.encoder.server import EncoderServer

    server = EncoderServer(settings)
    server.start()  # a bucket model_repo that cannot be used raises StoreError here
    assert server.server is not None
    # On SIGTERM the watcher stops; once in-flight calls have finished, the sessions are released.
    return RunningService(
        server.server, server.health, on_stop=server.store.stop, after_stop=server.store.close
    )


def main() -> int:
    from services.encoder.settings import EncoderSettings

    return run_service("encoder", EncoderSettings, build)


if __name__ == "__main__":
    sys.exit(main())
