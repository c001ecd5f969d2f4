#!/bin/sh
# The entrypoint of TF Serving's image, with one change: `exec`, so that the server is PID 1 and
# receives `docker stop`'s SIGTERM itself (a shell as PID 1 ignores it, and the container is
# killed after the stop timeout instead of draining). Extra `docker run` arguments are appended
# as flags, e.g. --model_config_file=/models/models.config.
exec tensorflow_model_server --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" "$@"
