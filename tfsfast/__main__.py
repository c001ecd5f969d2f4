"""``python -m tfsfast``: the ``tensorflow_model_server`` command line.

pip installs the same :func:`main` as the commands ``tensorflow_model_server`` (TF Serving's
name, which container entrypoints and KServe's runtime call) and ``tfsfast`` (pyproject.toml);
each prints its own name in the usage text, as TF Serving does.
"""

from __future__ import annotations

import sys

from tfsfast.server import server_options as so


def main(argv: list[str] | None = None, program: str = so.DEFAULT_PROGRAM) -> int:
    argv = sys.argv[1:] if argv is None else argv
    result = so.parse_command_line(argv, program=program)
    result.emit()
    if result.exit_code is not None:
        return result.exit_code & 0xFF
    from tfsfast.server.server import Server  # imports TensorFlow: only when serving
    from tfsfast.util.logging_setup import configure_logging
    from tfsfast.util.status import ServingError

    configure_logging()
    server = Server(argv)
    try:
        server.build_and_start(result.options)
    except ServingError as e:
        print(f"Failed to start server. Error: {e}", file=sys.stderr)
        server.shutdown(timeout=0)
        return 255
    server.run()
    return 0


def tensorflow_model_server() -> int:
    """The ``tensorflow_model_server`` command."""
    return main(program="tensorflow_model_server")


def tfsfast() -> int:
    """The ``tfsfast`` command."""
    return main(program="tfsfast")


if __name__ == "__main__":
    sys.exit(main())
